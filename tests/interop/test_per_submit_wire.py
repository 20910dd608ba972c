"""S2 on the wire: one attachment per foreground submit, byte for byte as gearmand.

One scripted raw-socket session runs against a fresh gearmand and a fresh trigear, and
every packet each connection receives is recorded.  The two transcripts must be equal
once handles are replaced by their rank (S17).  The session covers one connection
submitting one unique twice (JOB_CREATED twice, every WORK_* twice, each packet's copies
together), a second connection on the same job, a third submit joining mid-run,
WORK_EXCEPTION and WORK_FAIL per submit, admin ``cancel job``, and GET_STATUS_UNIQUE's
waiting count at each step, also after a connection with two attachments left.

Where the servers differ on purpose (S12: gearmand keeps a foreground job nobody waits
for, flagged, trigear drops it), the test checks each server's own answer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from .interop_helpers import (
    ServerProc,
    connect,
    handle_numbers,
    norm_handles,
    recv_exact,
    req,
    wait_connections,
)

if TYPE_CHECKING:
    import socket

pytestmark = pytest.mark.interop

StartServer = Callable[..., ServerProc]

CAN_DO, SUBMIT_JOB, GRAB_JOB, WORK_STATUS, WORK_COMPLETE, WORK_FAIL = 1, 7, 9, 12, 13, 14
ECHO_REQ, ECHO_RES, SUBMIT_JOB_BG, WORK_EXCEPTION, OPTION_REQ = 16, 17, 18, 25, 26
WORK_DATA, WORK_WARNING, GET_STATUS_UNIQUE = 28, 29, 41
NAMES = {
    8: "JOB_CREATED",
    11: "JOB_ASSIGN",
    12: "WORK_STATUS",
    13: "WORK_COMPLETE",
    14: "WORK_FAIL",
    17: "ECHO_RES",
    19: "ERROR",
    25: "WORK_EXCEPTION",
    27: "OPTION_RES",
    28: "WORK_DATA",
    29: "WORK_WARNING",
    42: "STATUS_RES_UNIQUE",
}


def recv_packet(sock: socket.socket) -> tuple[str, bytes]:
    head = recv_exact(sock, 12)
    assert head[:4] == b"\0RES", head
    ptype, size = struct.unpack(">II", head[4:])
    return NAMES.get(ptype, str(ptype)), recv_exact(sock, size)


class Session:
    """Named raw connections to one server, and what each received, in order."""

    def __init__(self, server: ServerProc) -> None:
        self.server = server
        self.conns: dict[str, socket.socket] = {}
        self.transcript: list[tuple[str, str, bytes]] = []

    def open(self, name: str) -> None:
        self.conns[name] = connect(self.server.port)

    def send(self, name: str, *packets: bytes) -> None:
        self.conns[name].sendall(b"".join(packets))

    def sync(self, name: str) -> list[tuple[str, bytes]]:
        """Everything ``name`` received up to the answer of an ECHO_REQ sent now."""
        sock = self.conns[name]
        sock.sendall(req(ECHO_REQ, b"sync"))
        got = []
        while (packet := recv_packet(sock)) != ("ECHO_RES", b"sync"):
            got.append(packet)
            self.transcript.append((name, *packet))
        self.transcript.append((name, "sync", b""))
        return got

    def close(self, name: str) -> None:
        self.conns.pop(name).close()

    def handle(self, name: str) -> bytes:
        """The handle of the last JOB_ASSIGN ``name`` received."""
        body = next(b for n, t, b in reversed(self.transcript) if n == name and t == "JOB_ASSIGN")
        return body.split(b"\0")[0]

    def close_all(self) -> None:
        for sock in self.conns.values():
            sock.close()
        self.conns.clear()


def status_unique(s: Session, name: str, unique: bytes) -> None:
    s.send(name, req(GET_STATUS_UNIQUE, unique))
    s.sync(name)


def session(s: Session) -> None:
    """The scripted exchange (see the module docstring)."""
    for name in ("c", "c2", "w"):
        s.open(name)
    s.send("w", req(CAN_DO, b"f"), req(CAN_DO, b"g"), req(CAN_DO, b"h"))
    s.sync("w")
    # One connection, one unique, two submits; then another connection on the job.
    s.send("c", req(SUBMIT_JOB, b"f", b"u1", b"one"), req(SUBMIT_JOB, b"f", b"u1", b"two"))
    s.sync("c")
    status_unique(s, "c", b"u1")
    s.send("c2", req(SUBMIT_JOB, b"f", b"u1", b"three"))
    s.sync("c2")
    status_unique(s, "c", b"u1")
    # The worker takes it (the first payload) and reports progress.
    s.send("w", req(GRAB_JOB))
    s.sync("w")
    h = s.handle("w")
    s.send(
        "w",
        req(WORK_DATA, h, b"d"),
        req(WORK_WARNING, h, b"w"),
        req(WORK_STATUS, h, b"1", b"2"),
    )
    s.sync("w")
    s.sync("c")
    s.sync("c2")
    # A third submit from the first connection joins mid-run: copies from then on.
    s.send("c", req(SUBMIT_JOB, b"f", b"u1", b"four"))
    s.sync("c")
    status_unique(s, "c2", b"u1")
    s.send("w", req(WORK_DATA, h, b"late"), req(WORK_COMPLETE, h, b"result"))
    s.sync("w")
    s.sync("c")
    s.sync("c2")
    status_unique(s, "c2", b"u1")  # ended: unknown
    # WORK_EXCEPTION to a connection that asked for exceptions, once per submit.
    s.send("c", req(OPTION_REQ, b"exceptions"))
    s.send("c", req(SUBMIT_JOB, b"g", b"u2", b"a"), req(SUBMIT_JOB, b"g", b"u2", b"b"))
    s.sync("c")
    s.send("w", req(GRAB_JOB))
    s.sync("w")
    s.send("w", req(WORK_EXCEPTION, s.handle("w"), b"boom"))
    s.sync("w")
    s.sync("c")
    # WORK_FAIL, once per submit; background submits never attach.
    s.send(
        "c2",
        req(SUBMIT_JOB, b"g", b"u3", b"a"),
        req(SUBMIT_JOB_BG, b"g", b"u3", b"bg"),
        req(SUBMIT_JOB, b"g", b"u3", b"b"),
    )
    s.sync("c2")
    status_unique(s, "c2", b"u3")
    s.send("w", req(GRAB_JOB))
    s.sync("w")
    s.send("w", req(WORK_FAIL, s.handle("w")))
    s.sync("w")
    s.sync("c2")
    # A connection with two attachments leaves: both go, the other's stays.
    s.send("c", req(SUBMIT_JOB, b"h", b"u4", b"a"), req(SUBMIT_JOB, b"h", b"u4", b"b"))
    s.sync("c")
    s.send("c2", req(SUBMIT_JOB, b"h", b"u4", b"c"))
    s.sync("c2")
    status_unique(s, "c2", b"u4")
    s.close("c")
    wait_connections(s.server.port, 2)
    status_unique(s, "c2", b"u4")
    s.send("w", req(GRAB_JOB))
    s.sync("w")
    s.send("w", req(WORK_STATUS, s.handle("w"), b"3", b"4"))
    s.sync("w")
    s.sync("c2")
    status_unique(s, "c2", b"u4")
    s.send("w", req(WORK_COMPLETE, s.handle("w"), b"done"))
    s.sync("w")
    s.sync("c2")


def transcript(server: ServerProc) -> list[tuple[str, str, bytes]]:
    s = Session(server)
    try:
        session(s)
    finally:
        s.close_all()
    ranks = handle_numbers([body for _, _, body in s.transcript])
    return [(name, kind, norm_handles(body, ranks)) for name, kind, body in s.transcript]


def test_per_submit_packets_match_gearmand(
    start_gearmand_server: StartServer, start_trigear_server: StartServer
) -> None:
    theirs = transcript(start_gearmand_server())
    ours = transcript(start_trigear_server())
    assert ours == theirs
    # What the transcript shows, so an empty or one-sided session cannot pass.
    c = [(k, b) for n, k, b in ours if n == "c" and k != "sync"]
    assert c[:2] == [("JOB_CREATED", b"H:#1")] * 2
    assert ("STATUS_RES_UNIQUE", b"u1\x001\x000\x000\x000\x003") in c
    assert c.count(("WORK_COMPLETE", b"H:#1\x00result")) == 3
    assert c.count(("WORK_EXCEPTION", b"H:#2\x00boom")) == 2
    c2 = [(k, b) for n, k, b in ours if n == "c2" and k != "sync"]
    assert c2.count(("WORK_COMPLETE", b"H:#1\x00result")) == 1
    assert c2.count(("WORK_FAIL", b"H:#3")) == 2
    assert ("STATUS_RES_UNIQUE", b"u4\x001\x000\x000\x000\x001") in c2
    assert c2[-1] == ("WORK_COMPLETE", b"H:#4\x00done")


@pytest.mark.parametrize("kind", ["gearmand", "trigear"])
def test_job_whose_submits_all_left(
    kind: str, start_gearmand_server: StartServer, start_trigear_server: StartServer
) -> None:
    """S12: once the one connection with two submits goes, gearmand keeps the queued job
    (known, nobody waiting, flagged ignore=1 in ``show jobs``) until a worker would take
    it; trigear drops it at once.  A worker gets NO_JOB from both."""
    server = (start_gearmand_server if kind == "gearmand" else start_trigear_server)()
    s = Session(server)
    try:
        s.open("c")
        s.send("c", req(SUBMIT_JOB, b"f", b"u", b"a"), req(SUBMIT_JOB, b"f", b"u", b"b"))
        s.sync("c")
        s.close("c")
        wait_connections(server.port, 0)
        s.open("q")
        status_unique(s, "q", b"u")
        s.open("w")
        s.send("w", req(CAN_DO, b"f"), req(GRAB_JOB))
        assert s.sync("w") == [("10", b"")]  # NO_JOB
    finally:
        s.close_all()
    (answer,) = [b for n, k, b in s.transcript if n == "q" and k == "STATUS_RES_UNIQUE"]
    known = b"1" if kind == "gearmand" else b"0"
    assert answer == b"u\0" + known + b"\x000\x000\x000\x000"
