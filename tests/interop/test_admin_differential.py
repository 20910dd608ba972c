"""Differential tests of the raw admin text protocol: the same lines sent to a fresh
gearmand and a fresh trigear get the same bytes back.

Normalised (docs/interop.md): handles (S17), the pid, descriptor numbers in
``workers``, the version text, and the line order of hash-ordered listings.  Lines whose
replies differ on purpose are checked per server in their own tests below.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from trigear import __version__

from .interop_helpers import (
    ServerProc,
    admin,
    connect,
    handle_numbers,
    is_closed,
    norm_handles,
    read_admin_reply,
    recv_packet,
    req,
    sort_listing,
    wait_connections,
)

pytestmark = pytest.mark.interop

StartServer = Callable[..., ServerProc]

#: Sent one after another on one connection, each ending in ``\n``.
LINES = [
    b"status",
    b"prioritystatus",
    b"workers",
    b"show jobs",
    b"show unique jobs",
    b"create function made\r",  # \r\n: the whole name (a bare \n: see below)
    b"CREATE FUNCTION Upper\r",
    b"status",
    b"STATUS",
    b"Status extra",
    b"status 1 2 3 4",
    b"status ",
    b"PRIORITYSTATUS",
    b"workers extra",
    b"WORKERS",
    b"SHOW JOBS",
    b"SHOW UNIQUE JOBS",
    b"show jobs extra",
    b"show foo",
    b"show",
    b"show unique",
    b"show Jobs",
    b"show UNIQUE jobs",
    b"show unique jobs x",
    b"show jobs x y",
    b"cancel",
    b"cancel foo",
    b"cancel job",
    b"cancel job H:nosuch:1",
    b"cancel job H:nosuch:1 x",
    b"cancel foo bar",
    b"cancel JOB H:nosuch:1",
    b"CANCEL",
    b"create",
    b"create function",
    b"create function zz extra",
    b"create thing x",
    b"CREATE",
    b"create x y z",
    b"create function x y",
    b"Create Function qq\r",
    b"DROP FUNCTION qq",
    b"Drop thing",
    b"drop x y z",
    b"drop",
    b"drop function",
    b"drop function nosuch",
    b"drop function made",
    b"drop function made",
    b"maxqueue",
    b"MAXQUEUE",
    b"maxqueue fm",
    b"maxqueue fm 5",
    b"maxqueue fm 1 2",
    b"maxqueue fm 1 2 3",
    b"maxqueue fm x",
    b"maxqueue fm -1",
    b"getpid",
    b"GETPID",
    b"verbose",
    b"version",
    b"VERSION\r",
    b"foo bar",
    b"",
    b"\r",
    b"  status",
    b"status\tx",
    b"version\r\r",
    b"ver\rsion",
    b"\x01status",
    b"a b c d e",
    b"x" * 8191,  # 8192 bytes with the \n: gearmand's longest line
    b"status",
]


def _normalise(server: ServerProc, replies: list[bytes], version: bytes) -> list[bytes]:
    ranks = handle_numbers(replies)
    pid = str(server.pid).encode()
    out = []
    for r in replies:
        r = norm_handles(r, ranks)
        r = r.replace(b"OK " + pid + b"\n", b"OK <pid>\n")
        # trigear reports its own version (docs/interop.md).
        r = r.replace(b"OK " + version + b"\n", b"OK <version>\n")
        # Descriptor numbers of connections.
        r = re.sub(rb"(?m)^\d+ 127\.0\.0\.1 ", b"<fd> 127.0.0.1 ", r)
        out.append(sort_listing(r))
    return out


def _session(server: ServerProc) -> list[bytes]:
    # A worker and some background jobs, so the listings have rows.
    with connect(server.port) as w, connect(server.port) as c:
        w.sendall(req(22, b"admin-test-worker") + req(1, b"fa") + req(1, b"fb"))
        c.sendall(req(18, b"fq", b"u1", b"a") + req(34, b"fq", b"u2", b"b"))
        c.sendall(req(32, b"fq", b"u3", b"c") + req(18, b"fa", b"", b"d"))
        for _ in range(4):
            assert recv_packet(c)[0] == 8  # JOB_CREATED
        wait_connections(server.port, 2)
        replies = []
        with connect(server.port) as s, s.makefile("rb") as f:
            for line in LINES:
                s.sendall(line + b"\n")
                replies.append(read_admin_reply(f))
    return replies


def test_admin_lines(start_gearmand_server: StartServer, trigear: ServerProc) -> None:
    # gearmand's default level is ERROR, trigear's INFO: compare at the same level.
    gearmand = start_gearmand_server("--verbose=INFO")
    want = _normalise(gearmand, _session(gearmand), admin(gearmand.port, b"version")[3:-1])
    got = _normalise(trigear, _session(trigear), f"trigear-{__version__}".encode())
    diffs = [
        f"{line!r}:\n  trigear  {g!r}\n  gearmand {w!r}"
        for line, w, g in zip(LINES, want, got, strict=True)
        if g != w
    ]
    assert not diffs, "trigear's admin replies differ from gearmand's:\n" + "\n".join(diffs)


def test_admin_pipelined_and_mixed(gearmand: ServerProc, trigear: ServerProc) -> None:
    """Several commands in one write, and text mixed with binary packets."""
    got = {}
    for server in (gearmand, trigear):
        with connect(server.port) as s, s.makefile("rb") as f:
            s.sendall(b"getpid\nstatus\nfoo\nverbose\n" + req(16, b"hi") + b"vers")
            replies = [read_admin_reply(f) for _ in range(4)]
            echo = f.read(14)
            s.sendall(b"ion\n")
            replies.append(read_admin_reply(f))
        pid = str(server.pid).encode()
        got[server.kind] = [r.replace(pid, b"<pid>") for r in replies[:3]], echo, replies[4]
    assert got["trigear"][0] == got["gearmand"][0]
    assert got["trigear"][1] == got["gearmand"][1] == b"\0RES\0\0\0\x11\0\0\0\x02hi"
    assert got["trigear"][2] == b"OK trigear-%s\n" % __version__.encode()


@pytest.mark.parametrize("size", [9000, 8194])
def test_admin_line_too_long_is_closed(
    gearmand: ServerProc, trigear: ServerProc, size: int
) -> None:
    """Over the admin line limit the connection is closed without a reply, on both."""
    for server in (gearmand, trigear):
        with connect(server.port) as s:
            s.sendall(b"y" * size + (b"\n" if size < 9000 else b""))
            assert is_closed(s), server.kind


def test_create_function_bare_newline(gearmand: ServerProc, trigear: ServerProc) -> None:
    """Differs on purpose: gearmand drops the last character of the name when the line
    ends in a bare ``\\n`` (gearadmin sends ``\\r\\n`` and is not affected); trigear keeps
    the whole name."""
    for server, name in ((gearmand, b"ab"), (trigear, b"abc")):
        assert admin(server.port, b"create function abc") == b"OK\r\n"
        assert admin(server.port, b"status") == name + b"\t0\t0\t0\n.\n", server.kind


def test_shutdown_command(gearmand: ServerProc, start_trigear_server: StartServer) -> None:
    """Differs on purpose (S21): this gearmand has no admin ``shutdown``; trigear accepts
    it from loopback and exits 0 (the fixture checks the exit status)."""
    assert admin(gearmand.port, b"shutdown") == (
        b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
    )
    trigear = start_trigear_server()
    assert admin(trigear.port, b"shutdown foo") == (
        b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
    )
    assert admin(trigear.port, b"shutdown") == b"OK\r\n"
    assert trigear.proc.wait(10) == 0
