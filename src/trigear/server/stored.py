"""What the dispatcher does with a durable store's answers, and with stored jobs.

:class:`~trigear.server.commits.Commits` keeps the store changes and the replies held
for them; this is the other half, where the answers land:

* a committed batch runs its jobs and releases the JOB_CREATED replies held for it; a
  failed one refuses them (S19);
* a batch of a cluster member may come back with jobs the store did not keep because a
  live job of another member has their unique: their background submits get that job's
  handle (cluster-wide coalescing, S2) and the local copy ends;
* stored jobs come back at start (replay, S17), when this member takes over another's
  (adopt), and go when another member has taken over this one's (fenced).

Like the dispatcher that owns it, it has no clock and no I/O: callers pass the time in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol.encoder import encode_response
from ..protocol.packets import JobCreated, Priority
from .state import JobRecord, JobState
from .tally import COALESCED

if TYPE_CHECKING:
    from ..store.base import LoadResult, StoredJob
    from .commits import Commits
    from .output import Output
    from .scheduler import Scheduler
    from .state import PendingReply
    from .stats import ServerStats

__all__ = ["StoredJobs"]

_COMMITTING = JobState.COMMITTING


class StoredJobs:
    """The store writer's answers and the jobs that come back from the store."""

    def __init__(
        self, scheduler: Scheduler, commits: Commits, stats: ServerStats, output: Output
    ) -> None:
        self._scheduler = scheduler
        self._commits = commits
        self._stats = stats
        self._output = output

    def done(self, ok: bool, wall: float, joined: dict[bytes, bytes] | None = None) -> None:
        """The in-flight batch was committed (``ok``) or failed and applied not at all:
        run its jobs or refuse them, and send the replies that waited for it.

        ``joined``: jobs of the batch the store did not keep, {handle: the handle of the
        other member's live job with their unique}."""
        replies = self._commits.done(ok)
        if replies is None:
            return
        if joined:
            self._joined(replies, joined)
        if ok:
            self._stats.store_commits += 1
        else:
            self._stats.store_failures += 1
        self._settle(replies, ok, wall)

    def _joined(self, replies: list[PendingReply], joined: dict[bytes, bytes]) -> None:
        for reply in replies:
            other = joined.get(reply.job.handle)
            if other is not None:
                self._stats.jobs_coalesced += 1
                reply.job.func.tally.counts[COALESCED + reply.job.priority] += 1
                reply.reply = encode_response(JobCreated(other))
        for handle in joined:
            job = self._scheduler.jobs.get(handle)
            if job is not None:
                job.stored = False
                if job.state is _COMMITTING:
                    # A foreground client that joined it gets WORK_FAIL.
                    self._scheduler.fail(job)

    def _settle(self, replies: list[PendingReply], ok: bool, wall: float) -> None:
        sched = self._scheduler
        for reply in replies:
            job = reply.job
            if job.state is _COMMITTING:
                if ok:
                    sched.enqueue_new(job, wall)
                else:
                    sched.fail(job)
            self._output.release(reply.peer)

    def replay(self, loaded: LoadResult, wall: float) -> None:
        """Recreate stored jobs at start, in their original order, under their own
        handles; new handles continue after the store's high-water mark (S17, S19)."""
        self._scheduler.handles_from(loaded.last_handle_number + 1)
        for sj in loaded.jobs:
            self._restore(sj, wall)

    def adopt(self, jobs: list[StoredJob], wall: float) -> int:
        """Take in stored jobs this server now owns, in their order, under their own
        handles (another server's handles: they cannot collide with ours).  A job
        already here is skipped.  Returns how many were new."""
        taken = 0
        for sj in jobs:
            if sj.handle not in self._scheduler.jobs:
                self._restore(sj, wall)
                taken += 1
        return taken

    def _restore(self, sj: StoredJob, wall: float) -> None:
        sched = self._scheduler
        func = sched.functions.get(sj.function)
        index_key = sched.jobs.key(sj.handle)
        job = JobRecord(index_key, func, sj.unique, sj.data, Priority(sj.priority), True)
        job.when = sj.when
        job.reducer = sj.reducer
        job.attempts = sj.attempts
        job.stored = True
        job.state = _COMMITTING  # so enqueue_new counts it once
        func.counts[job.priority] += 1
        key = job.data if job.unique == b"-" else job.unique
        # A live job of its function with the same key keeps the key (S2).
        sched.track(job, key if key and sched.uniques.get(key, func) is None else b"")
        sched.enqueue_new(job, wall)

    def fenced(self, wall: float) -> int:
        """Another server owns this one's stored jobs now: forget them, without touching
        the store, and refuse the background submits not yet committed.  Foreground
        clients attached to a dropped job get WORK_FAIL; a worker running one gets
        JOB_NOT_FOUND for its result.  Returns how many jobs were dropped."""
        self._settle(self._commits.discard(), False, wall)
        sched = self._scheduler
        dropped = [j for j in sched.jobs.records() if j.stored and j.state is not _COMMITTING]
        for job in dropped:
            job.stored = False
            sched.fail(job)
        return len(dropped)
