"""Which jobs are taken, which runs next on which worker, and what happens when a run ends.

The scheduler holds the jobs by handle and the functions with their three priority
queues, their workers and their sleepers, and the two timers: CAN_DO_TIMEOUT deadlines
of running jobs (S11) and the times of epoch jobs (S15).  Its rules:

* A submit with the unique of a live job joins it and gets its handle (S2); otherwise a
  full queue refuses it (S18), and so does a draining server, unless it is a background
  job for a durable store (S21).  A foreground submit attaches its connection to the
  job once per submit, not once per connection, as gearmand does: ``JobRecord.clients``
  may hold one connection several times, and everything sent to "the clients" goes to
  each entry, so each submit gets its own copy.  A durable background job runs, and is acknowledged,
  only once the store has it (S19, see :mod:`trigear.server.commits`).
* A worker gets HIGH before NORMAL before LOW across all its functions, FIFO within a
  level, and its functions take turns at a level (S3).
* A new runnable job wakes the sleeping workers that can do it, one NOOP per sleep, at
  most ``worker_wakeup`` of them (S5).
* A lost run -- the worker left, gave the function up, or outlived its timeout -- puts
  the job back at the head of its queue under the same handle and counts an attempt
  (S9, S11), unless the retries are spent (S10: the clients get WORK_FAIL) or nobody
  wants the result any more (S12).

Like the dispatcher that owns it, it has no clock and no I/O: callers pass the time in,
output goes to :class:`~trigear.server.output.Output`, store changes to
:class:`~trigear.server.commits.Commits`.  The function records and the workers'
abilities are its :class:`~trigear.server.functions.Functions`.
"""

from __future__ import annotations

import heapq
import logging
import math
from typing import TYPE_CHECKING

from ..protocol.encoder import encode_response
from ..protocol.packets import Error, JobCreated, Noop, Priority, WorkFail
from .functions import Functions
from .indexes import UniqueIndex, has_indexed, mark_ready, next_indexed
from .jobindex import JobIndex
from .ratelog import RateLimitedLog
from .state import JobRecord, JobState
from .tally import COALESCED, FAILED, REQUEUED, TIMED_OUT

if TYPE_CHECKING:
    from .commits import Commits
    from .config import ServerConfig
    from .output import Output
    from .state import Func, Peer
    from .stats import ServerStats

__all__ = ["Scheduler"]

log = logging.getLogger("trigear.server")

_NOOP = encode_response(Noop())
_QUEUE_FULL = encode_response(Error(b"QUEUE_ERROR", b"Job queue is full"))
_DRAINING = encode_response(Error(b"QUEUE_ERROR", b"Server is shutting down"))
_SERVER_FULL = encode_response(Error(b"QUEUE_ERROR", b"Server job queue is full"))
#: Priorities in the order a worker gets them (S3).
_PRIORITIES = tuple(sorted(Priority))
# The job states, looked up once: on CPython 3.11 each ``JobState.QUEUED`` in a function
# goes through the enum metaclass's attribute hook, about 0.1 us, several times per job.
_COMMITTING = JobState.COMMITTING
_SCHEDULED = JobState.SCHEDULED
_QUEUED = JobState.QUEUED
_RUNNING = JobState.RUNNING
_DONE = JobState.DONE
#: A limit of 0 means none: this, as an int (compared on every submit).
_NO_LIMIT = 1 << 62


class Scheduler:
    """Jobs, functions, queues and runs.  See the module docstring for the rules."""

    def __init__(
        self,
        config: ServerConfig,
        stats: ServerStats,
        output: Output,
        commits: Commits,
        *,
        durable: bool = False,
        first_handle: int = 1,
    ) -> None:
        self._handle_prefix = b"H:" + config.job_handle_prefix.encode() + b":"
        self.jobs = JobIndex(self._handle_prefix)
        #: The function records and which workers can do each (:mod:`.functions`).
        self.functions = functions = Functions(config, stats, self._handle_prefix)
        self.funcs = functions.funcs
        #: Each function's counters, kept by name (:mod:`.tally`).
        self.tallies = functions.tallies
        #: Monotonic seconds, set by the server before each pass: only the metrics'
        #: times (:mod:`.tally`) read it.
        self.now = 0.0
        #: While draining (S21) no job is handed out, and only durable background
        #: submits are taken.
        self.draining = False
        #: While paused (a cluster member whose lease ran out) no job is handed out.
        self.paused = False
        self._next_handle = first_handle
        self._stats = stats
        self._send = output.send
        self._commits = commits
        #: Background jobs go to a store that outlasts the process (S19).
        self._durable = durable
        self._retries = config.job_retries
        self._max_jobs = config.max_jobs or _NO_LIMIT
        self._max_job_bytes = config.max_job_bytes or _NO_LIMIT
        #: Bytes of data of the live jobs (``max_job_bytes``).
        self.job_bytes = 0
        self._log_limit = RateLimitedLog(log, logging.WARNING)
        self._wakeup = config.worker_wakeup
        #: (deadline, seq, job, run id) of runs with a CAN_DO_TIMEOUT.
        self._timeouts: list[tuple[float, int, JobRecord, int]] = []
        #: (unix time, seq, job) of scheduled epoch jobs.
        self._epochs: list[tuple[int, int, JobRecord]] = []
        self._seq = 0
        #: Live jobs by coalescing key: a submit's coalescing (S2) and
        #: GET_STATUS_UNIQUE (which names no function) look here.
        self.uniques = UniqueIndex()
        #: The live jobs whose coalescing key is ``unique``, in any function, oldest
        #: first: one dictionary lookup.
        self.with_unique = self.uniques.find

    # --- handles ----------------------------------------------------------------------

    @property
    def last_handle_number(self) -> int:
        return self._next_handle - 1

    def handles_from(self, number: int) -> None:
        """New handles start at ``number`` or later (a store's high-water mark, S17)."""
        self._next_handle = max(self._next_handle, number)

    def _new_handle(self) -> int:
        """The number of the next handle (the job index's key for it)."""
        n = self._next_handle
        self._next_handle = n + 1
        return n

    # --- abilities ----------------------------------------------------------------------

    def add_ability(self, peer: Peer, name: bytes, timeout: int) -> None:
        """``peer`` can do ``name``, each run for at most ``timeout`` ms (0: no limit)."""
        func = self.functions.add_ability(peer, name, timeout)
        if func is not None and peer.sleeping:
            if self.has_job(peer):
                # It sleeps next to work it can now do: wake it (S5).
                self.wake_peer(peer)
            else:
                func.sleepers[peer] = None

    # --- submitting -------------------------------------------------------------------

    def submit(
        self,
        peer: Peer,
        function: bytes,
        unique: bytes,
        data: bytes,
        prio: Priority,
        bg: bool,
        wall: float,
        *,
        when: int | None = None,
        reducer: bytes | None = None,
    ) -> None:
        """A SUBMIT_JOB of any kind from ``peer`` at unix time ``wall``: join the live job
        with the same unique (S2), refuse it (S18, S21), or queue a new job."""
        func = self.functions.get(function)
        key = data if unique == b"-" else unique
        if key:
            job = self.uniques.get(key, func)
            if job is not None:
                func.tally.counts[COALESCED + prio] += 1
                self._join(peer, job, bg)
                return
        if self.draining and not (bg and self._durable):
            self._send(peer, _DRAINING)
            self.functions.release(func)
            return
        limit = func.maxqueue[prio]
        if limit and func.total >= limit:
            self._send(peer, _QUEUE_FULL)
            return
        if len(self.jobs) >= self._max_jobs or self.job_bytes + len(data) > self._max_job_bytes:
            self._stats.limit_refusals += 1
            self._send(peer, _SERVER_FULL)
            self._log_limit(
                "job queue full (%d jobs, %d bytes): submits refused",
                len(self.jobs),
                self.job_bytes,
            )
            self.functions.release(func)
            return
        job = JobRecord(self._new_handle(), func, unique, data, prio, bg)
        self._stats.jobs_submitted += 1
        func.tally.counts[prio] += 1
        job.reducer = reducer
        job.when = when
        self.track(job, key)
        if not bg:
            job.clients = [peer]
            peer.jobs.add(job)
        if bg and self._durable:
            # S19: runnable, and acknowledged, once the store has it.
            job.state = _COMMITTING
            func.counts[prio] += 1
            self._commits.hold_until_stored(peer, job)
            return
        self._send(peer, encode_response(JobCreated(job.handle)))
        self.enqueue_new(job, wall)

    def track(self, job: JobRecord, key: bytes) -> None:
        """A new job is live: by handle, in the byte count, and by coalescing ``key``
        (b"": none), which no live job of its function has (the caller looked)."""
        self.jobs.add(job)
        self.job_bytes += len(job.data)
        if key:
            self.uniques.add(key, job)

    def _join(self, peer: Peer, job: JobRecord, bg: bool) -> None:
        """A submit that matches a live job by unique gets its handle (S2).

        A foreground one attaches once per submit, also when its connection is attached
        already: that connection then gets every later WORK_* packet once per submit,
        as from gearmand, so each of its tasks ends exactly once."""
        self._stats.jobs_coalesced += 1
        if bg:
            job.background = True
            # S19: no background JOB_CREATED before the job is on disk, also when it
            # joins a job whose write is pending, in flight, or failed earlier.
            if self._durable and self._commits.hold_until_stored(peer, job):
                return
        else:
            clients = job.clients
            if clients:
                clients.append(peer)
            else:
                job.clients = [peer]
            peer.jobs.add(job)
        self._send(peer, encode_response(JobCreated(job.handle)))

    def set_paused(self, paused: bool) -> None:
        """Stop or resume handing out jobs; resuming wakes the sleepers with work (S5)."""
        self.paused = paused
        if not paused:
            for func in self.funcs.values():
                if func.sleepers and any(func.queues):
                    self.wake(func)

    # --- queueing ---------------------------------------------------------------------

    def enqueue_new(self, job: JobRecord, wall: float) -> None:
        """A new job becomes runnable now or is scheduled for its time (S15)."""
        func = job.func
        job.since = self.now
        if job.state is not _COMMITTING:
            func.counts[job.priority] += 1
        if job.when is not None and job.when > wall:
            job.state = _SCHEDULED
            self._seq += 1
            heapq.heappush(self._epochs, (job.when, self._seq, job))
            return
        job.state = _QUEUED
        prio = job.priority
        q = func.queues[prio]
        if not q:
            q = func.queue(prio)
            if func.indexed:
                mark_ready(func, prio)
        q.append(job)
        if func.sleepers:
            self.wake(func)

    def wake(self, func: Func) -> None:
        """Wake sleeping workers that can do ``func``: one NOOP per sleep (S5)."""
        n = self._wakeup
        sleepers = func.sleepers
        if self.functions.dropping:
            # A worker that left with many functions may still be listed (see
            # :meth:`.Functions.drop_abilities`): it is not woken, nor counted against ``n``.
            for w in [w for w in sleepers if w.gone]:
                del sleepers[w]
        woken = list(sleepers) if n <= 0 else list(sleepers)[:n]
        for w in woken:
            self.wake_peer(w)

    def wake_peer(self, w: Peer) -> None:
        """One NOOP ends one sleep (S5)."""
        w.sleeping = False
        for f in w.funcs:
            f.sleepers.pop(w, None)
        self._send(w, _NOOP)

    def sleep(self, peer: Peer) -> None:
        """PRE_SLEEP: ``peer`` sleeps until a job it can do arrives, or gets its NOOP at
        once when one is queued already (S5)."""
        if self.has_job(peer):
            self._send(peer, _NOOP)
            return
        peer.sleeping = True
        for f in peer.funcs:
            f.sleepers[peer] = None

    # --- running ----------------------------------------------------------------------

    def next_job(self, peer: Peer) -> JobRecord | None:
        """Take the next job for ``peer`` off its queue (S3), or None."""
        if self.draining or self.paused:
            return None
        if peer.ready is not None:
            return next_indexed(peer)
        funcs = peer.order
        if funcs is None:
            funcs = peer.order = list(peer.funcs)
        n = len(funcs)
        if n == 0:
            return None
        start = peer.rr % n
        queued = _QUEUED
        for prio in _PRIORITIES:
            for i in range(n):
                f = funcs[(start + i) % n]
                q = f.queues[prio]
                while q:
                    job = q.popleft()
                    if job.state is queued:
                        peer.rr = start + i + 1
                        return job
        return None

    def has_job(self, peer: Peer) -> bool:
        """True when :meth:`next_job` would find a job for ``peer``."""
        if self.draining or self.paused:
            return False
        if peer.ready is not None:
            return has_indexed(peer)
        queued = _QUEUED
        for f in peer.funcs:
            for q in f.queues:
                while q:
                    if q[0].state is queued:
                        return True
                    q.popleft()
        return False

    def assign(self, peer: Peer, job: JobRecord, now: float) -> None:
        """``peer`` runs ``job`` from ``now`` (monotonic seconds)."""
        func = job.func
        func.counts[job.priority] -= 1
        func.running += 1
        func.tally.queued.observe(now - job.since)
        job.since = now
        job.state = _RUNNING
        job.worker = peer
        job.run_id += 1
        peer.held[job.handle] = job
        timeout = peer.abilities.get(func.name, 0)
        if timeout > 0:
            self._seq += 1
            heapq.heappush(self._timeouts, (now + timeout / 1000.0, self._seq, job, job.run_id))

    def finish(self, job: JobRecord) -> None:
        """Forget a job for good."""
        func = job.func
        if job.state is _RUNNING:
            func.running -= 1
            if job.worker is not None:
                job.worker.held.pop(job.handle, None)
                job.worker = None
        elif job.state is not _DONE:
            func.counts[job.priority] -= 1
        job.state = _DONE
        if self.jobs.discard(job):
            self.job_bytes -= len(job.data)
        key = job.data if job.unique == b"-" else job.unique
        if key:
            self.uniques.drop(key, job)
        for c in job.clients:
            c.jobs.discard(job)
        if job.stored:
            self._commits.remove(job)
        if not func.workers:
            self.functions.release(func)

    def fail(self, job: JobRecord) -> None:
        """End ``job``; its waiting clients get WORK_FAIL."""
        if job.clients:
            fail = encode_response(WorkFail(job.handle))
            for c in job.clients:
                self._send(c, fail)
        self.finish(job)

    def lose_run(self, job: JobRecord) -> None:
        """The worker running ``job`` is gone or gave it up: requeue it under the same
        handle and count an attempt (S9), unless the retries are spent (S10) or nobody
        wants the result any more (S12)."""
        func = job.func
        job.attempts += 1
        retries = self._retries
        if retries >= 0 and job.attempts > retries:
            self._stats.retries_exhausted += 1
            self._stats.jobs_failed += 1
            func.tally.counts[FAILED + job.priority] += 1
            self.tallies.failed(self.now, func.name, job.handle, "retries")
            log.warning(
                "job %s (%s) failed: its %d retries are spent",
                job.handle.decode(errors="replace"),
                func.name.decode(errors="replace"),
                retries,
            )
            self.fail(job)
            return
        if not job.clients and not job.background:
            # Its clients left while it ran: nobody wants the result (S12).
            self.finish(job)
            return
        self._stats.jobs_requeued += 1
        func.tally.counts[REQUEUED + job.priority] += 1
        job.since = self.now
        if job.stored:
            self._commits.save_attempts(job)
        func.running -= 1
        job.worker = None
        job.state = _QUEUED
        prio = job.priority
        func.counts[prio] += 1
        q = func.queues[prio]
        if not q:
            q = func.queue(prio)
            if func.indexed:
                mark_ready(func, prio)
        q.appendleft(job)
        if func.sleepers:
            self.wake(func)

    def drop_client(self, peer: Peer) -> None:
        """``peer`` no longer waits for its foreground jobs: a queued one nobody else
        waits for, and no background submit touched, is dropped (S12)."""
        for job in peer.jobs:
            # Every attachment of the connection goes, one per submit it made (S2).
            job.clients = [c for c in job.clients if c is not peer]
            if not job.clients and not job.background and job.state is _QUEUED:
                self.finish(job)
        peer.jobs.clear()

    def lose_runs(self, peer: Peer, only: bytes | None = None) -> None:
        """``peer`` gives up the jobs it runs (of function ``only``, default all)."""
        lost = [j for j in peer.held.values() if only is None or j.func.name == only]
        for job in lost:
            del peer.held[job.handle]
            self.lose_run(job)

    # --- timers -----------------------------------------------------------------------

    def next_deadline(self) -> tuple[float | None, int | None]:
        """(monotonic deadline of the next CAN_DO_TIMEOUT, unix time of the next epoch
        job); either may be None.  While functions of a departed worker remain to be
        let go of (:meth:`.Functions.drop_abilities`), the first is -inf: due now."""
        if self.functions.dropping:
            return -math.inf, (self._epochs[0][0] if self._epochs else None)
        t = self._timeouts[0][0] if self._timeouts else None
        e = self._epochs[0][0] if self._epochs else None
        return t, e

    def tick(self, now: float, wall: float) -> None:
        """Fire the timers that are due at ``now`` (monotonic) and ``wall`` (unix), and
        let go of up to :data:`DROP_CHUNK` functions of departed workers."""
        if self.functions.dropping:
            self.functions.step()
        while self._timeouts and self._timeouts[0][0] <= now:
            _, _, job, run_id = heapq.heappop(self._timeouts)
            if job.state is _RUNNING and job.run_id == run_id and job.worker:
                # S11: the run outlived CAN_DO_TIMEOUT; a late result is JOB_NOT_FOUND.
                self._stats.jobs_timed_out += 1
                job.func.tally.counts[TIMED_OUT + job.priority] += 1
                job.worker.held.pop(job.handle, None)
                self.lose_run(job)
        while self._epochs and self._epochs[0][0] <= wall:
            _, _, job = heapq.heappop(self._epochs)
            if job.state is _SCHEDULED:
                job.state = _COMMITTING  # counted already: enqueue_new does not again
                self.enqueue_new(job, wall)
