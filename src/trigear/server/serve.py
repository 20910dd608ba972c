"""The server: listeners, starting the dispatcher task and the others, and shutdown.

Flow (``docs/server.md`` draws it):

* Each connection runs a reader and a writer in a nursery of its own
  (:mod:`trigear.server.connection`).  The reader hands every event one read produced to
  the dispatcher task in one message on the bounded inbox (:mod:`trigear.server.messages`).
* The **dispatcher task** owns all state (:class:`~trigear.server.dispatcher.Dispatcher`).
  It takes every message waiting in the inbox, acts on them, and then hands each peer's
  output to its connection with :meth:`~trigear.server.connection.Connection.write_nowait`:
  it never awaits a peer (:mod:`trigear.server.delivery`, which also enforces the output
  limits).  Its loop is :class:`~trigear.server.dispatcher_task.DispatcherTask`.
* With a durable store, a **store writer** task commits what the dispatcher batched
  (group commit) and reports back through the inbox; the dispatcher goes on meanwhile
  (:mod:`trigear.server.store_writer`).
* The **accept loops** start a connection per accepted stream.  When the process runs
  out of descriptors or memory (EMFILE, ENFILE, ENOMEM, ENOBUFS) a loop pauses and tries
  again, as :func:`trio.serve_listeners` does; any other accept error ends :meth:`Server.serve`
  with that error.
"""

from __future__ import annotations

import errno
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import trio

from .._keepalive import set_keepalive
from ..store.cluster import ClusterStore
from ..store.memory import MemoryStore
from .admission import Admission
from .cluster import ClusterLink
from .commits import StoreBatch
from .config import ServerConfig
from .connection import Connection
from .delivery import Delivery
from .dispatcher import Dispatcher
from .dispatcher_task import DispatcherTask
from .messages import Closed, Drain, InboxMessage, NewAcl, Opened
from .ratelog import RateLimitedLog
from .state import Peer
from .store_writer import run_store_writer
from .tls import HandshakeFailed, TLSListener, start_tls

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

    from ..store.base import Store
    from .acl import Acl
    from .stats import ServerStatistics

__all__ = ["Server", "serve_gearman"]

log = logging.getLogger("trigear.server")

_INBOX_SIZE = 256
#: accept() errors that mean "out of resources for now": wait and try again (the set
#: trio.serve_listeners retries on, with its pause).
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_PAUSE = 0.1


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

    def __init__(
        self,
        config: ServerConfig | None = None,
        store: Store | None = None,
        *,
        acl: Acl | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.store: Store = store or MemoryStore()
        self.dispatcher = Dispatcher(
            self.config, durable=self.store.durable, first_handle=_first_handle()
        )
        self.dispatcher.set_acl(acl)
        self._inbox_send, inbox = trio.open_memory_channel[InboxMessage](_INBOX_SIZE)
        self._store_send, self._store_recv = trio.open_memory_channel[StoreBatch](math.inf)
        #: The cluster task, for a store shared with other servers (a named member).
        self.cluster: ClusterLink | None = None
        if isinstance(self.store, ClusterStore) and self.store.member is not None:
            self.cluster = ClusterLink(self.store, self.dispatcher, self._inbox_send)
        self._conns: dict[int, Connection] = {}
        self._next_id = 0
        self._conn_nursery: trio.Nursery | None = None
        self._shutdown = trio.Event()
        self._stop_now = False
        #: An accept error that ended serving, raised from serve().
        self._accept_error: OSError | None = None
        #: The sockets listened on, TLS or not (their addresses: ``.socket.getsockname()``).
        self.listeners: list[trio.SocketListener] = []
        #: The TLS context of each listener that has one.
        self.tls: dict[trio.SocketListener, ssl.SSLContext] = {}
        #: Where the HTTP side listens (``ServerConfig.http``), once serving.
        self.http_urls: list[str] = []
        #: Log lines a peer or a lack of resources can repeat without end, rate-limited.
        self._log_accept = RateLimitedLog(log, logging.WARNING)
        self._delivery = Delivery(self._conns, self.dispatcher, self.config)
        self._admission = Admission(self.config, self.dispatcher.stats)
        self._task = DispatcherTask(
            self.dispatcher,
            inbox,
            self._inbox_send,
            self._store_send if self.store.durable else None,
            self._conns,
            self._delivery,
            lambda graceful: self.shutdown(graceful=graceful),
        )

    # --- public ------------------------------------------------------------------------

    def statistics(self) -> ServerStatistics:
        """Counters since start (jobs submitted, completed, requeued, ...), as they are
        now: the snapshot does not change afterwards."""
        return self.dispatcher.stats.snapshot()

    async def serve_tcp(
        self,
        port: int = 4730,
        hosts: Sequence[str] = ("127.0.0.1",),
        *,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``port`` at each of ``hosts`` and serve until cancelled or shut down.

        ``port=0`` picks a free port; see :attr:`listeners` for the bound addresses.
        With ``ssl_context`` (:func:`trigear.server.tls.server_ssl_context`) every
        connection must speak TLS.
        """
        listeners: list[trio.SocketListener | TLSListener] = []
        for host in hosts:
            for listener in await trio.open_tcp_listeners(port, host=host):
                if ssl_context is None:
                    listeners.append(listener)
                else:
                    listeners.append(TLSListener(listener, ssl_context))
        await self.serve(listeners, task_status=task_status)

    async def serve(
        self,
        listeners: Sequence[trio.SocketListener | TLSListener] = (),
        *,
        task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve connections from ``listeners`` (and :meth:`connect_in_memory`) until
        cancelled, or until a shutdown (signal or admin ``shutdown``) completes.  A
        :class:`~trigear.server.tls.TLSListener` serves TLS only.

        Raises the :exc:`OSError` of a listener whose ``accept`` failed other than for
        lack of resources, after stopping as :meth:`shutdown` ``(graceful=False)`` does.
        """
        self.listeners = []
        for item in listeners:
            if isinstance(item, TLSListener):
                self.tls[item.listener] = item.context
                item = item.listener
            self.listeners.append(item)
        if self.cluster is not None:
            member = self.cluster.store.member
            assert member is not None
            if not member.address and self.listeners:
                member.address = _address(self.listeners[0])
            if member.address.startswith(("0.0.0.0:", "[::]:")):
                log.warning(
                    "registered as %s in the shared store: give --advertise the address"
                    " clients list, or a dead server's jobs are shared out unlike clients"
                    " place them",
                    member.address,
                )
        started = trio.current_time()
        loaded = await self.store.load()
        if self.cluster is not None:
            self.cluster.renew(started)
        self._task.wall0 = time.time() - trio.current_time()
        self._task.set_clock()
        self.dispatcher.replay(loaded)
        if loaded.jobs:
            log.info("replayed %d stored jobs", len(loaded.jobs))
        try:
            async with trio.open_nursery() as core:
                core.start_soon(self._task.run)
                if self.store.durable:
                    core.start_soon(
                        run_store_writer,
                        self.store,
                        self._store_recv,
                        self._inbox_send,
                        self.cluster,
                        self.dispatcher.tallies.commits,
                    )
                if self.cluster is not None:
                    core.start_soon(self.cluster.run)
                async with trio.open_nursery() as conns:
                    self._conn_nursery = conns
                    if self.config.http is not None:
                        from .http import serve_http

                        self.http_urls = await conns.start(serve_http, self)
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
                    await self._task.settle_store()
                core.cancel_scope.cancel()
        finally:
            for listener in self.listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()
            with trio.CancelScope(shield=True):
                await self.store.aclose()
        if self._accept_error is not None:
            raise self._accept_error

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
            self._task.drained.set()
        self._shutdown.set()

    async def set_acl(self, acl: Acl | None) -> None:
        """Apply a new access control list (None: none) to every connection, the open
        ones included (a reload): abilities it no longer grants are dropped."""
        if self._conn_nursery is None:
            self.dispatcher.set_acl(acl)
        else:
            await self._inbox_send.send(NewAcl(acl))

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
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    log.error("accept failed, serving stops: %s", exc)
                    if self._accept_error is None:
                        self._accept_error = exc
                    self.shutdown(graceful=False)
                    return
                # Out of descriptors or memory: existing connections go on; accept again
                # after a pause, when some may have closed.
                self.dispatcher.stats.accept_failures += 1
                self._log_accept("accept failed: %s; retrying every %.1f s", exc, _ACCEPT_PAUSE)
                await trio.sleep(_ACCEPT_PAUSE)
                continue
            self._conn_nursery.start_soon(self.handle_stream, stream, None, self.tls.get(listener))

    async def handle_stream(
        self,
        stream: trio.abc.Stream,
        ip: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Serve one connection until it closes; with ``ssl_context`` (a TCP stream
        only), after a TLS handshake within ``ServerConfig.handshake_timeout``."""
        fd = -1
        if isinstance(stream, trio.SocketStream):
            try:
                fd = stream.socket.fileno()
                if ip is None:
                    ip = str(stream.socket.getpeername()[0])
                stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, True)
                set_keepalive(stream.socket, self.config.keepalive)
            except OSError:
                fd = -1
        ip = ip or "-"
        if not self._admission.admit(ip):
            await trio.aclose_forcefully(stream)
            return
        try:
            await self._serve_stream(stream, fd, ip, ssl_context)
        finally:
            self._admission.leave(ip)

    async def _serve_stream(
        self,
        stream: trio.abc.Stream,
        fd: int,
        ip: str,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._next_id += 1
        names: tuple[str, ...] = ()
        if ssl_context is not None and isinstance(stream, trio.SocketStream):
            tls = await self._handshake(stream, ssl_context, ip)
            if tls is None:
                return
            stream, names = tls
        loopback = ip.startswith("127.") or ip in ("::1", "-") or ip.startswith("::ffff:127.")
        peer = Peer(self._next_id, fd if fd >= 0 else self._next_id, ip, loopback, names)
        # A TLS connection reads and writes through its stream, never the descriptor.
        direct_fd = fd if isinstance(stream, trio.SocketStream) else -1
        conn = Connection(
            peer, stream, direct_fd, self._inbox_send, self.config, self.dispatcher.output
        )
        self._conns[peer.id] = conn
        try:
            await self._inbox_send.send(Opened(peer))
            await conn.serve()
        finally:
            self._conns.pop(peer.id, None)
            with trio.CancelScope(shield=True):
                await self._inbox_send.send(Closed(peer))
                await trio.aclose_forcefully(stream)

    async def _handshake(
        self, stream: trio.SocketStream, context: ssl.SSLContext, ip: str
    ) -> tuple[trio.SSLStream[trio.SocketStream], tuple[str, ...]] | None:
        """The TLS handshake of one connection, in its own task; None (and the stream
        closed) if it failed or took longer than the handshake timeout."""
        timeout = self.config.handshake_timeout
        why = f"no TLS handshake within {timeout:g} s"
        try:
            with trio.move_on_after(timeout):
                try:
                    return await start_tls(stream, context)
                except HandshakeFailed as exc:
                    why = str(exc)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        log.info("closing a connection from %s: %s", ip, why)
        self.dispatcher.stats.tls_failures += 1
        await trio.aclose_forcefully(stream)
        return None

    # --- shutdown ------------------------------------------------------------------------

    async def _drain(self) -> None:
        log.info("shutting down: no new connections, no new assignments")
        await self._inbox_send.send(Drain())
        with trio.move_on_after(self.config.shutdown_timeout) as scope:
            await self._task.drained.wait()
        if scope.cancelled_caught:
            log.warning(
                "shutdown: %d jobs still running after %.0f s; they are requeued",
                self.dispatcher.running_jobs,
                self.config.shutdown_timeout,
            )


def _address(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_gearman(
    port: int = 4730,
    hosts: Sequence[str] = ("127.0.0.1",),
    *,
    config: ServerConfig | None = None,
    store: Store | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a Gearman server on ``port`` at ``hosts`` until cancelled (Trio style)::

        server = await nursery.start(serve_gearman, 0)

    ``port=0`` picks a free port: ``server.listeners`` holds the bound addresses.  The
    server stops when the nursery is cancelled or a shutdown (signal handler of the
    program, admin ``shutdown``) completes; see :class:`Server` for both.
    """
    await Server(config, store).serve_tcp(port, hosts, task_status=task_status)
