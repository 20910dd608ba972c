"""The dispatcher task: the one task that runs the dispatcher.

Each pass takes the messages waiting in the inbox (:mod:`trigear.server.messages`): it
waits for the first, until the dispatcher's next deadline at most (CAN_DO_TIMEOUT and
epoch timers, then ticked), and takes up to ``_PASS_LIMIT`` more without waiting.  It sets
the clock, hands each message to the :class:`~trigear.server.dispatcher.Dispatcher`, then
flushes every peer's output (:mod:`trigear.server.delivery`: it never awaits a peer) and,
with a durable store, hands the pass's batch to the store writer
(:mod:`trigear.server.store_writer`).  It tells :class:`~trigear.server.serve.Server` when
the dispatcher asks for a shutdown, when draining is over (:attr:`DispatcherTask.drained`)
and when every store change so far is committed (:meth:`DispatcherTask.settle_store`).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, assert_type

import trio

from .messages import (
    Adopted,
    BadInput,
    Closed,
    Drain,
    Events,
    Fenced,
    InboxMessage,
    NewAcl,
    Nudge,
    Opened,
    StoreDone,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .commits import StoreBatch
    from .connection import Connection
    from .delivery import Delivery
    from .dispatcher import Dispatcher

__all__ = ["DispatcherTask"]

log = logging.getLogger("trigear.server")

_PASS_LIMIT = 512


class DispatcherTask:
    """The dispatcher task of one server: :meth:`run` it in a task of its own.

    ``shutdown(graceful)`` is called when the dispatcher asks for a shutdown (the admin
    ``shutdown`` command); ``conns`` are the open connections by peer id, shared with the
    server, for closing one whose packet hit an internal error.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        inbox: trio.MemoryReceiveChannel[InboxMessage],
        inbox_send: trio.MemorySendChannel[InboxMessage],
        store_send: trio.MemorySendChannel[StoreBatch] | None,
        conns: dict[int, Connection],
        delivery: Delivery,
        shutdown: Callable[[bool], None],
    ) -> None:
        self.dispatcher = dispatcher
        self._inbox = inbox
        self._inbox_send = inbox_send
        #: Where the batches for the store writer go; None: the store is not durable.
        self._store_send = store_send
        self._conns = conns
        self._delivery = delivery
        self._shutdown = shutdown
        #: The wall clock when Trio's clock read 0 (set by the server as it starts).
        self.wall0 = 0.0
        #: Set when a drain is over: no job running any more, or a shutdown stops at once.
        self.drained = trio.Event()
        self._settled = trio.Event()

    def set_clock(self) -> None:
        now = trio.current_time()
        d = self.dispatcher
        d.now = d.scheduler.now = now
        d.wall = self.wall0 + now
        # A cluster member hands out jobs only while its lease runs (server/cluster.py).
        paused = now >= d.lease_until
        if paused is not d.scheduler.paused:
            d.scheduler.set_paused(paused)

    def _deadline(self) -> float:
        t, e = self.dispatcher.next_deadline()
        deadline = math.inf
        if t is not None:
            deadline = t
        if e is not None:
            deadline = min(deadline, e - self.wall0)
        return deadline

    def _process(self, message: InboxMessage) -> None:
        d = self.dispatcher
        if isinstance(message, Events):
            peer, events = message
            handle = d.handle
            try:
                for event in events:
                    if peer.gone or peer.cut:
                        break
                    handle(peer, event)
            except Exception:
                # A bug must not take the whole server down with it: log it, drop the
                # connection whose packet hit it, and keep serving everyone else.
                log.exception("internal error on a packet from %r; closing it", peer)
                d.stats.internal_errors += 1
                conn = self._conns.get(peer.id)
                if conn is not None:
                    conn.cancel()
        elif isinstance(message, BadInput):
            if not message.peer.gone:
                d.protocol_error(message.peer, message.error)
        elif isinstance(message, Opened):
            d.connect(message.peer)
        elif isinstance(message, Closed):
            d.disconnect(message.peer)
        elif isinstance(message, StoreDone):
            d.store_done(message.ok, message.joined)
        elif isinstance(message, Drain):
            d.start_draining()
        elif isinstance(message, Adopted):
            taken = d.adopt(message.jobs)
            log.info("took in %d adopted jobs", taken)
        elif isinstance(message, Fenced):
            dropped = d.fenced()
            log.warning("fenced: dropped %d stored jobs", dropped)
        elif isinstance(message, NewAcl):
            d.set_acl(message.acl)
        else:
            # A Nudge: the pass that follows is all it asks for.
            assert_type(message, Nudge)

    async def run(self) -> None:
        d = self.dispatcher
        inbox = self._inbox
        process = self._process
        store_send = self._store_send
        flush = self._delivery.flush
        while True:
            deadline = self._deadline()
            if deadline == math.inf:
                message = await inbox.receive()
                self.set_clock()
                process(message)
            else:
                with trio.move_on_at(deadline):
                    message = await inbox.receive()
                    self.set_clock()
                    process(message)
                self.set_clock()
                d.tick()
            for _ in range(_PASS_LIMIT):
                try:
                    message = inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                process(message)
            flush()
            if store_send is not None:
                batch = d.take_store_batch()
                if batch is not None:
                    store_send.send_nowait(batch)
                if not d.has_store_work():
                    self._settled.set()
            if d.shutdown_request is not None:
                self._shutdown(d.shutdown_request == "graceful")
                d.shutdown_request = None
            if d.scheduler.draining and d.running_jobs == 0:
                self.drained.set()

    async def settle_store(self) -> None:
        """Wait until every store change so far is committed (or failed)."""
        if self.dispatcher.has_store_work():
            self._settled = trio.Event()
            # A pass of the dispatcher loop sets it once nothing is left to commit.
            await self._inbox_send.send(Nudge())
            await self._settled.wait()
