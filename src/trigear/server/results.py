"""What a worker reports about a job it runs, handled for the dispatcher.

WORK_COMPLETE, WORK_FAIL and WORK_EXCEPTION end the run: the job's waiting clients get
the packet (S6; an exception becomes WORK_FAIL for a client that did not ask for
exceptions, S7) and the job is forgotten.  WORK_STATUS, WORK_DATA and WORK_WARNING pass
through to the clients and keep the run going.  A report for a job the worker does not
hold (never had it, or lost it to a timeout or a CANT_DO) gets ERROR JOB_NOT_FOUND with
gearmand's text for that packet.

The dispatcher's handlers for these packets call :class:`Results`, from its one task;
like the dispatcher it has no clock and no I/O (the time comes in with each call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol.admin import leading_int
from ..protocol.encoder import encode_response
from ..protocol.packets import Error, WorkFail
from .tally import COMPLETED, FAILED

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..protocol.packets import (
        Event,
        WorkComplete,
        WorkData,
        WorkException,
        WorkStatus,
        WorkWarning,
    )
    from .config import ServerConfig
    from .scheduler import Scheduler
    from .state import JobRecord, Peer
    from .stats import ServerStats
    from .tally import Tallies

__all__ = ["Results"]

_NOT_FOUND = encode_response(Error(b"JOB_NOT_FOUND", b"Job given in work result not found"))
_NOT_FOUND_DATA = encode_response(Error(b"JOB_NOT_FOUND", b"Job does not exist on server"))
_NOT_FOUND_EXC = encode_response(
    Error(b"JOB_NOT_FOUND", b"An exception was received for a job that does not exist")
)


class Results:
    """The packets a worker sends about the jobs it holds."""

    def __init__(
        self,
        scheduler: Scheduler,
        send: Callable[[Peer, bytes], None],
        stats: ServerStats,
        tallies: Tallies,
        config: ServerConfig,
    ) -> None:
        self._scheduler = scheduler
        self._send = send
        self._stats = stats
        self._tallies = tallies
        self._config = config

    def _forward(self, job: JobRecord, event: Event) -> None:
        """Send a worker's packet on to the job's waiting clients (S6): once per attached
        submit, in submit order, so a connection attached twice gets it twice in a row
        (S2)."""
        if job.clients:
            pkt = encode_response(event)
            send = self._send
            for c in job.clients:
                send(c, pkt)

    def _tally_failure(self, job: JobRecord, now: float, kind: str, text: bytes = b"") -> None:
        tally = job.func.tally
        tally.counts[FAILED + job.priority] += 1
        tally.ran.observe(now - job.since)
        self._tallies.failed(now, job.func.name, job.handle, kind, text)

    def complete(self, peer: Peer, event: WorkComplete, now: float) -> None:
        job = peer.held.pop(event.handle, None)
        if job is None:
            self._send(peer, _NOT_FOUND)
            return
        self._stats.jobs_completed += 1
        tally = job.func.tally
        tally.counts[COMPLETED + job.priority] += 1
        tally.ran.observe(now - job.since)
        self._forward(job, event)
        self._scheduler.finish(job)

    def fail(self, peer: Peer, event: WorkFail, now: float) -> None:
        job = peer.held.pop(event.handle, None)
        if job is None:
            self._send(peer, _NOT_FOUND)
            return
        self._stats.jobs_failed += 1
        self._tally_failure(job, now, "fail")
        self._scheduler.fail(job)

    def exception(self, peer: Peer, event: WorkException, now: float) -> None:
        job = peer.held.pop(event.handle, None)
        if job is None:
            self._send(peer, _NOT_FOUND_EXC)
            return
        self._stats.jobs_failed += 1
        self._tally_failure(job, now, "exception", event.data)
        if job.clients:
            exc = encode_response(event)
            # S7: no stray NUL after the handle, unlike gearmand.
            fail = encode_response(WorkFail(job.handle))
            everyone = self._config.exceptions
            for c in job.clients:
                self._send(c, exc if everyone or c.exceptions else fail)
        self._scheduler.finish(job)

    def status(self, peer: Peer, event: WorkStatus) -> None:
        job = peer.held.get(event.handle)
        if job is None:
            self._send(peer, _NOT_FOUND)
            return
        job.numerator = leading_int(event.numerator, signed=False)
        job.denominator = leading_int(event.denominator, signed=False)
        self._forward(job, event)

    def data(self, peer: Peer, event: WorkData | WorkWarning) -> None:
        job = peer.held.get(event.handle)
        if job is None:
            self._send(peer, _NOT_FOUND_DATA)
            return
        self._forward(job, event)
