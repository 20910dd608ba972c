"""A scripted Gearman peer (client, worker or admin) on an in-memory connection to a
trigear Server, shared by the server and durability tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from trigear.protocol import NEED_DATA, Decoder, Role, encode
from trigear.protocol.packets import Event, JobCreated


class Peer:
    """A scripted Gearman peer (client, worker or admin) on an in-memory connection."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = Decoder(Role.CLIENT)
        self.text = b""

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(encode(e, Role.CLIENT, validate=False) for e in events))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def recv(self, within: float = 10) -> Event:
        """The next packet from the server (fails the test after ``within`` s of silence)."""
        with trio.fail_after(within):
            while True:
                ev = self.decoder.next_event()
                if ev is not NEED_DATA:
                    return ev  # type: ignore[return-value]
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.decoder.receive_data(data)

    async def recv_n(self, n: int) -> list[Event]:
        return [await self.recv() for _ in range(n)]

    async def created(self) -> bytes:
        """The next packet, which must be JOB_CREATED; its handle."""
        ev = await self.recv()
        assert isinstance(ev, JobCreated), ev
        return ev.handle

    async def nothing(self, seconds: float = 1.0) -> None:
        """Assert the server sends nothing for ``seconds`` (virtual time)."""
        ev = self.decoder.next_event()
        assert ev is NEED_DATA, f"unexpected {ev!r}"
        with trio.move_on_after(seconds):
            data = await self.stream.receive_some(65536)
            raise AssertionError(f"unexpected bytes {data!r}")

    async def closed(self) -> bool:
        """True if the server closes the connection within 10 s, discarding data."""
        with trio.move_on_after(10):
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return True
                if not data:
                    return True
        return False

    async def admin(self, line: str | bytes) -> bytes:
        """Send an admin line; return the reply (a single line, or a listing to '.')."""
        raw = line.encode() if isinstance(line, str) else line
        await self.stream.send_all(raw + b"\n")
        return await self.reply()

    async def reply(self) -> bytes:
        with trio.fail_after(10):
            while True:
                buf = self.text
                if buf.startswith((b"OK", b"ERR")) and b"\n" in buf:
                    end = buf.index(b"\n") + 1
                    self.text = buf[end:]
                    return buf[:end]
                if buf.startswith(b".\n"):
                    self.text = buf[2:]
                    return b".\n"
                if b"\n.\n" in buf:
                    end = buf.index(b"\n.\n") + 3
                    self.text = buf[end:]
                    return buf[:end]
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self.text += data

    async def aclose(self) -> None:
        await self.stream.aclose()


#: The server tests' ``connect`` fixture: ``await connect(ip="127.0.0.1")`` -> a Peer.
Connect = Callable[..., Awaitable[Peer]]
