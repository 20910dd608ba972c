"""One client-side TCP connection to a Gearman server: a reader, a writer, nothing else.

:func:`open_stream` makes the stream it runs on: TCP, and TLS over it when the caller
gave an :class:`ssl.SSLContext`.  The TLS handshake is bounded
(:data:`TLS_HANDSHAKE_TIMEOUT`: a server that accepts and never answers would otherwise
hold a worker's connect forever), and TLS is closed without waiting for the server's
close_notify, which Gearman servers (gearmand, gear, trigear) do not all send: packets
frame themselves, so a truncation is seen anyway.

Rules (shared by :mod:`trigear.client.submit` and :mod:`trigear.client.worker`):

* **A single writer.**  Callers hand whole packets to :meth:`Connection.send`, which only
  appends to a buffer (it never awaits), and one writer task joins whatever is buffered
  into a single ``send``.  A caller cancelled at any instant therefore never leaves half a
  packet on the wire: either the packet was queued whole or not at all.  The writer itself
  is only cancelled when the connection is being torn down, and then the socket is closed.
* **A single reader.**  It decodes with the protocol core and hands each batch of events to
  a callback that must not await: routing is synchronous, so the order the server sent
  things in is the order the client acts on them (JOB_CREATED is routed before the
  WORK_* that follow it).
* **Bounded output.**  :meth:`Connection.wait_writable` blocks a caller while more than
  ``HIGH_WATER`` bytes wait to be written, so a stalled server pushes back instead of
  growing memory.  Callers wait *before* queueing, so being cancelled there sends nothing.
* **Transport errors are mapped once, here**: whatever ends the connection (EOF, reset,
  a reply the codec rejects) becomes the :class:`ConnectionLost` that :meth:`Connection.run`
  returns, and every later :meth:`send` raises it.

Two quirks of real servers are absorbed by the codec: the Perl Gearman::Server answers
GET_STATUS with empty numerator and denominator for a job that has sent no WORK_STATUS
(read as 0), and gearmand 1.1.20 puts a stray NUL after the handle of WORK_FAIL (dropped).
"""

from __future__ import annotations

import contextlib
from struct import Struct
from typing import TYPE_CHECKING, Final

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from .._keepalive import DEFAULT_KEEPALIVE, Keepalive, set_keepalive
from ..protocol import Decoder, Event, RemoteProtocolError, Role
from .errors import ConnectionLost

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    from .placement import Address

__all__ = ["HIGH_WATER", "TLS_HANDSHAKE_TIMEOUT", "Connection", "open_stream"]

#: Seconds a TLS handshake may take before connecting fails.
TLS_HANDSHAKE_TIMEOUT: Final = 30.0

#: Bytes queued for writing beyond which :meth:`Connection.wait_writable` blocks.
HIGH_WATER: Final = 1 << 20
_READ_SIZE: Final = 1 << 16
_HEAD: Final = Struct(">4sII")
_STATUS_RES: Final = 20

_TRANSPORT_ERRORS: Final = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


async def open_stream(
    address: Address,
    ssl_context: ssl.SSLContext | None = None,
    keepalive: Keepalive = DEFAULT_KEEPALIVE,
) -> anyio.abc.ByteStream:
    """Connect to ``address``: TCP, then TLS with ``ssl_context`` (the server's name
    checked against ``address.host``, as ``ssl_context.check_hostname`` says).

    Every failure is an :class:`OSError`: refused, unreachable, a certificate that does
    not verify (:class:`ssl.SSLError`), a handshake the server ended or did not finish
    within :data:`TLS_HANDSHAKE_TIMEOUT` (:class:`TimeoutError`).

    The socket gets TCP keepalive (``keepalive``; :mod:`trigear._keepalive`): a server
    whose host vanished is noticed, and the client or worker fails over or reconnects.
    """
    stream = await anyio.connect_tcp(address.host, address.port)
    with contextlib.suppress(OSError):
        set_keepalive(stream.extra(anyio.abc.SocketAttribute.raw_socket), keepalive)
    if ssl_context is None:
        return stream
    try:
        with anyio.fail_after(TLS_HANDSHAKE_TIMEOUT):
            return await TLSStream.wrap(
                stream,
                hostname=address.host,
                ssl_context=ssl_context,
                standard_compatible=False,
            )
    except OSError:
        await anyio.aclose_forcefully(stream)
        raise
    except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
        await anyio.aclose_forcefully(stream)
        raise ConnectionResetError(f"the server ended the TLS handshake ({exc!r})") from exc
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


class Connection:
    """A connected stream, its decoder, its output buffer and its two tasks."""

    def __init__(self, stream: anyio.abc.ByteStream, address: Address) -> None:
        self.stream = stream
        self.address = address
        self._decoder = Decoder(Role.CLIENT)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._wake = anyio.Event()
        self._drained: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._closing: str | None = None
        #: Why the connection ended, once it has.
        self.error: ConnectionLost | None = None

    @property
    def closed(self) -> bool:
        return self.error is not None

    def send(self, data: bytes) -> None:
        """Queue whole packets for the writer.  Never blocks; raises ConnectionLost."""
        if self.error is not None:
            raise self.error
        self._out.append(data)
        self._out_bytes += len(data)
        if len(self._out) == 1:
            self._wake.set()

    async def wait_writable(self) -> None:
        """Wait until the output buffer is below ``HIGH_WATER`` (a checkpoint either way)."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        while self._out_bytes > HIGH_WATER and self.error is None:
            if self._drained is None:
                self._drained = anyio.Event()
            await self._drained.wait()
        if self.error is not None:
            raise self.error

    def close_when_flushed(self, reason: str = "closed by this side") -> None:
        """Close once everything queued so far has been written (a graceful close)."""
        self._closing = reason
        self._wake.set()

    def close(self, reason: str = "closed by this side") -> None:
        """End the connection now (synchronous); :meth:`run` returns soon after."""
        self._fail(ConnectionLost(f"{self.address}: {reason}"))

    def _fail(self, error: ConnectionLost) -> None:
        if self.error is None:
            self.error = error
        self._wake.set()
        if self._drained is not None:
            self._drained.set()
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, on_events: Callable[[list[Event]], None]) -> ConnectionLost:
        """Read and write until the connection ends; return why it ended.

        ``on_events`` gets every batch of decoded events, in order, and must not await.
        The stream is closed when this returns (or is cancelled).
        """
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self.error is not None:
                    tg.cancel_scope.cancel()
                tg.start_soon(self._writer)
                await self._reader(on_events)
        finally:
            self._fail(ConnectionLost(f"{self.address}: connection closed"))
            await anyio.aclose_forcefully(self.stream)
        assert self.error is not None
        return self.error

    async def _reader(self, on_events: Callable[[list[Event]], None]) -> None:
        decoder = self._decoder
        receive = self.stream.receive
        try:
            while True:
                data = await receive(_READ_SIZE)
                decoder.receive_data(data)
                events = decoder.receive_events()
                if events:
                    on_events(events)
        except _TRANSPORT_ERRORS as exc:
            why = "server closed the connection" if isinstance(exc, anyio.EndOfStream) else exc
            self._fail(ConnectionLost(f"{self.address}: {why}"))
        except RemoteProtocolError as exc:
            self._fail(ConnectionLost(f"{self.address}: protocol error from server: {exc}"))

    async def _writer(self) -> None:
        send = self.stream.send
        try:
            while True:
                if not self._out:
                    if self.error is not None:
                        return
                    if self._closing is not None:
                        self.close(self._closing)
                        return
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                out = self._out
                data = out[0] if len(out) == 1 else b"".join(out)
                out.clear()
                self._out_bytes = 0
                if self._drained is not None:
                    self._drained.set()
                    self._drained = None
                await send(data)
        except _TRANSPORT_ERRORS as exc:
            self._fail(ConnectionLost(f"{self.address}: {exc}"))
