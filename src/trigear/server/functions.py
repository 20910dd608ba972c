"""The function records: created on first use, the workers that can do each, and let go
of when nothing needs them.

A :class:`~trigear.server.state.Func` exists while a worker can do it, a job of it is
queued or running, or admin ``maxqueue`` set a limit for it; admin ``status`` lists it.
Past that it is *idle*: kept, as gearmand keeps it, but only the ``max_idle_functions``
most recently let go of, so one-off names cannot make the server keep memory for ever.

A worker's abilities (CAN_DO, CANT_DO, RESET_ABILITIES) link it to the records here.  A
worker that leaves with more than :data:`DROP_CHUNK` functions is detached at once and
its functions are let go of :data:`DROP_CHUNK` per dispatcher pass (:meth:`Functions.step`),
so one disconnect cannot stall everyone else (``docs/robustness.md``).  Until then its
functions still list it in ``workers``, ``sleepers`` and ``indexed``: nothing is handed
to it (it never asks again), the scheduler's wake-ups skip it, and readers of the counts
call :meth:`Functions.settle`.

Like the scheduler that owns it, it has no clock and no I/O.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .indexes import index_worker
from .ratelog import RateLimitedLog
from .state import Func
from .tally import Tallies

if TYPE_CHECKING:
    from .config import ServerConfig
    from .state import Peer
    from .stats import ServerStats

__all__ = ["DROP_CHUNK", "INDEX_FROM", "Functions"]

log = logging.getLogger("trigear.server")

#: A worker with more functions than this finds work through an index of the ones with
#: jobs queued (``Peer.ready``) rather than by looking at each.
INDEX_FROM = 16
#: A worker that leaves with more functions than this is detached at once and its
#: functions are let go of this many per dispatcher pass.
DROP_CHUNK = 256
#: A limit of 0 means none: this, as an int.
_NO_LIMIT = 1 << 62


class Functions:
    """The function records by name, and which workers can do each."""

    def __init__(self, config: ServerConfig, stats: ServerStats, handle_prefix: bytes) -> None:
        #: The records by name.
        self.funcs: dict[bytes, Func] = {}
        #: Each function's counters, kept by name (:mod:`.tally`).
        self.tallies = Tallies()
        self._handle_prefix = handle_prefix
        self._stats = stats
        self._max_funcs = config.max_functions_per_connection or _NO_LIMIT
        #: Unused records, oldest first (see :meth:`release`).
        self._idle: dict[Func, None] = {}
        self._max_idle = config.max_idle_functions
        self._log_limit = RateLimitedLog(log, logging.WARNING)
        #: maxqueue limits by function name, also for functions that do not exist yet.
        self._maxqueue: dict[bytes, tuple[int, int, int]] = {}
        #: Workers gone with many functions, and the functions still to let go of
        #: (:meth:`drop_abilities`); :meth:`settle` finishes it at once.
        self.dropping: dict[Peer, list[Func]] = {}
        #: Their ``abilities`` of before, emptied along.
        self._dropping_names: dict[Peer, dict[bytes, int]] = {}

    # --- records ------------------------------------------------------------------------

    def get(self, name: bytes) -> Func:
        """The record of function ``name``, created on first use."""
        f = self.funcs.get(name)
        if f is None:
            tally = self.tallies.get(name, self.funcs.keys())
            f = self.funcs[name] = Func(name, tally, handle_prefix=self._handle_prefix)
            limit = self._maxqueue.get(name)
            if limit is not None:
                f.maxqueue = limit
        return f

    def set_maxqueue(self, name: bytes, limits: tuple[int, int, int]) -> None:
        """Queue limits for ``name`` per priority, kept for when it appears (S18)."""
        self._maxqueue[name] = limits
        f = self.funcs.get(name)
        if f is not None:
            f.maxqueue = limits

    def drop(self, name: bytes) -> str | None:
        """Admin ``drop function``: forget function ``name``; None on success, else why
        not."""
        f = self.funcs.get(name)
        if f is None:
            return "function not found"
        if f.workers or f.total:
            # gearmand drops a function with queued jobs and leaves them orphaned; trigear
            # refuses, so no job is lost to an admin command.
            return "there are still connected workers or executing clients"
        del self.funcs[name]
        return None

    def _unused(self, func: Func) -> bool:
        """Nothing needs ``func``'s record: no workers, no jobs, no ``maxqueue``."""
        return (
            not func.workers
            and not func.running
            and not (func.counts[0] or func.counts[1] or func.counts[2])
            and func.name not in self._maxqueue
            and self.funcs.get(func.name) is func
        )

    def release(self, func: Func) -> None:
        """``func`` may have become unused: keep it among the idle records, and free the
        oldest idle ones beyond ``max_idle_functions``."""
        if not self._unused(func):
            return
        idle = self._idle
        idle.pop(func, None)
        idle[func] = None
        while len(idle) > self._max_idle:
            old = next(iter(idle))
            del idle[old]
            # Used again since it was let go: it stays (and comes back here when it is
            # let go again).
            if self._unused(old):
                del self.funcs[old.name]

    # --- abilities ----------------------------------------------------------------------

    def add_ability(self, peer: Peer, name: bytes, timeout: int) -> Func | None:
        """``peer`` can do ``name``, each run for at most ``timeout`` ms (0: no limit).
        Returns the record when the ability is new, None when it only changed the
        timeout or was refused (``max_functions_per_connection``)."""
        new = name not in peer.abilities
        if new and len(peer.abilities) >= self._max_funcs:
            # CAN_DO has no answer (an unasked-for ERROR would be read as the answer to
            # the worker's next request): the function is not registered.
            self._stats.limit_refusals += 1
            self._log_limit(
                "%r may register at most %d functions: CAN_DO ignored", peer, self._max_funcs
            )
            return None
        peer.abilities[name] = timeout
        if not new:
            return None
        func = self.get(name)
        func.workers[peer] = None
        peer.funcs[func] = None
        peer.order = None
        if peer.ready is not None:
            index_worker(peer, func)
        elif len(peer.funcs) > INDEX_FROM:
            peer.ready = ({}, {}, {})
            for f in peer.funcs:
                index_worker(peer, f)
        return func

    def drop_abilities(self, peer: Peer, only: bytes | None = None) -> None:
        """``peer`` no longer does ``only`` (default: anything): the work is one
        lookup for one function, and one step per function for all of them, or, for a
        worker that is gone with more than :data:`DROP_CHUNK`, a detachment now and the
        rest in :meth:`step` (see the module docstring)."""
        if only is None and peer.gone and len(peer.funcs) > DROP_CHUNK:
            # Last first, so each chunk comes off the end; the list alone holds the
            # records, so those freed go a chunk at a time, not all with the last.
            funcs = list(peer.funcs)
            funcs.reverse()
            self.dropping[peer] = funcs
            peer.funcs = {}
            # Its names go with its functions, a chunk at a time, too.
            self._dropping_names[peer] = peer.abilities
            peer.abilities = {}
            peer.order = None
            peer.sleeping = False
            # ``peer.ready`` stays until the last chunk: :func:`mark_ready` may still
            # write to it through ``func.indexed``.
            return
        if only is None:
            funcs = list(peer.funcs)
            peer.funcs.clear()
            peer.abilities.clear()
            peer.ready = None
        else:
            func = self.funcs.get(only)
            if func is None or peer.funcs.pop(func, 0) is not None:
                peer.abilities.pop(only, None)
                return
            funcs = [func]
            peer.abilities.pop(only, None)
            if peer.ready is not None:
                for r in peer.ready:
                    r.pop(func, None)
        peer.order = None
        self._let_go(peer, funcs)

    def _let_go(self, peer: Peer, funcs: list[Func]) -> None:
        for func in funcs:
            del func.workers[peer]
            func.sleepers.pop(peer, None)
            if func.indexed is not None and peer in func.indexed:
                func.indexed.remove(peer)
            if not func.workers:
                self.release(func)

    # --- departed workers with many functions -------------------------------------------

    def step(self, budget: int = DROP_CHUNK) -> None:
        """Let go of up to ``budget`` functions of departed workers, oldest first."""
        dropping = self.dropping
        while dropping and budget > 0:
            peer = next(iter(dropping))
            # In the order it registered them, as the immediate path does: which unused
            # records outlive ``max_idle_functions`` does not change.
            funcs = dropping[peer]
            chunk = funcs[-budget:]
            del funcs[-budget:]
            chunk.reverse()
            budget -= len(chunk)
            names = self._dropping_names[peer]
            for f in chunk:
                names.pop(f.name, None)
            self._let_go(peer, chunk)
            if not funcs:
                del dropping[peer]
                del self._dropping_names[peer]
                peer.ready = None

    def settle(self) -> None:
        """Finish letting go of departed workers' functions at once: before an answer
        that counts workers (admin, metrics, the status page) must be exact."""
        while self.dropping:
            self.step(1 << 62)
