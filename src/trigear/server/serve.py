"""The Trio layer of the server: listeners, one nursery per connection, the dispatcher task.

Flow (the design card):

* Each connection runs a **reader** (bytes -> :class:`~trigear.protocol.Decoder` -> the
  dispatcher's inbox) and a **writer** (its outbox -> one ``send_all`` per batch) in a
  nursery of its own.  The reader hands over every event one ``receive_some`` produced
  in a single message, and waits on the bounded inbox, so TCP pushes back on a peer
  faster than the dispatcher.
* The **dispatcher task** owns all state (:class:`~trigear.server.dispatcher.Dispatcher`).
  It takes every message waiting in the inbox, acts on them, and then hands each peer's
  output to its writer with ``send_nowait`` on an unbounded channel: it never awaits a
  peer.  A peer whose unread output passes ``ServerConfig.max_output`` is cut off and
  handled as a disconnect (spec section 5), so a peer that does not read cannot make the
  server buffer without bound, and connection -> dispatcher -> connection cannot deadlock.
* With a durable store, a **store writer** task commits what the dispatcher batched
  (group commit) and reports back through the inbox; the dispatcher goes on meanwhile.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..protocol.codec import Decoder, Role
from ..protocol.errors import RemoteProtocolError
from ..store.base import Store, StoreError
from ..store.memory import MemoryStore
from .commits import StoreBatch
from .config import ServerConfig
from .dispatcher import Dispatcher
from .state import Peer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .stats import ServerStats

__all__ = ["Server", "serve_gearman"]

log = logging.getLogger("trigear.server")

# Inbox message kinds (the payload of a (peer, payload) pair that is not a list of events).
_OPEN = "open"
_CLOSE = "close"
_DRAIN = "drain"
_NUDGE = "nudge"
_STORE_OK = "store-ok"
_STORE_FAILED = "store-failed"
_CLOSE_AFTER = object()

_INBOX_SIZE = 256
_PASS_LIMIT = 512
_READ_SIZE = 65536


@dataclass(eq=False, slots=True)
class _Conn:
    """The Trio side of one peer: its outbox and how to stop it."""

    peer: Peer
    outbox: trio.MemorySendChannel[Any]
    scope: trio.CancelScope
    #: The socket's descriptor for direct non-blocking writes, or -1.
    fd: int = -1
    #: Bytes handed to the writer task and not yet sent.
    queued: int = 0


def _first_handle() -> int:
    # Handles must not repeat across restarts (S17), even with the memory store: start
    # from the current time in microseconds.  A restart T seconds later starts T * 10**6
    # higher, more than one server can issue in T seconds.
    return time.time_ns() // 1000


class Server:
    """A Gearman job server.  Use it inside your own Trio program::

        server = Server(ServerConfig(job_retries=3))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_tcp, 4730, ["127.0.0.1"])
            ...

    or run ``python -m trigear``.
    """

    def __init__(self, config: ServerConfig | None = None, store: Store | None = None) -> None:
        self.config = config or ServerConfig()
        self.store: Store = store or MemoryStore()
        self.dispatcher = Dispatcher(
            self.config, durable=self.store.durable, first_handle=_first_handle()
        )
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[Any, Any]](_INBOX_SIZE)
        self._store_send, self._store_recv = trio.open_memory_channel[StoreBatch](math.inf)
        self._conns: dict[int, _Conn] = {}
        self._next_id = 0
        self._conn_nursery: trio.Nursery | None = None
        self._wall0 = 0.0
        self._drained = trio.Event()
        self._shutdown = trio.Event()
        self._settled = trio.Event()
        self._stop_now = False
        self.listeners: list[trio.SocketListener] = []

    # --- public ------------------------------------------------------------------------

    def statistics(self) -> ServerStats:
        """Counters since start (jobs submitted, completed, requeued, ...)."""
        return self.dispatcher.stats

    async def serve_tcp(
        self,
        port: int = 4730,
        hosts: Sequence[str] = ("127.0.0.1",),
        *,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``port`` at each of ``hosts`` and serve until cancelled or shut down.

        ``port=0`` picks a free port; see :attr:`listeners` for the bound addresses.
        """
        listeners: list[trio.SocketListener] = []
        for host in hosts:
            listeners.extend(await trio.open_tcp_listeners(port, host=host))
        await self.serve(listeners, task_status=task_status)

    async def serve(
        self,
        listeners: Sequence[trio.SocketListener] = (),
        *,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve connections from ``listeners`` (and :meth:`connect_in_memory`) until
        cancelled, or until a shutdown (signal or admin ``shutdown``) completes."""
        self.listeners = list(listeners)
        loaded = await self.store.load()
        self._wall0 = time.time() - trio.current_time()
        self._set_clock()
        self.dispatcher.replay(loaded)
        if loaded.jobs:
            log.info("replayed %d stored jobs", len(loaded.jobs))
        try:
            async with trio.open_nursery() as core:
                core.start_soon(self._dispatch_loop)
                if self.store.durable:
                    core.start_soon(self._store_writer)
                async with trio.open_nursery() as conns:
                    self._conn_nursery = conns
                    async with trio.open_nursery() as accepting:
                        for listener in self.listeners:
                            accepting.start_soon(self._accept_loop, listener)
                        task_status.started(self)
                        await self._shutdown.wait()
                        accepting.cancel_scope.cancel()
                    for listener in self.listeners:
                        await listener.aclose()
                    if not self._stop_now:
                        await self._drain()
                    conns.cancel_scope.cancel()
                # Let the dispatcher see every close before it stops.
                with trio.move_on_after(5):
                    await self._settle_store()
                core.cancel_scope.cancel()
        finally:
            for listener in self.listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()
            with trio.CancelScope(shield=True):
                await self.store.aclose()

    @property
    def shutting_down(self) -> bool:
        """True once a shutdown has begun."""
        return self._shutdown.is_set()

    def shutdown(self, *, graceful: bool = True) -> None:
        """Stop serving.  Graceful (S21): stop accepting and assigning, let running jobs
        finish up to ``ServerConfig.shutdown_timeout``, write what the store still needs,
        then return from :meth:`serve`.  Calling it again stops at once."""
        if self._shutdown.is_set() or not graceful:
            self._stop_now = True
            self._drained.set()
        self._shutdown.set()

    def connect_in_memory(self, ip: str = "127.0.0.1") -> trio.StapledStream[Any, Any]:
        """A client end of an in-memory connection to this server (for tests)."""
        import trio.testing

        client, server = trio.testing.memory_stream_pair()
        assert self._conn_nursery is not None, "the server is not serving yet"
        self._conn_nursery.start_soon(self.handle_stream, server, ip)
        return client

    # --- connections ---------------------------------------------------------------------

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        assert self._conn_nursery is not None
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and friends: back off, keep serving
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            self._conn_nursery.start_soon(self.handle_stream, stream)

    async def handle_stream(self, stream: trio.abc.Stream, ip: str | None = None) -> None:
        """Serve one connection until it closes."""
        fd = -1
        if isinstance(stream, trio.SocketStream):
            try:
                fd = stream.socket.fileno()
                if ip is None:
                    ip = str(stream.socket.getpeername()[0])
                stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
            except OSError:
                fd = -1
        self._next_id += 1
        ip = ip or "-"
        loopback = ip.startswith("127.") or ip in ("::1", "-") or ip.startswith("::ffff:127.")
        peer = Peer(self._next_id, fd if fd >= 0 else self._next_id, ip, loopback)
        outbox, outbox_recv = trio.open_memory_channel[Any](math.inf)
        try:
            async with trio.open_nursery() as nursery:
                conn = _Conn(peer, outbox, nursery.cancel_scope, fd)
                self._conns[peer.id] = conn
                await self._inbox_send.send((peer, _OPEN))
                nursery.start_soon(self._writer, stream, outbox_recv, conn)
                if fd >= 0 and isinstance(stream, trio.SocketStream):
                    await self._socket_reader(stream, fd, peer)
                else:
                    await self._reader(stream, peer)
                nursery.cancel_scope.cancel()
        finally:
            conn.fd = -1
            self._conns.pop(peer.id, None)
            with trio.CancelScope(shield=True):
                await self._inbox_send.send((peer, _CLOSE))
                await trio.aclose_forcefully(stream)

    async def _hand_over(self, decoder: Decoder, peer: Peer) -> None:
        """Pass every event the decoder holds to the dispatcher in one message."""
        inbox = self._inbox_send
        while True:
            try:
                events = decoder.receive_events()
            except RemoteProtocolError as exc:
                await inbox.send((peer, exc))
                if exc.close:
                    # The writer closes the connection once the answer is out.
                    await trio.sleep_forever()
                continue
            if events:
                try:
                    inbox.send_nowait((peer, events))
                except trio.WouldBlock:
                    await inbox.send((peer, events))
            return

    async def _reader(self, stream: trio.abc.Stream, peer: Peer) -> None:
        """Any trio Stream (in-memory connections, TLS wrappers)."""
        decoder = Decoder(Role.SERVER, self.config.limits)
        stall = self.config.stall_timeout
        while True:
            try:
                if decoder.mid_packet:
                    data: bytes | bytearray = b""
                    with trio.move_on_after(stall) as scope:
                        data = await stream.receive_some(_READ_SIZE)
                    if scope.cancelled_caught:
                        log.info("closing %r: stalled in the middle of a packet", peer)
                        return
                else:
                    data = await stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            decoder.receive_data(bytes(data))
            await self._hand_over(decoder, peer)

    async def _socket_reader(self, stream: trio.SocketStream, fd: int, peer: Peer) -> None:
        """TCP sockets: wait for readability, then one non-blocking read.  This skips
        the extra scheduler round trips of ``receive_some`` on the hot path."""
        decoder = Decoder(Role.SERVER, self.config.limits)
        stall = self.config.stall_timeout
        sock = stream.socket
        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        ready = False
        while True:
            if ready:
                # The last read returned data: more may be waiting already.  Yield once
                # (fairness), then try to read before paying for an epoll wait.
                await checkpoint()
            elif decoder.mid_packet:
                with trio.move_on_after(stall) as scope:
                    await wait_readable(sock)
                if scope.cancelled_caught:
                    log.info("closing %r: stalled in the middle of a packet", peer)
                    return
            else:
                await wait_readable(sock)
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                ready = False
                continue
            except OSError:
                return
            if not data:
                return
            ready = True
            decoder.receive_data(data)
            await self._hand_over(decoder, peer)

    async def _writer(
        self, stream: trio.abc.Stream, outbox: trio.MemoryReceiveChannel[Any], conn: _Conn
    ) -> None:
        """Writes what the dispatcher could not write at once (or everything, for
        streams that are not sockets)."""
        try:
            async for item in outbox:
                items = [item]
                while True:
                    try:
                        items.append(outbox.receive_nowait())
                    except trio.WouldBlock:
                        break
                close = _CLOSE_AFTER in items
                data = b"".join(i for i in items if i is not _CLOSE_AFTER)
                if data:
                    await stream.send_all(data)
                    conn.queued -= len(data)
                if close:
                    conn.scope.cancel()
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            conn.scope.cancel()

    # --- the dispatcher task -------------------------------------------------------------

    def _set_clock(self) -> None:
        now = trio.current_time()
        self.dispatcher.now = now
        self.dispatcher.wall = self._wall0 + now

    def _deadline(self) -> float:
        t, e = self.dispatcher.next_deadline()
        deadline = math.inf
        if t is not None:
            deadline = t
        if e is not None:
            deadline = min(deadline, e - self._wall0)
        return deadline

    def _process(self, peer: Any, payload: Any) -> None:
        d = self.dispatcher
        if type(payload) is list:
            handle = d.handle
            try:
                for event in payload:
                    if peer.gone:
                        break
                    handle(peer, event)
            except Exception:
                # A bug must not take the whole server down with it: log it, drop the
                # connection whose packet hit it, and keep serving everyone else.
                log.exception("internal error on a packet from %r; closing it", peer)
                d.stats.internal_errors += 1
                conn = self._conns.get(peer.id)
                if conn is not None:
                    conn.scope.cancel()
        elif isinstance(payload, RemoteProtocolError):
            if not peer.gone:
                d.protocol_error(peer, payload)
        elif payload is _OPEN:
            d.connect(peer)
        elif payload is _CLOSE:
            d.disconnect(peer)
        elif payload is _STORE_OK:
            d.store_done(True)
        elif payload is _STORE_FAILED:
            d.store_done(False)
        elif payload is _DRAIN:
            d.start_draining()

    async def _dispatch_loop(self) -> None:
        d = self.dispatcher
        inbox = self._inbox
        process = self._process
        durable = self.store.durable
        while True:
            deadline = self._deadline()
            if deadline == math.inf:
                peer, payload = await inbox.receive()
                self._set_clock()
                process(peer, payload)
            else:
                with trio.move_on_at(deadline):
                    peer, payload = await inbox.receive()
                    self._set_clock()
                    process(peer, payload)
                self._set_clock()
                d.tick()
            for _ in range(_PASS_LIMIT):
                try:
                    peer, payload = inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                process(peer, payload)
            self._flush()
            if durable:
                batch = d.take_store_batch()
                if batch is not None:
                    self._store_send.send_nowait(batch)
                if not d.has_store_work():
                    self._settled.set()
            if d.shutdown_request is not None:
                self.shutdown(graceful=d.shutdown_request == "graceful")
                d.shutdown_request = None
            if d.draining and d.running_jobs == 0:
                self._drained.set()

    def _flush(self) -> None:
        limit = self.config.max_output
        for peer in self.dispatcher.take_output():
            out = peer.out
            conn = self._conns.get(peer.id)
            if conn is None or peer.gone:
                out.clear()
                continue
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if data and conn.queued == 0 and conn.fd >= 0:
                # Nothing is waiting in the writer: try the socket directly, without a
                # task switch.  Whatever does not fit goes to the writer task.
                try:
                    sent = os.write(conn.fd, data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    conn.scope.cancel()
                    continue
                data = data[sent:]
            if data:
                conn.queued += len(data)
                if conn.queued > limit:
                    log.warning("closing %r: %d bytes unread", peer, conn.queued)
                    conn.scope.cancel()
                    continue
                conn.outbox.send_nowait(data)
            if peer.closing:
                conn.outbox.send_nowait(_CLOSE_AFTER)

    async def _store_writer(self) -> None:
        delay = 0.0
        async for batch in self._store_recv:
            if delay:
                # The last commit failed.  Do not hammer a store that is down (a
                # failed batch's removals come straight back, and each failure is
                # logged): wait a little, doubling up to 0.5 s, before the next try.
                await trio.sleep(delay)
            delay = min(max(delay * 2, 0.02), 0.5)
            try:
                await self.store.commit(
                    list(batch.add.values()),
                    batch.remove,
                    list(batch.attempts.items()),
                    batch.last_handle_number,
                )
            except StoreError as exc:
                log.error("store commit failed: %s", exc)
                await self._inbox_send.send((None, _STORE_FAILED))
            except Exception:
                log.exception("store commit failed")
                await self._inbox_send.send((None, _STORE_FAILED))
            else:
                delay = 0.0
                await self._inbox_send.send((None, _STORE_OK))

    async def _settle_store(self) -> None:
        """Wait until every store change so far is committed (or failed)."""
        if self.dispatcher.has_store_work():
            self._settled = trio.Event()
            # A pass of the dispatcher loop sets it once nothing is left to commit.
            await self._inbox_send.send((None, _NUDGE))
            await self._settled.wait()

    async def _drain(self) -> None:
        log.info("shutting down: no new connections, no new assignments")
        await self._inbox_send.send((None, _DRAIN))
        with trio.move_on_after(self.config.shutdown_timeout) as scope:
            await self._drained.wait()
        if scope.cancelled_caught:
            log.warning(
                "shutdown: %d jobs still running after %.0f s; they are requeued",
                self.dispatcher.running_jobs,
                self.config.shutdown_timeout,
            )


async def serve_gearman(
    port: int = 4730,
    hosts: Sequence[str] = ("127.0.0.1",),
    *,
    config: ServerConfig | None = None,
    store: Store | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a Gearman server on ``port`` at ``hosts`` until cancelled (trio style)::

    server = await nursery.start(serve_gearman, 0)
    """
    await Server(config, store).serve_tcp(port, hosts, task_status=task_status)
