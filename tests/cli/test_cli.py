"""``python -m trigear`` as an operator runs it: flags, mistakes, signals (S21)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from trigear.protocol import NEED_DATA, Decoder, Role, encode
from trigear.protocol.packets import (
    CanDo,
    EchoReq,
    EchoRes,
    Error,
    Event,
    GrabJobUniq,
    JobAssignUniq,
    JobCreated,
    SubmitJob,
    SubmitJobBg,
    WorkComplete,
)

from ..peers import free_port, missing

if TYPE_CHECKING:
    from collections.abc import Iterator

TRIGEAR = [sys.executable, "-m", "trigear"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRIGEAR, *args], capture_output=True, text=True, timeout=30)


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.decoder = Decoder(Role.CLIENT)

    def send(self, *events: Event) -> None:
        self.sock.sendall(b"".join(encode(e, Role.CLIENT) for e in events))

    def recv(self) -> Event:
        while True:
            event = self.decoder.next_event()
            if event is not NEED_DATA:
                return event  # type: ignore[return-value]
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.decoder.receive_data(data)

    def admin(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\n")
        return self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``python -m trigear`` with ``args`` on a free port, accepting connections."""
    port = free_port()
    proc = subprocess.Popen(
        [*TRIGEAR, "-p", str(port), *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "server did not start"
            time.sleep(0.05)
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    with running("--shutdown-timeout", "20") as started:
        yield started


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "out of range"),
        (["--port", "http"], "not a whole number"),
        (["--job-retries", "-5"], "out of range"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--store", "mysql://x"], "--store"),
        (["--max-packet-size", "lots"], "not a size"),
        (["--log-level", "LOUD"], "invalid choice"),
        (["--max-jobs", "-1"], "out of range"),
        (["--keepalive-interval", "0"], "out of range"),
        (["--max-output", "lots"], "not a size"),
        (["--job-handle-prefix", "a:b"], "job-handle-prefix"),
        (["-L", "no.such.host.invalid", "-p", "0"], "cannot listen"),
    ],
)
def test_user_mistakes_get_a_message_and_status_2(args: list[str], message: str) -> None:
    p = run(*args)
    assert p.returncode == 2, p
    assert message in p.stderr
    assert "Traceback" not in p.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = run("-p", str(s.getsockname()[1]))
    assert p.returncode == 2
    assert "cannot listen" in p.stderr
    assert "Traceback" not in p.stderr


def test_help_and_version() -> None:
    p = run("--help")
    assert p.returncode == 0
    for flag in (
        "--port",
        "--listen",
        "--store",
        "--job-retries",
        "--exceptions",
        "--worker-wakeup",
        "--max-packet-size",
        "--job-handle-prefix",
        "--log-level",
        "--version",
    ):
        assert flag in p.stdout
    v = run("--version")
    assert v.returncode == 0
    assert v.stdout.startswith("trigear ")


def test_max_packet_size_is_what_the_server_enforces() -> None:
    """S20, docs/server.md: with ``--max-packet-size 4K`` a 4 KiB body is served, and a
    header declaring one byte more gets ERROR ARGUMENT_TOO_LARGE and a close, from the
    header alone (none of the body is sent); other connections go on."""
    with running("--max-packet-size", "4K") as (_, port):
        c = Conn(port)
        c.send(EchoReq(b"x" * 4096))
        assert c.recv() == EchoRes(b"x" * 4096)
        c.sock.sendall(b"\0REQ" + (16).to_bytes(4, "big") + (4097).to_bytes(4, "big"))
        error = c.recv()
        assert isinstance(error, Error)
        assert error.code == b"ARGUMENT_TOO_LARGE"
        assert b"4096" in error.text
        with pytest.raises((EOFError, ConnectionResetError)):
            c.recv()
        c.close()
        other = Conn(port)
        other.send(EchoReq(b"y" * 4096))
        assert other.recv() == EchoRes(b"y" * 4096)
        other.close()


def test_startup_line_says_where_and_which_store(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = server
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"listening on 127.0.0.1:{port}" in err
    assert "store: memory (background jobs die with the process)" in err


def test_sigterm_drains_running_job_then_exits_0(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = server
    client, worker = Conn(port), Conn(port)
    client.send(SubmitJob(b"f", b"", b"x"), SubmitJobBg(b"f", b"", b"queued"))
    handle = client.recv()
    assert isinstance(handle, JobCreated)
    client.recv()
    worker.send(CanDo(b"f"), GrabJobUniq())
    job = worker.recv()
    assert isinstance(job, JobAssignUniq)
    assert job.handle == handle.handle
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # Still running while the job runs; no new connections; no new assignments.
    assert proc.poll() is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    worker.send(GrabJobUniq())
    assert worker.recv().__class__.__name__ == "NoJob"
    worker.send(WorkComplete(job.handle, b"done"))
    assert client.recv() == WorkComplete(job.handle, b"done")
    assert proc.wait(timeout=20) == 0
    client.close()
    worker.close()


def test_second_signal_exits_at_once(server: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = server
    client, worker = Conn(port), Conn(port)
    client.send(SubmitJob(b"f", b"", b"x"))
    client.recv()
    worker.send(CanDo(b"f"), GrabJobUniq())
    worker.recv()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    client.close()
    worker.close()


def test_admin_shutdown_from_loopback(server: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = server
    admin = Conn(port)
    assert admin.admin(b"shutdown graceful") == b"OK\r\n"
    assert proc.wait(timeout=20) == 0
    admin.close()


def test_sigusr1_is_graceful_too(server: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = server
    c = Conn(port)
    c.send(EchoReq(b"x"))
    assert c.recv() == EchoRes(b"x")
    os.kill(proc.pid, signal.SIGUSR1)
    assert proc.wait(timeout=20) == 0
    c.close()


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (IPv6 built in and the loopback configured)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_listens_on_every_address_given_ipv6_too() -> None:
    if not ipv6_loopback():
        missing("no IPv6 loopback (::1) on this machine")
    port = free_port()
    proc = subprocess.Popen(
        [*TRIGEAR, "-p", str(port), "-L", "::1", "-L", "127.0.0.1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 20
        for family, host in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
            while True:
                try:
                    with socket.socket(family) as s:
                        s.settimeout(5)
                        s.connect((host, port))
                        s.sendall(b"version\n")
                        assert s.recv(100).startswith(b"OK trigear-")
                    break
                except ConnectionRefusedError:
                    assert time.time() < deadline
                    assert proc.poll() is None
                    time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert f"listening on [::1]:{port}, 127.0.0.1:{port}" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
