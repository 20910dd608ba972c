"""A sans-IO harness for Dispatcher tests: peers, packets in, decoded packets out.

No sockets and no trio: each call hands events to the dispatcher and decodes what it
queued for a peer, so a test reads as the exchange on the wire.
"""

from __future__ import annotations

from trigear.protocol import Decoder, Role
from trigear.protocol.packets import CanDo, Event, GrabJob, JobAssign
from trigear.server.config import ServerConfig
from trigear.server.dispatcher import Dispatcher
from trigear.server.state import Peer


class Harness:
    def __init__(self, config: ServerConfig | None = None, *, durable: bool = False) -> None:
        self.d = Dispatcher(config or ServerConfig(job_handle_prefix="t"), durable=durable)
        self.d.now = 10.0
        self.d.wall = 1_000_000.0
        self.decoders: dict[int, Decoder] = {}
        self.n = 0

    def peer(self, *funcs: bytes) -> Peer:
        self.n += 1
        p = Peer(self.n, 100 + self.n, "127.0.0.1")
        self.d.connect(p)
        self.decoders[p.id] = Decoder(Role.CLIENT)
        for f in funcs:
            self.d.handle(p, CanDo(f))
        return p

    def send(self, p: Peer, *events: Event) -> list[Event]:
        for ev in events:
            self.d.handle(p, ev)
        return self.recv(p)

    def recv(self, p: Peer) -> list[Event]:
        data = b"".join(p.out)
        p.out.clear()
        self.d.output.written(p, len(data))  # as the connection does once it is sent
        dec = self.decoders[p.id]
        dec.receive_data(data)
        return dec.receive_events()

    def text(self, p: Peer) -> bytes:
        data = b"".join(p.out)
        p.out.clear()
        self.d.output.written(p, len(data))
        return data

    def grab(self, w: Peer) -> bytes:
        (ev,) = self.send(w, GrabJob())
        assert isinstance(ev, JobAssign), ev
        return ev.handle
