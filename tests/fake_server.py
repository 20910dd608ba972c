"""A scripted fake Gearman server on loopback, for the client and worker tests.

The fake speaks through the protocol core (``Decoder(Role.SERVER)``, ``encode_response``),
so each test decides exactly which answer comes when.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

from trigear.protocol import NEED_DATA, Decoder, Role, encode_response
from trigear.protocol import packets as P

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class FakeConnection:
    """One accepted connection, seen from the fake server."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.decoder = Decoder(Role.SERVER)

    async def recv(self) -> Any:
        with anyio.fail_after(5):
            while True:
                ev = self.decoder.next_event()
                if ev is not NEED_DATA:
                    return ev
                self.decoder.receive_data(await self.stream.receive())

    async def expect(self, *classes: type[Any]) -> list[Any]:
        got = [await self.recv() for _ in classes]
        assert [type(e) for e in got] == list(classes), got
        return got

    async def send(self, *events: Any) -> None:
        await self.stream.send(b"".join(encode_response(e) for e in events))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def client_handshake(self) -> None:
        """Answer the OPTION_REQ exceptions every client connection opens with."""
        (opt,) = await self.expect(P.OptionReq)
        assert opt.option == b"exceptions"
        await self.send(P.OptionRes(b"exceptions"))

    async def close(self) -> None:
        await self.stream.aclose()


class FakeServer:
    def __init__(self, listener: anyio.abc.SocketListener) -> None:
        self.listener = listener
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.address = f"127.0.0.1:{port}"
        self._send, self._receive = anyio.create_memory_object_stream[FakeConnection](10)

    async def serve(self) -> None:
        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await self._send.send(FakeConnection(stream))
                await anyio.sleep_forever()

        async with self.listener:
            await self.listener.serve(handle)

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def accept(self) -> FakeConnection:
        with anyio.fail_after(5):
            return await self._receive.receive()


@asynccontextmanager
async def fake_servers(n: int = 1) -> AsyncIterator[list[FakeServer]]:
    async with anyio.create_task_group() as tg:
        fakes = []
        for _ in range(n):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            fake = FakeServer(listener)
            tg.start_soon(fake.serve)
            fakes.append(fake)
        try:
            yield fakes
        finally:
            tg.cancel_scope.cancel()
            for fake in fakes:
                fake.close()


async def settle() -> None:
    for _ in range(20):
        await anyio.lowlevel.checkpoint()
    await anyio.sleep(0.01)
