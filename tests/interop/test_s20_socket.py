"""S20 over real sockets against a ``python -m trigear`` process: bad input gets an
ERROR while the stream is in sync, else the connection is closed; nothing crashes,
hangs or bloats the server.  The fixture fails the test if the server printed a
Traceback or did not exit 0 on SIGTERM.
"""

from __future__ import annotations

import random
import socket
import struct
import threading

import pytest

from .interop_helpers import (
    ServerProc,
    admin,
    connect,
    recv_packet,
    req,
    res,
)

pytestmark = pytest.mark.interop

ERROR, ECHO_RES = 19, 17
INVALID_MAGIC = res(ERROR, b"INVALID_MAGIC", b"Request magic expected")
NOT_EXPECTED = res(ERROR, b"INVALID_COMMAND", b"Command not expected")
UNIQUE_TOO_LARGE = res(ERROR, b"ARGUMENT_TOO_LARGE", b"Unique value too large")


def read_to_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes; fails if it does not close."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return buf
        except TimeoutError:
            raise AssertionError(f"connection not closed; got {buf!r}") from None
        if not chunk:
            return buf
        buf += chunk


def assert_in_sync(sock: socket.socket) -> None:
    """An ECHO_REQ still gets its ECHO_RES: the connection is open and in step."""
    sock.sendall(req(16, b"still here"))
    assert recv_packet(sock) == (ECHO_RES, b"still here")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def run_one_job(port: int) -> None:
    """A normal foreground job, start to finish, over raw sockets."""
    with connect(port) as w, connect(port) as c:
        w.sendall(req(1, b"s20-check"))
        w.sendall(req(16, b"sync"))
        assert recv_packet(w) == (ECHO_RES, b"sync")  # CAN_DO is in
        c.sendall(req(7, b"s20-check", b"", b"payload"))
        ptype, handle = recv_packet(c)
        assert ptype == 8, handle
        w.sendall(req(9))
        assert recv_packet(w) == (11, handle + b"\0s20-check\0payload")
        w.sendall(req(13, handle, b"result"))
        assert recv_packet(c) == (13, handle + b"\0result")


def assert_healthy(server: ServerProc) -> None:
    assert admin(server.port, b"status").endswith(b".\n")
    run_one_job(server.port)
    assert server.proc.poll() is None
    assert "Traceback" not in server.output()


def test_response_magic_is_an_error_and_stays_usable(trigear: ServerProc) -> None:
    with connect(trigear.port) as s:
        s.sendall(b"\0RES" + struct.pack(">II", 16, 2) + b"hi")
        assert recv_packet(s) == (ERROR, INVALID_MAGIC[12:])
        assert_in_sync(s)


@pytest.mark.parametrize("magic", [b"\0XYZ", b"\0\xff\xff\xff"])
def test_garbage_magic_closes(trigear: ServerProc, magic: bytes) -> None:
    with connect(trigear.port) as s:
        s.sendall(magic + struct.pack(">II", 16, 2) + b"hi" + req(16, b"never"))
        rest = read_to_eof(s)
    # At most an ERROR before the close; never the echo of the following packet.
    assert rest in (b"", INVALID_MAGIC), rest
    assert_healthy(trigear)


@pytest.mark.parametrize("ptype", [0, 5, 6, 8, 10, 11, 17, 19, 20, 24, 27, 31, 40, 42, 43, 99])
def test_unknown_or_server_only_type_is_an_error(trigear: ServerProc, ptype: int) -> None:
    with connect(trigear.port) as s:
        s.sendall(req(ptype, b"x"))
        assert recv_packet(s) == (ERROR, NOT_EXPECTED[12:])
        assert_in_sync(s)


def test_huge_type_number(trigear: ServerProc) -> None:
    with connect(trigear.port) as s:
        s.sendall(b"\0REQ" + struct.pack(">II", 0xFFFFFFFF, 1) + b"x")
        assert recv_packet(s)[0] == ERROR
        assert_in_sync(s)


@pytest.mark.parametrize(
    "packet",
    [
        req(7, b"fn"),  # SUBMIT_JOB: function only
        req(7, b"fn", b"u"),  # no data
        req(7),  # empty body
        req(18, b"fn"),
        req(36, b"fn", b"u", b"123"),  # SUBMIT_JOB_EPOCH without data
        req(37, b"fn", b"u", b"red"),  # SUBMIT_REDUCE_JOB short
        req(12, b"H:x:1"),  # WORK_STATUS: handle only
        req(13),  # WORK_COMPLETE: nothing
        req(23, b"fn"),  # CAN_DO_TIMEOUT without timeout
        req(35, b"fn", b"u", b"1", b"2", b"3", b"4", b"5"),  # SUBMIT_JOB_SCHED, 7 args
    ],
    ids=lambda p: f"type{struct.unpack('>I', p[4:8])[0]}-{p[12:]!r}",
)
def test_too_few_arguments_is_an_error_in_sync(trigear: ServerProc, packet: bytes) -> None:
    """gearmand closes or even hangs here; trigear answers within the packet's frame."""
    with connect(trigear.port) as s:
        s.sendall(packet + req(16, b"still here"))
        ptype, body = recv_packet(s)
        assert ptype == ERROR, body
        assert recv_packet(s) == (ECHO_RES, b"still here")


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x80000000, 64 * 1024 * 1024 + 1])
def test_oversize_body_is_refused_without_allocating(trigear: ServerProc, size: int) -> None:
    before = rss_kib(trigear.pid)
    socks = [connect(trigear.port) for _ in range(8)]
    try:
        for s in socks:
            s.sendall(b"\0REQ" + struct.pack(">II", 7, size) + b"fn\0\0" + b"x" * 1000)
        for s in socks:
            rest = read_to_eof(s)
            ptype, body = struct.unpack(">I", rest[4:8])[0], rest[12:]
            assert rest[:4] == b"\0RES", rest
            assert ptype == ERROR, rest
            assert body.startswith(b"ARGUMENT_TOO_LARGE\0"), body
    finally:
        for s in socks:
            s.close()
    # Eight declared bodies of up to 4 GiB: the server must not have made room for them.
    assert rss_kib(trigear.pid) - before < 32 * 1024
    assert_healthy(trigear)


def test_declared_but_unsent_bodies_are_not_allocated(trigear: ServerProc) -> None:
    """Bodies just under the limit, declared and never sent, cost nothing up front."""
    before = rss_kib(trigear.pid)
    socks = [connect(trigear.port) for _ in range(16)]
    try:
        for s in socks:
            s.sendall(b"\0REQ" + struct.pack(">II", 7, 64 * 1024 * 1024) + b"fn\0")
        admin(trigear.port, b"status")  # the server has read them by now
        assert rss_kib(trigear.pid) - before < 32 * 1024
    finally:
        for s in socks:
            s.close()
    assert_healthy(trigear)


def test_unique_of_65_bytes_is_refused_64_kept(trigear: ServerProc) -> None:
    with connect(trigear.port) as c, connect(trigear.port) as w:
        c.sendall(req(7, b"uq", b"u" * 65, b"d"))
        assert recv_packet(c) == (ERROR, UNIQUE_TOO_LARGE[12:])
        assert_in_sync(c)
        # S2: a 64-byte unique is kept byte-exact (gearmand truncates it to 63).
        unique = bytes(range(65, 65 + 64))
        c.sendall(req(18, b"uq", unique, b"d"))
        ptype, handle = recv_packet(c)
        assert ptype == 8
        c.sendall(req(18, b"uq", unique, b"other"))
        assert recv_packet(c) == (8, handle)  # coalesced on the full unique
        w.sendall(req(1, b"uq") + req(30))
        assert recv_packet(w) == (31, handle + b"\0uq\0" + unique + b"\0d")


def test_admin_line_over_8k_closes(trigear: ServerProc) -> None:
    with connect(trigear.port) as s:
        s.sendall(b"status " + b"x" * (9 * 1024) + b"\n")
        assert read_to_eof(s) == b""
    with connect(trigear.port) as s:
        s.sendall(b"y" * (64 * 1024))  # no line end at all
        assert read_to_eof(s) == b""
    assert_healthy(trigear)


def _garbage(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    n = rng.randrange(1, 4096)
    if kind == 0:  # pure noise
        return rng.randbytes(n)
    if kind == 1:  # noise that starts like a binary packet
        return b"\0" + rng.randbytes(n)
    if kind == 2:  # well-framed packets of random type and body
        return b"".join(
            req(rng.randrange(0, 50), *(rng.randbytes(rng.randrange(20)) for _ in range(3)))
            for _ in range(rng.randrange(1, 20))
        )
    if kind == 3:  # headers declaring random lengths, then a little
        return b"\0REQ" + struct.pack(">II", rng.randrange(50), rng.getrandbits(32)) + b"x" * 10
    if kind == 4:  # text that looks like admin commands
        words = [b"status", b"show", b"jobs", b"cancel", b"job", b"\r", b"\t", b"", b"x" * 99]
        return b"\n".join(b" ".join(rng.choices(words, k=rng.randrange(8))) for _ in range(50))
    return b"\0RES" + rng.randbytes(n)  # response magic and noise


def test_garbage_bursts_from_many_connections(trigear: ServerProc) -> None:
    errors: list[BaseException] = []

    def blast(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                with connect(trigear.port) as s:
                    s.settimeout(2.0)
                    try:
                        for _ in range(rng.randrange(1, 6)):
                            s.sendall(_garbage(rng))
                        s.shutdown(socket.SHUT_WR)
                        while s.recv(65536):  # drain until the server is done
                            pass
                    except OSError:
                        # The server closed first (reset, broken pipe, not connected),
                        # or still waits for the rest of a declared body (timeout).
                        pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=blast, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert_healthy(trigear)
