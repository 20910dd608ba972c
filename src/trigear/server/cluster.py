"""A server's life as a member of a store's cluster: heartbeats, leases, adoption, fencing.

Several servers share one PostgreSQL store when each has a name (``--name``); the rules
of the store's side are in :mod:`trigear.store.cluster`.  This is the server's side, one
task (:class:`ClusterLink`) beside the dispatcher and the store writer:

* About four times a second it calls the store's ``tick``: a heartbeat that also checks
  this server's epoch, looks for dead members, adopts their rows and returns the rows
  adopted for this server.  Those go to the dispatcher as an :class:`Adopted` message,
  which queues them like stored jobs at start (their handles and order kept).
* **Lease.**  Each transaction that found the epoch intact (a tick, or a commit of the
  store writer) renews the lease: jobs are handed to workers only until
  ``start of that transaction + LEASE``.  An expired lease pauses the scheduler (workers
  get NO_JOB; sleepers are woken when it is renewed).  LEASE is below the grace a
  survivor waits before adopting, so a server cut off from the database, or frozen,
  stops handing out jobs before anyone else can take them.
* **Fenced** (the store raised :class:`FencedError`: another member adopted this one's
  rows, e.g. after it was frozen longer than the stale limit): the server does not
  exit.  It drops every stored job from memory (workers running one get JOB_NOT_FOUND
  for its result, background submits not yet committed get QUEUE_ERROR), joins the
  cluster again under a new epoch, and goes on serving: foreground jobs and
  connections are untouched.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio

from ..store.base import StoreError
from ..store.cluster import LEASE, TICK, FencedError
from .messages import Adopted, Fenced, Nudge

if TYPE_CHECKING:
    from ..store.cluster import ClusterStore, TickResult
    from .dispatcher import Dispatcher
    from .messages import InboxMessage

__all__ = ["ClusterLink"]

log = logging.getLogger("trigear.server")

#: Seconds between two log lines about a store that cannot be reached.
_LOG_EVERY = 10.0


class ClusterLink:
    """The task that keeps a server a live member of its store's cluster."""

    def __init__(
        self,
        store: ClusterStore,
        dispatcher: Dispatcher,
        inbox: trio.MemorySendChannel[InboxMessage],
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self._inbox = inbox
        self._logged_at = -math.inf
        #: Adoptions this server made, and jobs it took in: for logs and tests.
        self.adoptions = 0
        self.adopted_jobs = 0
        self.fenced = 0

    def renew(self, started: float) -> bool:
        """A transaction begun at ``started`` (trio clock) found the epoch intact: extend
        the lease.  True when the scheduler is paused and a dispatcher pass should run
        to resume it (send a :class:`Nudge`)."""
        d = self.dispatcher
        until = started + LEASE
        if until > d.lease_until:
            d.lease_until = until
        return d.scheduler.paused

    def lose_lease(self) -> None:
        """Stop handing out jobs at once (a commit found this server fenced)."""
        self.dispatcher.lease_until = -math.inf

    async def run(self) -> None:
        member = self.store.member
        assert member is not None
        while True:
            # A draining server hands out no job: it must not take any over.
            member.adopting = not self.dispatcher.scheduler.draining
            started = trio.current_time()
            try:
                result = await self.store.tick(self.dispatcher.scheduler.last_handle_number)
            except FencedError as exc:
                await self._rejoin(exc)
                continue
            except StoreError as exc:
                now = trio.current_time()
                if now - self._logged_at >= _LOG_EVERY:
                    self._logged_at = now
                    log.error("cluster heartbeat failed: %s", exc)
            else:
                if self.renew(started):
                    await self._inbox.send(Nudge())
                await self._take(result)
            await trio.sleep(TICK)

    async def _take(self, result: TickResult) -> None:
        for a in result.adoptions:
            self.adoptions += 1
            shares = ", ".join(f"{n} to {name}" for name, n in sorted(a.shares.items()))
            log.warning(
                "server %s is dead (%s): adopted its %d jobs (%s)",
                a.victim,
                "its lock stayed free" if a.cause == "lock" else "heartbeat stale, ended",
                sum(a.shares.values()),
                shares or "none",
            )
        if result.jobs:
            self.adopted_jobs += len(result.jobs)
            await self._inbox.send(Adopted(result.jobs))

    async def _rejoin(self, exc: FencedError) -> None:
        self.lose_lease()
        self.fenced += 1
        log.error("%s; dropping its stored jobs and joining again", exc)
        await self._inbox.send(Fenced())
        started = trio.current_time()
        try:
            loaded = await self.store.rejoin()
        except StoreError as error:
            log.error("joining the cluster again failed: %s", error)
            await trio.sleep(TICK)
            return
        if self.renew(started):
            await self._inbox.send(Nudge())
        if loaded.jobs:
            await self._inbox.send(Adopted(loaded.jobs))
