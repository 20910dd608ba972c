"""An admin client: the text commands of spec section 3, against any Gearman server.

Rules:

* One connection per :class:`AdminClient`, opened on the first command and reopened by
  the next command after it broke, so a monitor that polls (``trigear admin top``) rides
  through a server restart.  Commands on one client run one at a time (a lock): the
  protocol has no request ids, so replies are matched to commands by order alone.
* A command is one line out and one reply back: a listing up to its ``.`` line, or one
  ``OK``/``ERR`` line (:func:`trigear.protocol.admin.reply_end` knows which).  Lines end
  in ``\\r\\n`` as gearadmin sends them: gearmand 1.1.20 drops the last letter of
  ``create function F`` ended by a bare ``\\n``.  The typed
  methods parse listings with the protocol core's ``parse_*`` helpers and raise
  :class:`ServerError` for an ``ERR`` reply, with its name and URL-decoded text.
* Cancelling a command while its reply is outstanding closes the connection (the reply
  would otherwise be read as the next command's); the next command reconnects.  The
  library sets no timeouts: callers wrap calls in ``anyio.fail_after``.
* A server that cannot be reached is :class:`NoServerAvailable`; a connection that dies
  under a command, or a reply that is not one, is :class:`ConnectionLost`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar

import anyio
import anyio.abc

from ..protocol import RemoteProtocolError
from ..protocol import admin as proto
from ..protocol.admin import JobRow, PriorityStatusRow, StatusRow, WorkerRow
from .connection import open_stream
from .errors import ConnectionLost, NoServerAvailable, ServerError
from .placement import parse_address

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Callable

    from .placement import Address

__all__ = [
    "AdminClient",
    "JobRow",
    "PriorityStatusRow",
    "StatusRow",
    "WorkerRow",
    "open_admin_client",
]

T = TypeVar("T")

#: The largest reply read (a ``show jobs`` of a million jobs is about 30 MiB).
MAX_REPLY: Final = 256 << 20

_TRANSPORT_ERRORS: Final = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


def _word(value: str | bytes, what: str) -> bytes:
    """One word of an admin line: no spaces, no line breaks, not empty."""
    b = value.encode() if isinstance(value, str) else bytes(value)
    if not b or any(c in b for c in b" \t\r\n\0"):
        raise ValueError(f"{what} {value!r} cannot be sent in an admin command")
    return b


class AdminClient:
    """Admin commands to one Gearman server.  Make one with :func:`open_admin_client`."""

    def __init__(
        self,
        server: str | tuple[str, int] = "127.0.0.1:4730",
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.address: Address = parse_address(server)
        self._ssl_context = ssl_context
        self._stream: anyio.abc.ByteStream | None = None
        self._buffer = bytearray()
        self._lock = anyio.Lock()

    # -- the raw command --

    async def command(self, line: str | bytes) -> bytes:
        """Send one admin line; return the whole reply as sent (``ERR`` included).

        Raises :class:`NoServerAvailable` if the server cannot be reached and
        :class:`ConnectionLost` if the connection ends before the reply does.
        """
        raw = line.encode() if isinstance(line, str) else bytes(line)
        if b"\n" in raw or b"\0" in raw:
            raise ValueError(f"an admin command is one line: {line!r}")
        words = raw.split(b" ", 1)
        listing = words[0].lower() in proto.LISTING_COMMANDS
        async with self._lock:
            stream = await self._connect()
            try:
                await stream.send(raw + b"\r\n")
                return await self._read_reply(stream, listing)
            except _TRANSPORT_ERRORS as exc:
                await self._drop()
                why = "server closed the connection" if isinstance(exc, anyio.EndOfStream) else exc
                raise ConnectionLost(f"{self.address}: {why}") from exc
            except BaseException:
                await self._drop()
                raise

    async def _connect(self) -> anyio.abc.ByteStream:
        if self._stream is None:
            try:
                self._stream = await open_stream(self.address, self._ssl_context)
            except OSError as exc:
                raise NoServerAvailable(f"{self.address}: cannot connect: {exc}") from exc
            self._buffer.clear()
        return self._stream

    async def _read_reply(self, stream: anyio.abc.ByteStream, listing: bool) -> bytes:
        buf = self._buffer
        searched = 0
        while (end := proto.reply_end(buf, listing, searched)) < 0:
            if len(buf) > MAX_REPLY:
                raise ConnectionLost(f"{self.address}: admin reply over {MAX_REPLY} bytes")
            searched = len(buf)
            buf += await stream.receive()
        reply = bytes(buf[:end])
        del buf[:end]
        return reply

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        self._buffer.clear()
        if stream is not None:
            await anyio.aclose_forcefully(stream)

    async def _ok(self, line: bytes) -> bytes:
        """Send a one-line command; return the reply line without ``OK``, or raise."""
        reply = await self.command(line)
        error = proto.parse_error(reply)
        if error is not None:
            raise ServerError(error[0].encode(), error[1].encode())
        text = reply.rstrip(b"\r\n")
        if text == b"OK" or text.startswith(b"OK "):
            return text[3:]
        return text  # the Perl server's version is a bare line

    async def _listing(self, line: bytes) -> bytes:
        reply = await self.command(line)
        error = proto.parse_error(reply) if reply.endswith(b"\r\n") else None
        if error is not None:
            raise ServerError(error[0].encode(), error[1].encode())
        return reply

    def _parsed(self, parse: Callable[[bytes], T], reply: bytes) -> T:
        try:
            return parse(reply)
        except RemoteProtocolError as exc:
            raise ConnectionLost(f"{self.address}: {exc}") from None

    # -- listings --

    async def status(self) -> list[StatusRow]:
        """``status``: per function, jobs queued plus running, running, workers."""
        return self._parsed(proto.parse_status, await self._listing(b"status"))

    async def prioritystatus(self) -> list[PriorityStatusRow]:
        """``prioritystatus``: per function, jobs queued at each priority, workers."""
        return self._parsed(proto.parse_prioritystatus, await self._listing(b"prioritystatus"))

    async def workers(self) -> list[WorkerRow]:
        """``workers``: every connection (clients too, with no functions)."""
        return self._parsed(proto.parse_workers, await self._listing(b"workers"))

    async def show_jobs(self) -> list[JobRow]:
        """``show jobs``: every job the server holds."""
        return self._parsed(proto.parse_show_jobs, await self._listing(b"show jobs"))

    async def show_unique_jobs(self) -> list[bytes]:
        """``show unique jobs``: the unique of every job the server holds."""
        return self._parsed(proto.parse_show_unique_jobs, await self._listing(b"show unique jobs"))

    # -- one-line commands --

    async def cancel_job(self, handle: str | bytes) -> None:
        """``cancel job HANDLE``; :class:`ServerError` ``UNKNOWN_JOB`` if there is none."""
        await self._ok(b"cancel job " + _word(handle, "handle"))

    async def create_function(self, function: str | bytes) -> None:
        """``create function F``: list F in ``status`` before any worker has it."""
        await self._ok(b"create function " + _word(function, "function"))

    async def drop_function(self, function: str | bytes) -> None:
        """``drop function F``: forget a function no worker or job uses."""
        await self._ok(b"drop function " + _word(function, "function"))

    async def maxqueue(self, function: str | bytes, *sizes: int) -> None:
        """``maxqueue F [N | HIGH NORMAL LOW]``: no size (or <= 0) means unlimited."""
        if len(sizes) not in (0, 1, 3):
            raise ValueError("maxqueue takes no size, one size, or three (high normal low)")
        line = b" ".join([b"maxqueue", _word(function, "function"), *(b"%d" % n for n in sizes)])
        await self._ok(line)

    async def getpid(self) -> int:
        """``getpid``: the server's process id."""
        text = await self._ok(b"getpid")
        if not text.isdigit():
            raise ConnectionLost(f"{self.address}: getpid answered {text!r}")
        return int(text)

    async def verbose(self) -> str:
        """``verbose``: the server's log level."""
        return (await self._ok(b"verbose")).decode(errors="replace")

    async def version(self) -> str:
        """``version``: the server's version text."""
        return (await self._ok(b"version")).decode(errors="replace")

    async def shutdown(self, *, graceful: bool = False) -> None:
        """``shutdown [graceful]``: stop the server (trigear takes it from loopback only).

        The server closes the connection after its ``OK``; the next command reconnects.
        """
        await self._ok(b"shutdown graceful" if graceful else b"shutdown")
        async with self._lock:
            await self._drop()

    # -- lifetime --

    async def aclose(self) -> None:
        """Close the connection (a later command opens a new one)."""
        async with self._lock:
            await self._drop()


@asynccontextmanager
async def open_admin_client(
    server: str | tuple[str, int] = "127.0.0.1:4730",
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[AdminClient]:
    """An :class:`AdminClient` for ``server``, connected on its first command and closed
    on exit (over TLS with ``ssl_context``, as :func:`trigear.open_client`)::

        async with trigear.open_admin_client("127.0.0.1:4730") as admin:
            for row in await admin.status():
                print(row.function, row.total, row.running, row.workers)
    """
    client = AdminClient(server, ssl_context=ssl_context)
    try:
        yield client
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
