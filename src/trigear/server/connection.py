"""The Trio side of one peer: a reader and a writer task, in a nursery of their own.

In the server package a *connection* is this Trio side of one peer; the dispatcher's view
of the same peer is :class:`~trigear.server.state.Peer`.

* The **reader** turns bytes into events (:class:`~trigear.protocol.Decoder`) and hands
  the events one read produced to the dispatcher task in one message (at most
  :data:`MAX_EVENTS` each, other peers' messages between them), on the bounded
  inbox: a peer faster than the dispatcher is slowed by TCP, not buffered.  There is one
  read loop, whatever the transport; what differs is how a chunk is read.  A TCP socket
  waits for readability and reads with one non-blocking ``os.read`` (it skips the extra
  scheduler round trips of ``receive_some`` on the hot path); any other
  :class:`trio.abc.Stream` (in-memory connections, TLS) uses ``receive_some``.  Either
  way a peer that stops in the middle of a packet or line is closed after
  ``ServerConfig.stall_timeout``; one idle between packets (a sleeping worker, a waiting
  client) never is.
* The **writer** writes what the dispatcher task could not write at once.  The dispatcher
  task never awaits a peer: :meth:`Connection.write_nowait` tries the socket directly and
  queues the rest for the writer, and cuts off a peer that leaves more than
  ``ServerConfig.max_output`` bytes unread (spec section 5), so connection -> dispatcher
  -> connection cannot deadlock.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Protocol

import trio

from ..protocol.decoder import Decoder
from ..protocol.errors import RemoteProtocolError
from ..protocol.framing import Role
from .messages import CLOSE_AFTER_OUTPUT, BadInput, Events, OutboxItem

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .config import ServerConfig
    from .messages import InboxMessage
    from .output import Output
    from .state import Peer

__all__ = ["MAX_EVENTS", "ChunkReader", "Connection"]

log = logging.getLogger("trigear.server")

_READ_SIZE = 65536
#: Events one message to the dispatcher holds at most: the work done for one peer
#: before the dispatcher takes the next peer's packets.
MAX_EVENTS = 64


class ChunkReader(Protocol):
    """How the read loop gets a connection's bytes: a non-blocking read, and a wait
    until one may find data.  The loop around them (stall timeout, hand-over) is the same
    for every transport."""

    def read_nowait(self) -> bytes | None:
        """The bytes that have arrived, b"" at the end of the stream, or None when none
        are waiting."""
        ...

    def wait(self) -> Awaitable[None]:
        """Return when :meth:`read_nowait` may have something."""
        ...


class _SocketChunks:
    """A TCP socket: one non-blocking ``os.read``, and an epoll wait only when it finds
    nothing.  This skips the extra scheduler round trips of ``receive_some`` on the hot
    path."""

    __slots__ = ("_fd", "_sock")

    def __init__(self, sock: trio.socket.SocketType, fd: int) -> None:
        self._sock = sock
        self._fd = fd

    def read_nowait(self) -> bytes | None:
        try:
            return os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    def wait(self) -> Awaitable[None]:
        # trio's own coroutine, not one wrapping it: the reader task is resumed at every
        # read, and each coroutine frame between it and trio costs on every resume.
        return trio.lowlevel.wait_readable(self._sock)  # noqa: ASYNC105 - awaited by the caller


class _StreamChunks:
    """Any trio Stream (in-memory connections, TLS): ``receive_some``, with a broken or
    closed stream as its end."""

    __slots__ = ("_chunk", "_stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._chunk: bytes | None = None

    def read_nowait(self) -> bytes | None:
        chunk, self._chunk = self._chunk, None
        return chunk

    async def wait(self) -> None:
        try:
            self._chunk = bytes(await self._stream.receive_some(_READ_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._chunk = b""


class Connection:
    """One peer's reader and writer, and the dispatcher task's way to write to it."""

    __slots__ = (
        "_config",
        "_inbox",
        "_nursery",
        "_outbox",
        "_outbox_recv",
        "_output",
        "_scope",
        "_stream",
        "fd",
        "peer",
        "queued",
    )

    def __init__(
        self,
        peer: Peer,
        stream: trio.abc.Stream,
        fd: int,
        inbox: trio.MemorySendChannel[InboxMessage],
        config: ServerConfig,
        output: Output | None = None,
    ) -> None:
        self.peer = peer
        #: The socket's descriptor for direct non-blocking reads and writes, or -1.
        self.fd = fd
        #: Bytes handed to the writer task and not yet sent.
        self.queued = 0
        self._stream = stream
        self._inbox = inbox
        self._config = config
        #: Where written bytes are taken off the unread counts (:mod:`.output`).
        self._output = output
        #: The writer's queue and the nursery it runs in: made on the first write the
        #: socket does not take at once.  Most connections never need one (a reply fits
        #: the socket's buffer), and an idle connection is cheaper without it.
        self._outbox: trio.MemorySendChannel[OutboxItem] | None = None
        self._outbox_recv: trio.MemoryReceiveChannel[OutboxItem] | None = None
        self._nursery: trio.Nursery | None = None
        self._scope = trio.CancelScope()

    async def serve(self) -> None:
        """Read and write until the peer leaves, the stream breaks, or :meth:`cancel`.
        The caller closes the stream afterwards."""
        stream = self._stream
        reader: ChunkReader
        if self.fd >= 0 and isinstance(stream, trio.SocketStream):
            reader = _SocketChunks(stream.socket, self.fd)
        else:
            reader = _StreamChunks(stream)
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self._outbox_recv is not None:
                        nursery.start_soon(self._write, self._outbox_recv)
                    await self._read(reader)
        finally:
            # The descriptor may be reused once the stream is closed: never write to it
            # directly again.
            self.fd = -1

    def cancel(self) -> None:
        """End the connection now, whatever is still queued for it."""
        self._scope.cancel()

    # --- reading ----------------------------------------------------------------------

    async def _read(self, reader: ChunkReader) -> None:
        decoder = Decoder(Role.SERVER, self._config.limits)
        read_nowait = reader.read_nowait
        wait = reader.wait
        checkpoint = trio.lowlevel.checkpoint
        # The deadline of the partial packet held, and which packet it is for.
        deadline = math.inf
        packet = -1
        size = 0
        try:
            while True:
                data = read_nowait()
                if data is None:
                    if decoder.mid_packet:
                        if decoder.progress != packet:
                            # A new packet: its clock starts now.
                            packet = decoder.progress
                            size = 0
                            deadline = trio.current_time() + self._config.stall_timeout
                        if decoder.expected > size:
                            # Its header has come: add time for its size.
                            deadline += self._upload_time(decoder.expected - size)
                            size = decoder.expected
                        with trio.move_on_at(deadline) as scope:
                            await wait()
                        if scope.cancelled_caught:
                            log.info("closing %r: stalled in the middle of a packet", self.peer)
                            return
                    else:
                        await wait()
                    continue
                if not data:
                    return
                decoder.receive_data(data)
                await self._hand_over(decoder)
                # More may have arrived already: yield once (fairness), then try to read
                # before paying for a wait.
                await checkpoint()
        finally:
            # The peer left, stalled, or broke the stream: end the connection, writer too.
            self._scope.cancel()

    def _upload_time(self, nbytes: int) -> float:
        """Seconds a packet's ``nbytes`` may take on top of the stall timeout, at
        ``ServerConfig.min_upload_rate``.  With the stall timeout this is a deadline for
        the whole packet from its first byte, not reset by each byte that arrives: a peer
        trickling a byte at a time is closed as surely as one that stops."""
        rate = self._config.min_upload_rate
        return nbytes / rate if rate > 0 else 0.0

    async def _hand_over(self, decoder: Decoder) -> None:
        """Pass every event the decoder holds to the dispatcher, in one message unless
        there are more than :data:`MAX_EVENTS`."""
        inbox = self._inbox
        while True:
            try:
                events = decoder.receive_events()
            except RemoteProtocolError as exc:
                await inbox.send(BadInput(self.peer, exc))
                if exc.close:
                    # The writer closes the connection once the answer is out.
                    await trio.sleep_forever()
                continue
            if len(events) > MAX_EVENTS:
                # Many pipelined packets: hand them over in parts, letting every other
                # task run between two, so the other peers' packets are taken between
                # them and one peer cannot hold the dispatcher for a whole read.
                for i in range(0, len(events), MAX_EVENTS):
                    await inbox.send(Events(self.peer, events[i : i + MAX_EVENTS]))
                    await trio.lowlevel.checkpoint()
            elif events:
                message = Events(self.peer, events)
                try:
                    inbox.send_nowait(message)
                except trio.WouldBlock:
                    await inbox.send(message)
            return

    # --- writing ----------------------------------------------------------------------

    def write_nowait(self, data: bytes, close: bool) -> None:
        """Send ``data`` without waiting, then close if ``close`` (from the dispatcher
        task, which never awaits a peer).

        Nothing waiting in the writer: try the socket directly, without a task switch.
        Whatever it does not take goes to the writer task, unless the peer has left more
        than ``max_output`` bytes unread: then it is cut off.
        """
        if data and self.queued == 0 and self.fd >= 0:
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._scope.cancel()
                return
            if sent and self._output is not None:
                self._output.written(self.peer, sent)
            data = data[sent:]
        if data:
            self.queued += len(data)
            if self.queued > self._config.max_output:
                log.warning("closing %r: %d bytes unread", self.peer, self.queued)
                self._scope.cancel()
                return
            self._writer().send_nowait(data)
        if close:
            if self._outbox is None:
                # Everything went out directly: nothing to wait for.
                self._scope.cancel()
            else:
                self._outbox.send_nowait(CLOSE_AFTER_OUTPUT)

    def _writer(self) -> trio.MemorySendChannel[OutboxItem]:
        """The writer task's queue, the task started on first use."""
        if self._outbox is None:
            self._outbox, self._outbox_recv = trio.open_memory_channel[OutboxItem](math.inf)
            if self._nursery is not None:
                try:
                    self._nursery.start_soon(self._write, self._outbox_recv)
                except RuntimeError:
                    # The connection has ended already: what is queued goes nowhere.
                    self._scope.cancel()
        return self._outbox

    async def _write(self, outbox: trio.MemoryReceiveChannel[OutboxItem]) -> None:
        try:
            async for item in outbox:
                items = [item]
                while True:
                    try:
                        items.append(outbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                data = b"".join([i for i in items if isinstance(i, bytes)])
                if data:
                    await self._stream.send_all(data)
                    self.queued -= len(data)
                    if self._output is not None:
                        self._output.written(self.peer, len(data))
                if CLOSE_AFTER_OUTPUT in items:
                    self._scope.cancel()
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._scope.cancel()
