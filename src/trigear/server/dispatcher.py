"""The dispatcher: the one owner of all server state, with no I/O in it.

Rules (the S-numbers are those of the spec, ``docs/server.md`` explains each):

* Every change to server state happens in a method of :class:`Dispatcher`, called from
  one task.  Methods never block: output for a peer is appended to ``peer.out`` and the
  peer is listed in :meth:`take_output`; store writes are collected into one batch that
  :meth:`take_store_batch` hands to the store writer, whose answer comes back through
  :meth:`store_done`.
* There is no clock in here.  The caller sets :attr:`now` (monotonic seconds) and
  :attr:`wall` (unix seconds) before each pass, and asks :meth:`next_deadline` when to
  call :meth:`tick` next.

This keeps the whole of Gearman's job logic testable without sockets or trio, and lets a
hypothesis state machine drive it directly.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..protocol.admin import parse_admin_line
from ..protocol.codec import encode_response
from ..protocol.packets import (
    AdminCommand,
    AllYours,
    CanDo,
    CanDoTimeout,
    CantDo,
    EchoReq,
    EchoRes,
    Error,
    Event,
    GetStatus,
    GetStatusUnique,
    GrabJob,
    GrabJobAll,
    GrabJobUniq,
    JobAssign,
    JobAssignAll,
    JobAssignUniq,
    JobCreated,
    NoJob,
    Noop,
    OptionReq,
    OptionRes,
    PreSleep,
    Priority,
    ResetAbilities,
    SetClientId,
    StatusRes,
    StatusResUnique,
    SubmitJob,
    SubmitJobBg,
    SubmitJobEpoch,
    SubmitJobHigh,
    SubmitJobHighBg,
    SubmitJobLow,
    SubmitJobLowBg,
    SubmitJobSched,
    SubmitReduceJob,
    SubmitReduceJobBackground,
    WorkComplete,
    WorkData,
    WorkException,
    WorkFail,
    WorkStatus,
    WorkWarning,
)
from ..store.base import LoadResult, StoredJob
from .config import ServerConfig
from .state import Func, JobRecord, JobState, Peer, PendingReply

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..protocol.errors import RemoteProtocolError

__all__ = ["Dispatcher", "ServerStats", "StoreBatch"]

log = logging.getLogger("trigear.server")

_NOOP = encode_response(Noop())
_NO_JOB = encode_response(NoJob())
_QUEUE_FULL = encode_response(Error(b"QUEUE_ERROR", b"Job queue is full"))
_NOT_FOUND = encode_response(Error(b"JOB_NOT_FOUND", b"Job given in work result not found"))
_NOT_FOUND_DATA = encode_response(Error(b"JOB_NOT_FOUND", b"Job does not exist on server"))
_NOT_FOUND_EXC = encode_response(
    Error(b"JOB_NOT_FOUND", b"An exception was received for a job that does not exist")
)
_NOT_EXPECTED = encode_response(Error(b"INVALID_COMMAND", b"Command not expected"))
_UNKNOWN_OPTION = encode_response(
    Error(b"UNKNOWN_OPTION", b"Server does not recognize given option")
)
_DRAINING = encode_response(Error(b"QUEUE_ERROR", b"Server is shutting down"))
_STORE_FAILED = encode_response(Error(b"QUEUE_ERROR", b"Job could not be stored"))

# Submit classes -> (priority, background).
_SUBMITS: dict[type[Any], tuple[int, bool]] = {
    SubmitJob: (1, False),
    SubmitJobBg: (1, True),
    SubmitJobHigh: (0, False),
    SubmitJobHighBg: (0, True),
    SubmitJobLow: (2, False),
    SubmitJobLowBg: (2, True),
}


@dataclass(slots=True)
class StoreBatch:
    """Store changes of one or more dispatcher passes, committed together (S19)."""

    add: dict[bytes, StoredJob] = field(default_factory=dict)
    remove: list[bytes] = field(default_factory=list)
    attempts: dict[bytes, int] = field(default_factory=dict)
    replies: list[PendingReply] = field(default_factory=list)
    last_handle_number: int = 0

    def __bool__(self) -> bool:
        return bool(self.add or self.remove or self.attempts or self.replies)


@dataclass(slots=True)
class ServerStats:
    """Counters for ``Server.statistics()`` and the logs."""

    jobs_submitted: int = 0
    jobs_coalesced: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_requeued: int = 0
    retries_exhausted: int = 0
    jobs_timed_out: int = 0
    protocol_errors: int = 0
    internal_errors: int = 0
    store_commits: int = 0
    store_failures: int = 0


def _atoi(value: bytes) -> int:
    """Leading decimal digits as a number, like C's atoi (gearmand reads WORK_STATUS so)."""
    n = 0
    for b in value:
        if 48 <= b <= 57:
            n = n * 10 + b - 48
            if n > 0xFFFFFFFF:
                return 0xFFFFFFFF
        else:
            break
    return n


class Dispatcher:
    """Gearman job logic over abstract peers.  See the module docstring for the rules."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        durable: bool = False,
        first_handle: int = 1,
    ) -> None:
        self.config = config or ServerConfig()
        self.durable = durable
        self.now = 0.0
        self.wall = 0.0
        self.stats = ServerStats()
        self.funcs: dict[bytes, Func] = {}
        self.jobs: dict[bytes, JobRecord] = {}
        self.peers: dict[int, Peer] = {}
        self._maxqueue: dict[bytes, tuple[int, int, int]] = {}
        self._handle_prefix = b"H:" + self.config.job_handle_prefix.encode() + b":"
        self._next_handle = first_handle
        self._dirty: list[Peer] = []
        self._timeouts: list[tuple[float, int, JobRecord, int]] = []
        self._epochs: list[tuple[int, int, JobRecord]] = []
        self._seq = 0
        self._batch = StoreBatch()
        self._inflight: StoreBatch | None = None
        #: Set by the admin ``shutdown``: "now" or "graceful".
        self.shutdown_request: str | None = None
        #: While draining (S21) no job is handed out.
        self.draining = False
        self._wakeup = self.config.worker_wakeup

    # --- handles ------------------------------------------------------------------

    @property
    def last_handle_number(self) -> int:
        return self._next_handle - 1

    def _new_handle(self) -> bytes:
        n = self._next_handle
        self._next_handle = n + 1
        return self._handle_prefix + b"%d" % n

    # --- peers and output -----------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        self.peers[peer.id] = peer

    def _send(self, peer: Peer, data: bytes) -> None:
        if peer.gone:
            return
        if peer.waiting:
            peer.waiting[-1].after.append(data)
            return
        if not peer.out:
            self._dirty.append(peer)
        peer.out.append(data)

    def take_output(self) -> list[Peer]:
        """Peers with output in ``peer.out``; the caller writes and clears it."""
        dirty = self._dirty
        self._dirty = []
        return dirty

    @property
    def running_jobs(self) -> int:
        return sum(len(p.held) for p in self.peers.values())

    def disconnect(self, peer: Peer) -> None:
        """The connection is gone: requeue what it held (S9), let go of what it waited
        for (S12)."""
        if peer.gone:
            return
        peer.gone = True
        self.peers.pop(peer.id, None)
        for job in list(peer.held.values()):
            self._lose_run(job)
        peer.held.clear()
        self._drop_abilities(peer)
        for job in peer.jobs:
            if peer in job.clients:
                job.clients = [c for c in job.clients if c is not peer]
            if not job.clients and not job.background and job.state is JobState.QUEUED:
                # Nobody waits for it and no background submit touched it (S12).
                self._finish(job)
        peer.jobs.clear()
        peer.waiting.clear()
        peer.out.clear()

    # --- the event entry point --------------------------------------------------------

    def handle(self, peer: Peer, event: Event) -> None:
        """Act on one event from ``peer``."""
        cls = type(event)
        if cls in _SUBMITS:
            prio, bg = _SUBMITS[cls]
            self._submit(peer, event.function, event.unique, event.data, prio, bg)  # type: ignore[union-attr]
            return
        handler = _HANDLERS.get(cls)
        if handler is None:
            self._send(peer, _NOT_EXPECTED)
            return
        handler(self, peer, event)

    def protocol_error(self, peer: Peer, exc: RemoteProtocolError) -> None:
        """Answer bad input (S20): an ERROR when there is one to send, then close if the
        stream is out of sync."""
        self.stats.protocol_errors += 1
        if exc.code is not None:
            self._send(peer, encode_response(Error(exc.code, exc.error_text)))
        if exc.close:
            peer.closing = True
            if not peer.out and peer not in self._dirty:
                self._dirty.append(peer)

    # --- submitting -------------------------------------------------------------------

    def _func(self, name: bytes) -> Func:
        f = self.funcs.get(name)
        if f is None:
            f = self.funcs[name] = Func(name)
            limit = self._maxqueue.get(name)
            if limit is not None:
                f.maxqueue = limit
        return f

    def _submit(
        self,
        peer: Peer,
        function: bytes,
        unique: bytes,
        data: bytes,
        prio: int,
        bg: bool,
        *,
        when: int | None = None,
        reducer: bytes | None = None,
    ) -> None:
        func = self._func(function)
        key = data if unique == b"-" else unique
        if key:
            job = func.uniques.get(key)
            if job is not None:
                self._join(peer, job, bg)
                return
        if self.draining and not (bg and self.durable):
            self._send(peer, _DRAINING)
            return
        limit = func.maxqueue[prio]
        if limit and func.total >= limit:
            self._send(peer, _QUEUE_FULL)
            return
        job = JobRecord(self._new_handle(), func, unique, data, prio, bg)
        self.stats.jobs_submitted += 1
        job.reducer = reducer
        job.when = when
        self.jobs[job.handle] = job
        if key:
            func.uniques[key] = job
        if not bg:
            job.clients = [peer]
            peer.jobs.add(job)
        if bg and self.durable:
            job.state = JobState.COMMITTING
            func.counts[prio] += 1
            self._store_add(job)
            self._hold_reply(peer, job)
            return
        self._send(peer, encode_response(JobCreated(job.handle)))
        self._enqueue_new(job)

    def _enqueue_new(self, job: JobRecord) -> None:
        """A new job becomes runnable now or is scheduled (S15)."""
        func = job.func
        if job.state is not JobState.COMMITTING:
            func.counts[job.priority] += 1
        if job.when is not None and job.when > self.wall:
            job.state = JobState.SCHEDULED
            self._seq += 1
            heapq.heappush(self._epochs, (job.when, self._seq, job))
            return
        job.state = JobState.QUEUED
        func.queues[job.priority].append(job)
        if func.sleepers:
            self._wake(func)

    def _join(self, peer: Peer, job: JobRecord, bg: bool) -> None:
        """A submit that matches a live job by unique gets its handle (S2)."""
        self.stats.jobs_coalesced += 1
        if bg:
            job.background = True
            if self.durable:
                # S19: no background JOB_CREATED before the job is on disk, also when it
                # joins a job whose write is pending, in flight, or failed earlier.
                batch = self._adding_batch(job)
                if batch is None and not job.stored:
                    self._store_add(job)
                    batch = self._batch
                if batch is not None:
                    self._hold_reply(peer, job, batch)
                    return
        elif peer not in job.clients:
            job.clients = [*job.clients, peer]
            peer.jobs.add(job)
        self._send(peer, encode_response(JobCreated(job.handle)))

    def _wake(self, func: Func) -> None:
        """Wake sleeping workers that can do ``func``: one NOOP per sleep (S5)."""
        n = self._wakeup
        sleepers = func.sleepers
        woken = list(sleepers) if n <= 0 else list(sleepers)[:n]
        for w in woken:
            self._wake_peer(w)

    def _wake_peer(self, w: Peer) -> None:
        """One NOOP ends one sleep (S5)."""
        w.sleeping = False
        for f in w.funcs:
            f.sleepers.pop(w, None)
        self._send(w, _NOOP)

    # --- grabbing ---------------------------------------------------------------------

    def _next_job(self, peer: Peer) -> JobRecord | None:
        """The next job for ``peer``: HIGH before NORMAL before LOW, FIFO within a level,
        round-robin across the worker's functions (S3)."""
        funcs = peer.funcs
        n = len(funcs)
        if n == 0 or self.draining:
            return None
        start = peer.rr % n
        queued = JobState.QUEUED
        for prio in (0, 1, 2):
            for i in range(n):
                f = funcs[(start + i) % n]
                q = f.queues[prio]
                while q:
                    job = q.popleft()
                    if job.state is queued:
                        peer.rr = start + i + 1
                        return job
        return None

    def _has_job(self, peer: Peer) -> bool:
        if self.draining:
            return False
        queued = JobState.QUEUED
        for f in peer.funcs:
            for q in f.queues:
                while q:
                    if q[0].state is queued:
                        return True
                    q.popleft()
        return False

    def _assign(self, peer: Peer, job: JobRecord) -> None:
        func = job.func
        func.counts[job.priority] -= 1
        func.running += 1
        job.state = JobState.RUNNING
        job.worker = peer
        job.run_id += 1
        peer.held[job.handle] = job
        timeout = peer.abilities.get(func.name, 0)
        if timeout > 0:
            self._seq += 1
            heapq.heappush(
                self._timeouts, (self.now + timeout / 1000.0, self._seq, job, job.run_id)
            )

    def _grab(self, peer: Peer, kind: int) -> None:
        job = self._next_job(peer)
        if job is None:
            self._send(peer, _NO_JOB)
            return
        self._assign(peer, job)
        if kind == 0:
            self._send(peer, encode_response(JobAssign(job.handle, job.func.name, job.data)))
        elif kind == 2 and job.reducer is not None:
            self._send(
                peer,
                encode_response(
                    JobAssignAll(job.handle, job.func.name, job.unique, job.reducer, job.data)
                ),
            )
        else:
            self._send(
                peer,
                encode_response(JobAssignUniq(job.handle, job.func.name, job.unique, job.data)),
            )

    # --- ending and losing jobs --------------------------------------------------------

    def _finish(self, job: JobRecord) -> None:
        """Forget a job for good."""
        func = job.func
        if job.state is JobState.RUNNING:
            func.running -= 1
            if job.worker is not None:
                job.worker.held.pop(job.handle, None)
                job.worker = None
        elif job.state is not JobState.DONE:
            func.counts[job.priority] -= 1
        job.state = JobState.DONE
        self.jobs.pop(job.handle, None)
        key = job.data if job.unique == b"-" else job.unique
        if key and func.uniques.get(key) is job:
            del func.uniques[key]
        for c in job.clients:
            c.jobs.discard(job)
        if job.stored:
            self._store_remove(job)

    def _lose_run(self, job: JobRecord) -> None:
        """The worker running ``job`` is gone or gave it up: requeue it under the same
        handle and count an attempt (S9), unless the retries are spent (S10) or nobody
        wants the result any more (S12)."""
        func = job.func
        job.attempts += 1
        retries = self.config.job_retries
        if retries >= 0 and job.attempts > retries:
            self.stats.retries_exhausted += 1
            self.stats.jobs_failed += 1
            log.warning(
                "job %s (%s) failed: its %d retries are spent",
                job.handle.decode(errors="replace"),
                func.name.decode(errors="replace"),
                retries,
            )
            fail = encode_response(WorkFail(job.handle))
            for c in job.clients:
                self._send(c, fail)
            self._finish(job)
            return
        if not job.clients and not job.background:
            # Its clients left while it ran: nobody wants the result (S12).
            self._finish(job)
            return
        self.stats.jobs_requeued += 1
        if job.stored:
            self._store_attempts(job)
        func.running -= 1
        job.worker = None
        job.state = JobState.QUEUED
        func.counts[job.priority] += 1
        func.queues[job.priority].appendleft(job)
        if func.sleepers:
            self._wake(func)

    def _held(self, peer: Peer, handle: bytes, not_found: bytes) -> JobRecord | None:
        job = peer.held.get(handle)
        if job is None:
            self._send(peer, not_found)
        return job

    # --- packet handlers -----------------------------------------------------------------

    def _on_can_do(self, peer: Peer, event: CanDo | CanDoTimeout) -> None:
        name = event.function
        timeout = event.timeout if isinstance(event, CanDoTimeout) else 0
        new = name not in peer.abilities
        peer.abilities[name] = timeout
        if new:
            func = self._func(name)
            func.workers[peer] = None
            peer.funcs.append(func)
            if peer.sleeping:
                if self._has_job(peer):
                    # It sleeps next to work it can now do: wake it (S5).
                    self._wake_peer(peer)
                else:
                    func.sleepers[peer] = None

    def _drop_abilities(self, peer: Peer, only: bytes | None = None) -> None:
        for func in list(peer.funcs):
            if only is not None and func.name != only:
                continue
            func.workers.pop(peer, None)
            func.sleepers.pop(peer, None)
            peer.funcs.remove(func)
            peer.abilities.pop(func.name, None)

    def _on_cant_do(self, peer: Peer, event: CantDo) -> None:
        self._drop_abilities(peer, event.function)
        for job in [j for j in peer.held.values() if j.func.name == event.function]:
            del peer.held[job.handle]
            self._lose_run(job)

    def _on_reset(self, peer: Peer, event: ResetAbilities) -> None:
        self._drop_abilities(peer)
        held = list(peer.held.values())
        peer.held.clear()
        for job in held:
            self._lose_run(job)

    def _on_pre_sleep(self, peer: Peer, event: PreSleep) -> None:
        if self._has_job(peer):
            self._send(peer, _NOOP)
            return
        peer.sleeping = True
        for f in peer.funcs:
            f.sleepers[peer] = None

    def _on_grab(self, peer: Peer, event: GrabJob) -> None:
        self._grab(peer, 0)

    def _on_grab_uniq(self, peer: Peer, event: GrabJobUniq) -> None:
        self._grab(peer, 1)

    def _on_grab_all(self, peer: Peer, event: GrabJobAll) -> None:
        self._grab(peer, 2)

    def _on_work_complete(self, peer: Peer, event: WorkComplete) -> None:
        job = peer.held.pop(event.handle, None)
        if job is None:
            self._send(peer, _NOT_FOUND)
            return
        self.stats.jobs_completed += 1
        if job.clients:
            pkt = encode_response(event)
            for c in job.clients:
                self._send(c, pkt)
        self._finish(job)

    def _on_work_fail(self, peer: Peer, event: WorkFail) -> None:
        job = peer.held.pop(event.handle, None)
        if job is None:
            self._send(peer, _NOT_FOUND)
            return
        self.stats.jobs_failed += 1
        if job.clients:
            pkt = encode_response(WorkFail(job.handle))
            for c in job.clients:
                self._send(c, pkt)
        self._finish(job)

    def _on_work_exception(self, peer: Peer, event: WorkException) -> None:
        job = peer.held.pop(event.handle, None)
        if job is None:
            self._send(peer, _NOT_FOUND_EXC)
            return
        self.stats.jobs_failed += 1
        if job.clients:
            exc = encode_response(event)
            # S7: no stray NUL after the handle, unlike gearmand.
            fail = encode_response(WorkFail(job.handle))
            everyone = self.config.exceptions
            for c in job.clients:
                self._send(c, exc if everyone or c.exceptions else fail)
        self._finish(job)

    def _on_work_status(self, peer: Peer, event: WorkStatus) -> None:
        job = self._held(peer, event.handle, _NOT_FOUND)
        if job is None:
            return
        job.numerator = _atoi(event.numerator)
        job.denominator = _atoi(event.denominator)
        if job.clients:
            pkt = encode_response(event)
            for c in job.clients:
                self._send(c, pkt)

    def _on_work_data(self, peer: Peer, event: WorkData | WorkWarning) -> None:
        job = self._held(peer, event.handle, _NOT_FOUND_DATA)
        if job is not None and job.clients:
            pkt = encode_response(event)
            for c in job.clients:
                self._send(c, pkt)

    def _on_get_status(self, peer: Peer, event: GetStatus) -> None:
        job = self.jobs.get(event.handle)
        if job is None or job.state is JobState.COMMITTING:
            self._send(peer, encode_response(StatusRes(event.handle, False, False, 0, 0)))
            return
        self._send(
            peer,
            encode_response(
                StatusRes(
                    job.handle,
                    True,
                    job.state is JobState.RUNNING,
                    job.numerator,
                    job.denominator,
                )
            ),
        )

    def _on_get_status_unique(self, peer: Peer, event: GetStatusUnique) -> None:
        job = None
        if event.unique:
            for f in self.funcs.values():
                job = f.uniques.get(event.unique)
                if job is not None and job.state is not JobState.COMMITTING:
                    break
                job = None
        if job is None:
            self._send(peer, encode_response(StatusResUnique(event.unique, False, False, 0, 0, 0)))
            return
        self._send(
            peer,
            encode_response(
                StatusResUnique(
                    event.unique,
                    True,
                    job.state is JobState.RUNNING,
                    job.numerator,
                    job.denominator,
                    len(job.clients),
                )
            ),
        )

    def _on_echo(self, peer: Peer, event: EchoReq) -> None:
        self._send(peer, encode_response(EchoRes(event.data)))

    def _on_option(self, peer: Peer, event: OptionReq) -> None:
        if event.option.lower() == b"exceptions":
            peer.exceptions = True
            self._send(peer, encode_response(OptionRes(event.option)))
        else:
            self._send(peer, _UNKNOWN_OPTION)

    def _on_client_id(self, peer: Peer, event: SetClientId) -> None:
        peer.client_id = event.client_id or b"-"

    def _on_epoch(self, peer: Peer, event: SubmitJobEpoch) -> None:
        self._submit(peer, event.function, event.unique, event.data, 1, True, when=event.epoch)

    def _on_reduce(self, peer: Peer, event: SubmitReduceJob | SubmitReduceJobBackground) -> None:
        bg = isinstance(event, SubmitReduceJobBackground)
        self._submit(peer, event.function, event.unique, event.data, 1, bg, reducer=event.reducer)

    def _on_not_expected(self, peer: Peer, event: SubmitJobSched | AllYours) -> None:
        self._send(peer, _NOT_EXPECTED)

    def _on_admin(self, peer: Peer, event: AdminCommand) -> None:
        from .admin import answer

        self._send(peer, answer(self, peer, parse_admin_line(event.line)))

    # --- timers ---------------------------------------------------------------------------

    def next_deadline(self) -> tuple[float | None, int | None]:
        """(monotonic deadline of the next CAN_DO_TIMEOUT, unix time of the next epoch
        job); either may be None."""
        t = self._timeouts[0][0] if self._timeouts else None
        e = self._epochs[0][0] if self._epochs else None
        return t, e

    def tick(self) -> None:
        """Fire the timers that are due at :attr:`now` / :attr:`wall`."""
        while self._timeouts and self._timeouts[0][0] <= self.now:
            _, _, job, run_id = heapq.heappop(self._timeouts)
            if job.state is JobState.RUNNING and job.run_id == run_id and job.worker:
                # S11: the run outlived CAN_DO_TIMEOUT; a late result is JOB_NOT_FOUND.
                self.stats.jobs_timed_out += 1
                job.worker.held.pop(job.handle, None)
                self._lose_run(job)
        while self._epochs and self._epochs[0][0] <= self.wall:
            _, _, job = heapq.heappop(self._epochs)
            if job.state is JobState.SCHEDULED:
                job.state = JobState.QUEUED
                job.func.queues[job.priority].append(job)
                if job.func.sleepers:
                    self._wake(job.func)

    # --- the store ------------------------------------------------------------------------

    def _stored_job(self, job: JobRecord) -> StoredJob:
        return StoredJob(
            handle=job.handle,
            function=job.func.name,
            unique=job.unique,
            data=job.data,
            priority=Priority(job.priority),
            when=job.when,
            reducer=job.reducer,
            attempts=job.attempts,
        )

    def _store_add(self, job: JobRecord) -> None:
        job.stored = True
        self._batch.add[job.handle] = self._stored_job(job)

    def _store_remove(self, job: JobRecord) -> None:
        job.stored = False
        if self._batch.add.pop(job.handle, None) is None:
            self._batch.remove.append(job.handle)
        self._batch.attempts.pop(job.handle, None)

    def _store_attempts(self, job: JobRecord) -> None:
        pending = self._batch.add.get(job.handle)
        if pending is not None:
            pending.attempts = job.attempts
        else:
            self._batch.attempts[job.handle] = job.attempts

    def _adding_batch(self, job: JobRecord) -> StoreBatch | None:
        """The batch, pending or in flight, whose commit writes ``job``, if any."""
        if job.handle in self._batch.add:
            return self._batch
        if self._inflight is not None and job.handle in self._inflight.add:
            return self._inflight
        return None

    def _hold_reply(self, peer: Peer, job: JobRecord, batch: StoreBatch | None = None) -> None:
        """Hold ``peer``'s JOB_CREATED until ``batch`` (default: the next) commits."""
        reply = PendingReply(job, peer, reply=encode_response(JobCreated(job.handle)))
        peer.waiting.append(reply)
        (self._batch if batch is None else batch).replies.append(reply)

    def has_store_work(self) -> bool:
        """True while store changes wait to be committed or are being committed."""
        return bool(self._batch) or self._inflight is not None

    def take_store_batch(self) -> StoreBatch | None:
        """The next batch for the store writer, if one is due and none is in flight."""
        if self._inflight is not None or not self._batch:
            return None
        batch = self._batch
        batch.last_handle_number = self.last_handle_number
        self._batch = StoreBatch()
        self._inflight = batch
        return batch

    def store_done(self, ok: bool) -> None:
        """The in-flight batch was committed (``ok``) or failed and applied not at all."""
        batch = self._inflight
        self._inflight = None
        if batch is None:
            return
        if ok:
            self.stats.store_commits += 1
        else:
            self.stats.store_failures += 1
            # Nothing of it is on disk: put removals and attempt counts back for the
            # next try; jobs whose add failed are refused (never a false JOB_CREATED).
            self._batch.remove[:0] = batch.remove
            for h, n in batch.attempts.items():
                self._batch.attempts.setdefault(h, n)
        for reply in batch.replies:
            job = reply.job
            if ok:
                reply.ready = True
                if job.state is JobState.COMMITTING:
                    self._enqueue_new(job)
            else:
                reply.ready = True
                reply.reply = _STORE_FAILED
                if job.handle in batch.add:
                    job.stored = False
                if job.state is JobState.COMMITTING:
                    fail = encode_response(WorkFail(job.handle))
                    for c in job.clients:
                        self._send(c, fail)
                    self._finish(job)
            self._release(reply.peer)

    def _release(self, peer: Peer) -> None:
        """Send held replies that are ready, in request order, and what followed them."""
        while peer.waiting and peer.waiting[0].ready:
            reply = peer.waiting.popleft()
            if peer.gone:
                continue
            if not peer.out:
                self._dirty.append(peer)
            peer.out.append(reply.reply)
            # What followed this reply came before the next held one: send it now.
            peer.out.extend(reply.after)

    def replay(self, loaded: LoadResult) -> None:
        """Recreate stored jobs at start, in their original order (S19)."""
        self._next_handle = max(self._next_handle, loaded.last_handle_number + 1)
        for sj in loaded.jobs:
            func = self._func(sj.function)
            job = JobRecord(sj.handle, func, sj.unique, sj.data, int(sj.priority), True)
            job.when = sj.when
            job.reducer = sj.reducer
            job.attempts = sj.attempts
            job.stored = True
            job.state = JobState.COMMITTING  # so _enqueue_new counts it once
            func.counts[job.priority] += 1
            self.jobs[job.handle] = job
            key = job.data if job.unique == b"-" else job.unique
            if key and key not in func.uniques:
                func.uniques[key] = job
            self._enqueue_new(job)

    # --- admin helpers (used by server.admin) ------------------------------------------------

    def set_maxqueue(self, name: bytes, limits: tuple[int, int, int]) -> None:
        self._maxqueue[name] = limits
        f = self.funcs.get(name)
        if f is not None:
            f.maxqueue = limits

    def create_function(self, name: bytes) -> None:
        self._func(name)

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: end the job now (attached clients get WORK_FAIL)."""
        job = self.jobs.get(handle)
        if job is None or job.state is JobState.COMMITTING:
            return False
        fail = encode_response(WorkFail(job.handle))
        for c in job.clients:
            self._send(c, fail)
        self._finish(job)
        return True

    def drop_function(self, name: bytes) -> str | None:
        """Admin ``drop function``: None on success, else the error text."""
        f = self.funcs.get(name)
        if f is None:
            return "function not found"
        if f.workers or f.total:
            # gearmand drops a function with queued jobs and leaves them orphaned; trigear
            # refuses, so no job is lost to an admin command.
            return "there are still connected workers or executing clients"
        del self.funcs[name]
        return None

    def version(self) -> str:
        return f"trigear-{__version__}"

    def all_jobs(self) -> Iterable[JobRecord]:
        return self.jobs.values()


_HANDLERS: dict[type[Any], Any] = {
    CanDo: Dispatcher._on_can_do,
    CanDoTimeout: Dispatcher._on_can_do,
    CantDo: Dispatcher._on_cant_do,
    ResetAbilities: Dispatcher._on_reset,
    PreSleep: Dispatcher._on_pre_sleep,
    GrabJob: Dispatcher._on_grab,
    GrabJobUniq: Dispatcher._on_grab_uniq,
    GrabJobAll: Dispatcher._on_grab_all,
    WorkComplete: Dispatcher._on_work_complete,
    WorkFail: Dispatcher._on_work_fail,
    WorkException: Dispatcher._on_work_exception,
    WorkStatus: Dispatcher._on_work_status,
    WorkData: Dispatcher._on_work_data,
    WorkWarning: Dispatcher._on_work_data,
    GetStatus: Dispatcher._on_get_status,
    GetStatusUnique: Dispatcher._on_get_status_unique,
    EchoReq: Dispatcher._on_echo,
    OptionReq: Dispatcher._on_option,
    SetClientId: Dispatcher._on_client_id,
    SubmitJobEpoch: Dispatcher._on_epoch,
    SubmitReduceJob: Dispatcher._on_reduce,
    SubmitReduceJobBackground: Dispatcher._on_reduce,
    SubmitJobSched: Dispatcher._on_not_expected,
    AllYours: Dispatcher._on_not_expected,
    AdminCommand: Dispatcher._on_admin,
}
