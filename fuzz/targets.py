"""Fuzz targets for the sans-IO core: the decoder, and the dispatcher driven through its
sans-IO interface by arbitrary sequences of events.  Plain Python: ``fuzz/run.py`` runs
them under atheris (coverage-guided), and ``tests/protocol/test_fuzz_corpus.py`` replays
the seed corpus through them in the ordinary test run.

The rule they check (S20): no input, in any split or order, makes the core raise
anything but :class:`~trigear.protocol.RemoteProtocolError` (which the server answers
and, where the stream is lost, closes on); and the dispatcher's books stay balanced.
"""

from __future__ import annotations

from trigear.protocol import Decoder, Limits, RemoteProtocolError, Role
from trigear.protocol.packets import AdminCommand, PacketType
from trigear.server.config import ServerConfig
from trigear.server.dispatcher import Dispatcher
from trigear.server.state import JobState, Peer

__all__ = ["TARGETS", "decoder", "dispatcher"]

#: Small limits, so the fuzzer reaches the limit checks with short inputs.
LIMITS = Limits(
    max_body=4096, max_unique=8, max_handle=16, max_function=8, max_client_id=8, max_admin_line=64
)
TYPES = sorted(int(t) for t in PacketType)


class Bytes:
    """Reads numbers and byte strings off the fuzzer's input (zeros past its end)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


def _drain(dec: Decoder, one_at_a_time: bool) -> None:
    for _ in range(10_000):
        try:
            if one_at_a_time:
                if dec.next_event().__class__.__name__ == "_NeedData":
                    return
            elif not dec.receive_events():
                return
        except RemoteProtocolError as exc:
            if exc.close:
                return


def decoder(data: bytes) -> None:
    """Bytes in any split, to a server's or a client's decoder."""
    src = Bytes(data)
    mode = src.byte()
    dec = Decoder(Role.SERVER if mode & 1 else Role.CLIENT, LIMITS)
    while src.left():
        dec.receive_data(src.take(1 + src.byte() % 64))
        _drain(dec, bool(mode & 2))
        assert dec.buffered >= 0


def _packet(src: Bytes) -> bytes:
    """A well-framed request of any type with 0-4 arguments: the dispatcher's handlers
    get further than with random bytes."""
    ptype = TYPES[src.byte() % len(TYPES)]
    args = [src.take(src.byte() % 12) for _ in range(src.byte() % 5)]
    body = b"\0".join(args)
    return b"\0REQ" + ptype.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


_ADMIN = [
    b"status",
    b"workers",
    b"show jobs",
    b"show unique jobs",
    b"prioritystatus",
    b"maxqueue f 1",
    b"create function f",
    b"drop function f",
    b"cancel job H:t:1",
    b"version",
]


def dispatcher(data: bytes) -> None:
    """Peers connect, send bytes or packets, leave; time passes; the store answers."""
    src = Bytes(data)
    flags = src.byte()
    config = ServerConfig(
        job_handle_prefix="t",
        limits=LIMITS,
        job_retries=(flags >> 1) % 3 - 1,
        max_output=4096,
        max_jobs=(flags >> 3) % 4 * 4,
        max_functions_per_connection=(flags >> 5) % 4 * 8,
    )
    d = Dispatcher(config, durable=bool(flags & 1))
    d.now, d.wall = 100.0, 1_000_000.0
    peers: list[tuple[Peer, Decoder]] = []
    next_id = 0
    in_flight = False
    while src.left():
        op = src.byte() % 9
        if op == 0 or not peers:
            next_id += 1
            peer = Peer(next_id, next_id, "127.0.0.1")
            d.connect(peer)
            peers.append((peer, Decoder(Role.SERVER, LIMITS)))
            continue
        peer, dec = peers[src.byte() % len(peers)]
        if op == 1:
            d.disconnect(peer)
            peers.remove((peer, dec))
        elif op in (2, 3, 4):
            raw = src.take(src.byte() % 48) if op == 2 else _packet(src)
            if op == 4:
                raw = _ADMIN[src.byte() % len(_ADMIN)] + b"\n"
            _feed(d, peer, dec, raw)
        elif op == 5:
            d.now += src.byte() / 10
            d.wall += src.byte()
            d.tick()
        elif op == 6:
            if in_flight:
                d.store_done(bool(src.byte() & 1))
                in_flight = False
            elif d.take_store_batch() is not None:
                in_flight = True
        elif op == 7:
            for p in d.take_output():
                d.output.written(p, sum(map(len, p.out)))
                p.out.clear()
        else:
            d.handle(peer, AdminCommand(_ADMIN[src.byte() % len(_ADMIN)]))
        _check(d)


def _feed(d: Dispatcher, peer: Peer, dec: Decoder, raw: bytes) -> None:
    dec.receive_data(raw)
    for _ in range(1000):
        if peer.gone or peer.cut:
            return
        try:
            events = dec.receive_events()
        except RemoteProtocolError as exc:
            d.protocol_error(peer, exc)
            if exc.close:
                return
            continue
        if not events:
            return
        for event in events:
            if peer.cut:
                return
            d.handle(peer, event)


def _check(d: Dispatcher) -> None:
    """The books balance: counts match the jobs, nothing is negative."""
    assert d.output.unread >= 0
    sched = d.scheduler
    assert sched.job_bytes == sum(len(j.data) for j in d.jobs.values())
    for f in d.funcs.values():
        assert f.running >= 0
        assert min(f.counts) >= 0
    for job in d.jobs.values():
        assert job.state is not JobState.DONE
        assert d.funcs.get(job.func.name) is job.func


TARGETS = {"decoder": decoder, "dispatcher": dispatcher}
