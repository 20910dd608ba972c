"""A hypothesis state machine that drives the sans-IO Dispatcher against a simple model.

The model keeps, for every connection, the exact stream of packets the spec says it must
receive (JOB_CREATED in submit order, held back while a durable commit is pending; WORK_*
once per attached foreground submit, so a connection that submitted one unique three
times gets each packet three times in a row (S2); JOB_ASSIGN by priority, FIFO and
round-robin; NOOP once per sleep; ERROR JOB_NOT_FOUND for forged results;
STATUS_RES_UNIQUE counting attached submits), and for every job its state, worker,
attachments and attempts.  After every step the dispatcher's output and state must
equal the model's, and the invariants the spec names are checked on their own as well:
each job ends exactly once and every foreground submit gets exactly one terminal packet,
nothing acknowledged is lost, only owners finish jobs, the queues are consistent,
JOB_CREATED keeps submit order (S1), and no sleep gets two NOOPs (S5).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trigear.protocol import Decoder, Role
from trigear.protocol.packets import (
    AdminCommand,
    CanDo,
    CanDoTimeout,
    CantDo,
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
    ResetAbilities,
    StatusRes,
    StatusResUnique,
    SubmitJob,
    SubmitJobBg,
    SubmitJobEpoch,
    SubmitJobHigh,
    SubmitJobHighBg,
    SubmitJobLow,
    SubmitJobLowBg,
    SubmitReduceJob,
    SubmitReduceJobBackground,
    WorkComplete,
    WorkData,
    WorkException,
    WorkFail,
    WorkStatus,
    WorkWarning,
)
from trigear.server.config import ServerConfig
from trigear.server.dispatcher import Dispatcher
from trigear.server.state import JobState, Peer

# A thousand runs of sixty steps: minutes under coverage on a busy machine, not a hang.
pytestmark = pytest.mark.timeout(900)

if TYPE_CHECKING:
    from trigear.server.commits import StoreBatch
    from trigear.store.base import StoredJob

FUNCS = [b"f1", b"f2", b"f3"]
UNIQUES = [b"", b"", b"-", b"u1", b"u2"]
DATAS = [b"d1", b"d2"]
PREFIX = b"H:test:"
WALL0 = 1_000_000.0

SUBMITS: dict[tuple[int, bool], type[Any]] = {
    (0, False): SubmitJobHigh,
    (1, False): SubmitJob,
    (2, False): SubmitJobLow,
    (0, True): SubmitJobHighBg,
    (1, True): SubmitJobBg,
    (2, True): SubmitJobLowBg,
}
TERMINAL = (WorkComplete, WorkFail, WorkException)
STORE_FAILED = Error(b"QUEUE_ERROR", b"Job could not be stored")


def norm(ev: Event) -> tuple[Any, ...]:
    """Events compared by type and fields (NamedTuples of different types can be equal);
    for ERROR only the code counts."""
    if isinstance(ev, Error):
        return ("Error", ev.code)
    return (type(ev).__name__, *ev)


class Pending:
    """A JOB_CREATED held back until the store commits (S19); ``event`` once known."""

    def __init__(self, handle: bytes) -> None:
        self.handle = handle
        self.event: Event | None = None


@dataclass(eq=False)
class MJob:
    handle: bytes
    func: bytes
    unique: bytes
    data: bytes
    key: bytes
    prio: int
    bg: bool
    reducer: bytes | None = None
    when: int | None = None
    #: One client id per attached foreground submit, in submit order (S2).
    clients: list[int] = field(default_factory=list)
    state: str = "QUEUED"
    worker: int | None = None
    attempts: int = 0
    deadline: float | None = None
    tseq: int = 0
    eseq: int = 0
    numerator: int = 0
    denominator: int = 0
    #: Where its store add is: "no", "cur" (next batch), "inflight", "yes" (committed).
    disk: str = "no"
    #: A background JOB_CREATED for it was delivered.
    bg_acked: bool = False
    ended: str | None = None


@dataclass(eq=False)
class MPeer:
    peer: Peer
    worker: bool
    decoder: Decoder = field(default_factory=lambda: Decoder(Role.CLIENT))
    expected: list[Event | Pending] = field(default_factory=list)
    received: list[Event] = field(default_factory=list)
    gone: bool = False
    # client side
    exceptions: bool = False
    #: One handle per attachment this connection holds (a handle once per submit).
    jobs: list[bytes] = field(default_factory=list)
    #: Foreground submits per handle answered with JOB_CREATED: each must get exactly
    #: one terminal packet once the job ends.
    fg_submits: Counter[bytes] = field(default_factory=Counter)
    terminals: Counter[bytes] = field(default_factory=Counter)
    # worker side
    abilities: dict[bytes, int] = field(default_factory=dict)
    funcs: list[bytes] = field(default_factory=list)
    rr: int = 0
    sleeping: bool = False
    held: dict[bytes, None] = field(default_factory=dict)
    noops_since_sleep: int = 0


class DispatcherModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.d: Dispatcher | None = None

    # --- set-up ------------------------------------------------------------------

    @initialize(
        retries=st.sampled_from([-1, -1, 0, 1, 2]),
        durable=st.booleans(),
        exceptions=st.booleans(),
        jobs=st.lists(
            st.tuples(
                st.integers(0, 2),
                st.booleans(),
                st.sampled_from(FUNCS),
                st.sampled_from(UNIQUES),
                st.sampled_from(DATAS),
            ),
            max_size=6,
        ),
    )
    def setup(
        self,
        retries: int,
        durable: bool,
        exceptions: bool,
        jobs: list[tuple[int, bool, bytes, bytes, bytes]],
    ) -> None:
        self.config = ServerConfig(
            job_retries=retries, exceptions=exceptions, job_handle_prefix="test"
        )
        self.d = Dispatcher(self.config, durable=durable)
        self.d.now = 100.0
        self.d.wall = WALL0
        self.durable = durable
        self.peers: dict[int, MPeer] = {}
        self.next_id = 1
        self.next_handle = 1
        self.jobs: dict[bytes, MJob] = {}  # every job ever, by handle
        self.keys: dict[tuple[bytes, bytes], bytes] = {}
        self.queues: dict[tuple[bytes, int], list[bytes]] = {
            (f, p): [] for f in FUNCS for p in range(3)
        }
        self.seq = 0
        self.cur_replies: list[tuple[Pending, MJob]] = []
        self.inflight: list[tuple[Pending, MJob]] | None = None
        self.inflight_batch: StoreBatch | None = None
        self.disk: dict[bytes, StoredJob] = {}
        self.admin = Peer(0, 3, "127.0.0.1")
        self.d.connect(self.admin)
        self.admin_expected = b""
        self.admin_received = b""
        self.new_peer(False)
        self.can_do_(self.new_peer(True), b"f1", 0)
        # Most runs start with work queued, so short runs test more than set-up.
        for prio, bg, func, unique, data in jobs:
            self.submit(0, prio, bg, func, unique, data)

    # --- helpers -------------------------------------------------------------------

    def live(self, worker: bool) -> list[MPeer]:
        return [p for p in self.peers.values() if p.worker is worker and not p.gone]

    def pick(self, worker: bool, i: int) -> MPeer:
        ps = self.live(worker)
        return ps[i % len(ps)]

    def has_clients(self) -> bool:
        return bool(self.live(False))

    def has_workers(self) -> bool:
        return bool(self.live(True))

    def holders(self) -> list[MPeer]:
        return [w for w in self.live(True) if w.held]

    def live_jobs(self) -> list[MJob]:
        return [j for j in self.jobs.values() if j.state != "DONE"]

    def send_to(self, pid: int, ev: Event | Pending) -> None:
        p = self.peers[pid]
        if not p.gone:
            p.expected.append(ev)

    def notify(self, job: MJob, make: Any) -> None:
        for cid in job.clients:
            self.send_to(cid, make(self.peers[cid]))

    def end(self, job: MJob, reason: str) -> None:
        if reason in ("client_lost", "orphan"):
            assert not job.bg, "S12: a background job dropped for client loss"
        if job.state == "QUEUED":
            self.queues[(job.func, job.prio)].remove(job.handle)
        if job.worker is not None:
            self.peers[job.worker].held.pop(job.handle, None)
            job.worker = None
        job.state = "DONE"
        job.ended = reason
        event(f"job ended: {reason}")
        job.deadline = None
        if job.key and self.keys.get((job.func, job.key)) == job.handle:
            del self.keys[(job.func, job.key)]
        for cid in job.clients:
            self.peers[cid].jobs.remove(job.handle)

    def wake(self, func: bytes) -> None:
        for w in self.live(True):
            if w.sleeping and func in w.abilities:
                w.sleeping = False
                self.send_to(w.peer.id, Noop())

    def enqueue(self, job: MJob, front: bool = False) -> None:
        job.state = "QUEUED"
        q = self.queues[(job.func, job.prio)]
        if front:
            q.insert(0, job.handle)
        else:
            q.append(job.handle)
        self.wake(job.func)

    def enqueue_new(self, job: MJob) -> None:
        if job.when is not None and job.when > self.d_().wall:
            job.state = "SCHEDULED"
            self.seq += 1
            job.eseq = self.seq
            return
        self.enqueue(job)

    def lose_run(self, job: MJob) -> None:
        """S9/S10/S12: the run is lost; requeue at the front, or end the job."""
        if job.worker is not None:
            self.peers[job.worker].held.pop(job.handle, None)
        job.worker = None
        job.deadline = None
        job.attempts += 1
        event("run lost")
        retries = self.config.job_retries
        if retries >= 0 and job.attempts > retries:
            self.notify(job, lambda c: WorkFail(job.handle))
            self.end(job, "exhausted")
        elif not job.clients and not job.bg:
            self.end(job, "orphan")
        else:
            self.enqueue(job, front=True)

    def runnable(self, w: MPeer) -> bool:
        return any(self.queues[(f, p)] for f in w.funcs for p in range(3))

    def next_job(self, w: MPeer) -> MJob | None:
        n = len(w.funcs)
        if n == 0:
            return None
        start = w.rr % n
        for prio in range(3):
            for i in range(n):
                q = self.queues[(w.funcs[(start + i) % n], prio)]
                if q:
                    w.rr = start + i + 1
                    return self.jobs[q.pop(0)]
        return None

    def d_(self) -> Dispatcher:
        assert self.d is not None
        return self.d

    def reply(self, c: MPeer, job: MJob, bg: bool) -> None:
        """The JOB_CREATED for a submit: held until the job is on disk for a durable
        background submit (S19), else at once."""
        if not (bg and self.durable):
            self.send_to(c.peer.id, JobCreated(job.handle))
            job.bg_acked = job.bg_acked or bg
            return
        if job.disk == "yes":
            self.send_to(c.peer.id, JobCreated(job.handle))
            job.bg_acked = True
            return
        pend = Pending(job.handle)
        self.send_to(c.peer.id, pend)
        if job.disk == "no":
            job.disk = "cur"
        if job.disk == "cur":
            self.cur_replies.append((pend, job))
        else:
            assert self.inflight is not None
            self.inflight.append((pend, job))

    def do_submit(
        self,
        c: MPeer,
        ev: Event,
        func: bytes,
        unique: bytes,
        data: bytes,
        prio: int,
        bg: bool,
        when: int | None = None,
        reducer: bytes | None = None,
    ) -> None:
        key = data if unique == b"-" else unique
        h = self.keys.get((func, key)) if key else None
        if h is not None:
            job = self.jobs[h]
            if bg:
                job.bg = True
            else:
                # S2: one attachment per submit, also for a connection attached already.
                if c.peer.id in job.clients:
                    event("submit: same connection attached again")
                job.clients.append(c.peer.id)
                c.jobs.append(h)
                c.fg_submits[h] += 1
            self.reply(c, job, bg)
        else:
            h = PREFIX + b"%d" % self.next_handle
            self.next_handle += 1
            job = MJob(h, func, unique, data, key, prio, bg, reducer=reducer, when=when)
            self.jobs[h] = job
            if key:
                self.keys[(func, key)] = h
            if not bg:
                job.clients.append(c.peer.id)
                c.jobs.append(h)
                c.fg_submits[h] += 1
            if bg and self.durable:
                job.state = "COMMITTING"
            self.reply(c, job, bg)
            if job.state != "COMMITTING":
                self.enqueue_new(job)
        self.d_().handle(c.peer, ev)

    # --- peers ---------------------------------------------------------------------

    def new_peer(self, worker: bool) -> MPeer:
        pid = self.next_id
        self.next_id += 1
        p = MPeer(Peer(pid, 100 + pid, "127.0.0.1"), worker)
        self.peers[pid] = p
        self.d_().connect(p.peer)
        return p

    @precondition(lambda self: len(self.live(False)) < 4)
    @rule()
    def connect_client(self) -> None:
        self.new_peer(False)

    @precondition(lambda self: len(self.live(True)) < 4)
    @rule(
        abilities=st.lists(
            st.tuples(st.sampled_from(FUNCS), st.sampled_from([0, 0, 0, 1000, 5000])),
            min_size=1,
            max_size=3,
        )
    )
    def connect_worker(self, abilities: list[tuple[bytes, int]]) -> None:
        w = self.new_peer(True)
        for f, t in abilities:
            self.can_do_(w, f, t)

    def can_do_(self, w: MPeer, f: bytes, t: int) -> None:
        if f not in w.abilities:
            w.funcs.append(f)
        w.abilities[f] = t
        self.d_().handle(w.peer, CanDoTimeout(f, t) if t else CanDo(f))

    @precondition(has_clients)
    @rule(i=st.integers(0, 99), go=st.integers(0, 1))
    def disconnect_client(self, i: int, go: int) -> None:
        if go:
            return
        c = self.pick(False, i)
        c.gone = True
        for h in list(c.jobs):
            job = self.jobs[h]
            job.clients.remove(c.peer.id)
            c.jobs.remove(h)
            if not job.clients and not job.bg and job.state == "QUEUED":
                self.end(job, "client_lost")
        self.d_().disconnect(c.peer)

    @precondition(has_workers)
    @rule(i=st.integers(0, 99))
    def disconnect_worker(self, i: int) -> None:
        w = self.pick(True, i)
        w.gone = True
        for h in list(w.held):
            self.lose_run(self.jobs[h])
        w.abilities.clear()
        w.funcs.clear()
        self.d_().disconnect(w.peer)

    # --- clients -------------------------------------------------------------------

    @precondition(has_clients)
    @rule(
        i=st.integers(0, 99),
        prio=st.integers(0, 2),
        bg=st.booleans(),
        func=st.sampled_from(FUNCS),
        unique=st.sampled_from(UNIQUES),
        data=st.sampled_from(DATAS),
    )
    def submit(self, i: int, prio: int, bg: bool, func: bytes, unique: bytes, data: bytes) -> None:
        c = self.pick(False, i)
        ev = SUBMITS[(prio, bg)](func, unique, data)
        self.do_submit(c, ev, func, unique, data, prio, bg)

    @precondition(lambda self: self.has_clients() and bool(self.keys))
    @rule(i=st.integers(0, 99), j=st.integers(0, 999), prio=st.integers(0, 2), bg=st.booleans())
    def resubmit(self, i: int, j: int, prio: int, bg: bool) -> None:
        """Submit the unique of a live job again, mostly from a connection attached to it
        already: the case S2 counts per submit."""
        (func, key), h = sorted(self.keys.items())[j % len(self.keys)]
        job = self.jobs[h]
        attached = [self.peers[cid] for cid in job.clients if not self.peers[cid].gone]
        c = attached[i % len(attached)] if attached and i % 4 else self.pick(False, i)
        unique, data = (job.unique, job.data) if job.unique == b"-" else (key, DATAS[j % 2])
        ev = SUBMITS[(prio, bg)](func, unique, data)
        self.do_submit(c, ev, func, unique, data, prio, bg)

    @precondition(has_clients)
    @rule(i=st.integers(0, 99), unique=st.sampled_from([*UNIQUES, b"d1", b"nope"]))
    def get_status_unique(self, i: int, unique: bytes) -> None:
        """S13: known, running, the worker's numbers and the attached submits."""
        c = self.pick(False, i)
        exp = StatusResUnique(unique, False, False, 0, 0, 0)
        # The server takes the oldest live job with that unique, in any function (one
        # index lookup, not one per function).
        for (_, key), h in list(self.keys.items()) if unique else ():
            job = self.jobs[h] if key == unique else None
            if job is not None and job.state != "COMMITTING":
                running = job.state == "RUNNING"
                n, d, waiting = job.numerator, job.denominator, len(job.clients)
                exp = StatusResUnique(unique, True, running, n, d, waiting)
                break
        self.send_to(c.peer.id, exp)
        self.d_().handle(c.peer, GetStatusUnique(unique))

    @precondition(has_clients)
    @rule(
        i=st.integers(0, 99),
        func=st.sampled_from(FUNCS),
        unique=st.sampled_from(UNIQUES),
        data=st.sampled_from(DATAS),
        offset=st.integers(-20, 40),
    )
    def submit_epoch(self, i: int, func: bytes, unique: bytes, data: bytes, offset: int) -> None:
        c = self.pick(False, i)
        when = int(self.d_().wall) + offset
        ev = SubmitJobEpoch(func, unique, when, data)
        self.do_submit(c, ev, func, unique, data, 1, True, when=when)

    @precondition(has_clients)
    @rule(
        i=st.integers(0, 99),
        bg=st.booleans(),
        func=st.sampled_from(FUNCS),
        unique=st.sampled_from(UNIQUES),
        data=st.sampled_from(DATAS),
    )
    def submit_reduce(self, i: int, bg: bool, func: bytes, unique: bytes, data: bytes) -> None:
        c = self.pick(False, i)
        cls = SubmitReduceJobBackground if bg else SubmitReduceJob
        ev = cls(func, unique, b"red", b"agg", data)
        self.do_submit(c, ev, func, unique, data, 1, bg, reducer=b"red")

    @precondition(has_clients)
    @rule(i=st.integers(0, 99))
    def option_exceptions(self, i: int) -> None:
        c = self.pick(False, i)
        c.exceptions = True
        self.send_to(c.peer.id, OptionRes(b"exceptions"))
        self.d_().handle(c.peer, OptionReq(b"exceptions"))

    @precondition(lambda self: self.has_clients() and self.jobs)
    @rule(i=st.integers(0, 99), j=st.integers(0, 999))
    def get_status(self, i: int, j: int) -> None:
        c = self.pick(False, i)
        handles = [*self.jobs, b"H:test:999999"]
        h = handles[j % len(handles)]
        job = self.jobs.get(h)
        if job is None or job.state in ("DONE", "COMMITTING"):
            exp = StatusRes(h, False, False, 0, 0)
        else:
            exp = StatusRes(h, True, job.state == "RUNNING", job.numerator, job.denominator)
        self.send_to(c.peer.id, exp)
        self.d_().handle(c.peer, GetStatus(h))

    # --- workers -------------------------------------------------------------------

    @precondition(has_workers)
    @rule(i=st.integers(0, 99), func=st.sampled_from(FUNCS), t=st.sampled_from([0, 0, 2000]))
    def can_do(self, i: int, func: bytes, t: int) -> None:
        w = self.pick(True, i)
        if w.sleeping:
            # A sleeping worker is woken by new jobs only; a CAN_DO while asleep is not a
            # wake-up (as in gearmand), so the model keeps workers awake while they add.
            return
        self.can_do_(w, func, t)

    @precondition(has_workers)
    @rule(i=st.integers(0, 99), func=st.sampled_from(FUNCS))
    def cant_do(self, i: int, func: bytes) -> None:
        w = self.pick(True, i)
        if func in w.abilities:
            del w.abilities[func]
            w.funcs.remove(func)
        for h in [h for h in w.held if self.jobs[h].func == func]:
            self.lose_run(self.jobs[h])
        self.d_().handle(w.peer, CantDo(func))

    @precondition(has_workers)
    @rule(i=st.integers(0, 99))
    def reset_abilities(self, i: int) -> None:
        w = self.pick(True, i)
        w.abilities.clear()
        w.funcs.clear()
        for h in list(w.held):
            self.lose_run(self.jobs[h])
        self.d_().handle(w.peer, ResetAbilities())

    @precondition(has_workers)
    @rule(i=st.integers(0, 99), kind=st.integers(0, 2))
    def grab(self, i: int, kind: int) -> None:
        w = self.pick(True, i)
        job = self.next_job(w)
        if job is None:
            self.send_to(w.peer.id, NoJob())
        else:
            event("grab: assigned")
            job.state = "RUNNING"
            job.worker = w.peer.id
            w.held[job.handle] = None
            t = w.abilities[job.func]
            if t:
                self.seq += 1
                job.deadline = self.d_().now + t / 1000.0
                job.tseq = self.seq
            if kind == 0:
                ev: Event = JobAssign(job.handle, job.func, job.data)
            elif kind == 2 and job.reducer is not None:
                ev = JobAssignAll(job.handle, job.func, job.unique, job.reducer, job.data)
            else:
                ev = JobAssignUniq(job.handle, job.func, job.unique, job.data)
            self.send_to(w.peer.id, ev)
        grab_ev = (GrabJob, GrabJobUniq, GrabJobAll)[kind]()
        self.d_().handle(w.peer, grab_ev)

    grab_again = rule(i=st.integers(0, 99), kind=st.integers(0, 2))(
        precondition(has_workers)(lambda self, i, kind: self.grab(i, kind))
    )

    @precondition(has_workers)
    @rule(i=st.integers(0, 99))
    def pre_sleep(self, i: int) -> None:
        w = self.pick(True, i)
        w.noops_since_sleep = 0
        if self.runnable(w):
            self.send_to(w.peer.id, Noop())
        else:
            w.sleeping = True
        self.d_().handle(w.peer, PreSleep())

    @precondition(lambda self: bool(self.holders()))
    @rule(i=st.integers(0, 99), j=st.integers(0, 99), kind=st.integers(0, 2), n=st.integers(0, 9))
    def work_progress(self, i: int, j: int, kind: int, n: int) -> None:
        w = self.holders()[i % len(self.holders())]
        h = list(w.held)[j % len(w.held)]
        job = self.jobs[h]
        if kind == 0:
            ev: Event = WorkStatus(h, b"%d" % n, b"9")
            job.numerator, job.denominator = n, 9
        elif kind == 1:
            ev = WorkData(h, b"data%d" % n)
        else:
            ev = WorkWarning(h, b"warn%d" % n)
        self.notify(job, lambda c: ev)
        self.d_().handle(w.peer, ev)

    @precondition(lambda self: bool(self.holders()))
    @rule(i=st.integers(0, 99), j=st.integers(0, 99), kind=st.integers(0, 2))
    def work_end(self, i: int, j: int, kind: int) -> None:
        w = self.holders()[i % len(self.holders())]
        h = list(w.held)[j % len(w.held)]
        job = self.jobs[h]
        if kind == 0:
            ev: Event = WorkComplete(h, b"result")
            self.notify(job, lambda c: ev)
        elif kind == 1:
            ev = WorkFail(h)
            self.notify(job, lambda c: ev)
        else:
            ev = WorkException(h, b"boom")
            everyone = self.config.exceptions
            self.notify(job, lambda c: ev if everyone or c.exceptions else WorkFail(h))
        self.end(job, "result")
        self.d_().handle(w.peer, ev)

    @precondition(has_workers)
    @rule(i=st.integers(0, 99), j=st.integers(0, 999), kind=st.integers(0, 5))
    def forged_result(self, i: int, j: int, kind: int) -> None:
        """S8: WORK_* for a handle this worker does not hold changes nothing."""
        w = self.pick(True, i)
        # Mostly a job another worker runs right now: the forgery that would hurt.
        handles = [h for o in self.live(True) if o is not w for h in o.held]
        if not handles or j % 3 == 0:
            handles = [h for h in self.jobs if h not in w.held] + [b"H:other:1"]
        h = handles[j % len(handles)]
        ev = (
            WorkComplete(h, b"forged"),
            WorkFail(h),
            WorkException(h, b"forged"),
            WorkStatus(h, b"1", b"2"),
            WorkData(h, b"forged"),
            WorkWarning(h, b"forged"),
        )[kind]
        self.send_to(w.peer.id, Error(b"JOB_NOT_FOUND", b""))
        d = self.d_()
        before = self.snapshot()
        d.handle(w.peer, ev)
        assert d.take_output() == [w.peer], "a forged result reached another peer"
        assert self.snapshot() == before, "a forged result changed server state"

    def snapshot(self) -> Any:
        d = self.d_()
        return (
            sorted(
                (j.handle, j.state, j.attempts, j.numerator, j.denominator, len(j.clients))
                for j in d.jobs.values()
            ),
            sorted((p.id, sorted(p.held)) for p in d.peers.values()),
            sorted((f.name, tuple(f.counts), f.running) for f in d.funcs.values()),
        )

    # --- admin, time, store ----------------------------------------------------------

    @precondition(lambda self: bool(self.jobs))
    @rule(j=st.integers(0, 999), go=st.integers(0, 2))
    def admin_cancel(self, j: int, go: int) -> None:
        if go:
            return  # rarer than the other rules, or it ends most jobs
        handles = [*self.jobs, b"H:test:999999"]
        h = handles[j % len(handles)]
        job = self.jobs.get(h)
        if job is None or job.state in ("DONE", "COMMITTING"):
            self.admin_expected += b"ERR UNKNOWN_JOB\r\n"
        else:
            self.admin_expected += b"OK\r\n"
            self.notify(job, lambda c: WorkFail(h))
            self.end(job, "cancel")
        self.d_().handle(self.admin, AdminCommand(b"cancel job " + h))

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 10.0, 30.0]))
    def advance(self, dt: float) -> None:
        d = self.d_()
        d.now += dt
        d.wall += dt
        due = sorted(
            (j for j in self.live_jobs() if j.deadline is not None and j.deadline <= d.now),
            key=lambda j: (j.deadline, j.tseq),
        )
        for job in due:
            self.lose_run(job)
        epochs = sorted(
            (
                j
                for j in self.live_jobs()
                if j.state == "SCHEDULED" and j.when is not None and j.when <= d.wall
            ),
            key=lambda j: (j.when, j.eseq),
        )
        for job in epochs:
            self.enqueue(job)
        d.tick()

    @precondition(lambda self: self.durable)
    @rule()
    def store_take(self) -> None:
        batch = self.d_().take_store_batch()
        if self.inflight is not None:
            assert batch is None, "a second batch while one is in flight"
            return
        if batch is None:
            assert not self.cur_replies
            assert not [j for j in self.jobs.values() if j.disk == "cur"]
            return
        assert [r.job.handle for r in batch.replies] == [j.handle for _, j in self.cur_replies]
        self.inflight = self.cur_replies
        self.cur_replies = []
        self.inflight_batch = batch
        for job in self.jobs.values():
            if job.disk == "cur":
                job.disk = "inflight"

    @precondition(lambda self: self.durable and self.inflight is not None)
    @rule(ok=st.sampled_from([True, True, False]))
    def store_done(self, ok: bool) -> None:
        self.store_done_(ok)

    def store_done_(self, ok: bool) -> None:
        assert self.inflight is not None
        assert self.inflight_batch is not None
        batch = self.inflight_batch
        if ok:
            for h in batch.remove:
                self.disk.pop(h, None)
            for h, sj in batch.add.items():
                self.disk[h] = replace(sj)
            for h, n in batch.attempts.items():
                if h in self.disk:
                    self.disk[h] = replace(self.disk[h], attempts=n)
        for job in self.jobs.values():
            if job.disk == "inflight":
                job.disk = "yes" if ok else "no"
        replies, self.inflight, self.inflight_batch = self.inflight, None, None
        for pend, job in replies:
            if ok:
                pend.event = JobCreated(job.handle)
                job.bg_acked = True
                if job.state == "COMMITTING":
                    self.enqueue_new(job)
            else:
                pend.event = STORE_FAILED
                if job.state == "COMMITTING":
                    self.notify(job, lambda c, h=job.handle: WorkFail(h))
                    self.end(job, "store_failed")
        self.d_().store_done(ok)

    # --- checking --------------------------------------------------------------------

    def drain(self) -> None:
        d = self.d_()
        d.take_output()
        for p in self.peers.values():
            data = b"".join(p.peer.out)
            p.peer.out.clear()
            if p.gone:
                assert not data
                continue
            p.decoder.receive_data(data)
            for ev in p.decoder.receive_events():
                p.received.append(ev)
                if isinstance(ev, Noop):
                    p.noops_since_sleep += 1
                if isinstance(ev, TERMINAL):
                    p.terminals[ev.handle] += 1
        self.admin_received += b"".join(self.admin.out)
        self.admin.out.clear()

    @invariant()
    def check(self) -> None:
        if self.d is None:
            return
        self.drain()
        self.check_streams()
        self.check_terminals()
        self.check_s1()
        self.check_s5()
        self.check_state()
        self.check_queues()
        self.check_not_lost()
        self.check_disk()

    def check_streams(self) -> None:
        """Every peer got exactly the packets the model expects, withheld from the first
        uncommitted JOB_CREATED on."""
        for p in self.peers.values():
            if p.gone:
                continue
            ready: list[Event] = []
            for e in p.expected:
                if isinstance(e, Pending):
                    if e.event is None:
                        break
                    ready.append(e.event)
                else:
                    ready.append(e)
            got = [norm(e) for e in p.received]
            want = [norm(e) for e in ready]
            assert got == want, f"peer {p.peer.id}: got {got}, want {want}"
        assert self.admin_received == self.admin_expected

    def check_terminals(self) -> None:
        """Each client gets at most one terminal packet per handle, only for handles it
        got a foreground JOB_CREATED for; one for every ended job it waited on."""
        for p in self.peers.values():
            if p.worker:
                continue
            created = {e.handle for e in p.received if isinstance(e, JobCreated)}
            for h, n in p.terminals.items():
                submits = p.fg_submits[h]
                assert n <= submits, f"client {p.peer.id}: {n} terminals, {submits} submits"
                assert h in created, f"terminal for unknown {h!r}"
            blocked = any(isinstance(e, Pending) and e.event is None for e in p.expected)
            if p.gone or blocked:
                continue
            for h, submits in p.fg_submits.items():
                ended = self.jobs[h].state == "DONE"
                want = submits if ended else 0
                assert p.terminals[h] == want, (p.peer.id, h, self.jobs[h].ended)

    def check_s1(self) -> None:
        """JOB_CREATED (or the store's refusal) comes back in submit order."""
        for p in self.peers.values():
            if p.worker or p.gone:
                continue
            slots = [e for e in p.expected if isinstance(e, (Pending, JobCreated))]
            replies = [
                e
                for e in p.received
                if isinstance(e, JobCreated) or (isinstance(e, Error) and e.code == b"QUEUE_ERROR")
            ]
            assert len(replies) <= len(slots)
            for got, slot in zip(replies, slots, strict=False):
                if isinstance(got, JobCreated):
                    assert got.handle == slot.handle, (p.peer.id, got, slot.handle)
                else:
                    assert isinstance(slot, Pending), (p.peer.id, got)

    def check_s5(self) -> None:
        for p in self.live(True):
            assert p.noops_since_sleep <= 1, f"worker {p.peer.id}: two NOOPs in one sleep"
            if p.sleeping:
                assert not self.runnable(p), f"worker {p.peer.id} sleeps beside a runnable job"

    def check_state(self) -> None:
        """The dispatcher's jobs and workers are the model's."""
        d = self.d_()
        live = {j.handle: j for j in self.live_jobs()}
        assert set(d.jobs) == set(live), (sorted(d.jobs), sorted(live))
        for h, job in d.jobs.items():
            m = live[h]
            assert job.state.name == m.state, (h, job.state, m.state)
            assert (job.worker.id if job.worker else None) == m.worker, h
            assert job.attempts == m.attempts, h
            assert [c.id for c in job.clients] == m.clients, h
            assert job.background == m.bg, h
            assert (job.numerator, job.denominator) == (m.numerator, m.denominator)
        for w in self.live(True):
            assert list(w.peer.held) == list(w.held), w.peer.id
            assert [f.name for f in w.peer.funcs] == w.funcs
            assert w.peer.abilities == w.abilities
            assert w.peer.sleeping == w.sleeping
            assert w.peer.rr == w.rr
        for c in self.live(False):
            assert {j.handle for j in c.peer.jobs} == set(c.jobs)

    def check_queues(self) -> None:
        """Counts, queues, holders and coalescing keys agree with d.jobs (S2, S3)."""
        d = self.d_()
        for f in d.funcs.values():
            waiting = [0, 0, 0]
            running = 0
            for j in d.jobs.values():
                if j.func is not f:
                    continue
                if j.state in (JobState.QUEUED, JobState.SCHEDULED, JobState.COMMITTING):
                    waiting[j.priority] += 1
                elif j.state is JobState.RUNNING:
                    running += 1
            assert f.counts == waiting, (f, f.counts, waiting)
            assert f.running == running, f
            for prio in range(3):
                queued = [j.handle for j in f.queues[prio] if j.state is JobState.QUEUED]
                assert queued == self.queues[(f.name, prio)], (f, prio)
            keys: Counter[bytes] = Counter()
            for j in d.jobs.values():
                key = j.data if j.unique == b"-" else j.unique
                if j.func is f and key:
                    keys[key] += 1
                    assert d.scheduler.uniques.get(key, f) is j
            assert all(n == 1 for n in keys.values()), "S2: two live jobs share a key"
        # The unique index holds live jobs only, each under its own key.
        for key, j in d.scheduler.uniques:
            assert j.state is not JobState.DONE
            assert d.jobs.get(j.handle) is j
            assert key == (j.data if j.unique == b"-" else j.unique)
        for j in d.jobs.values():
            assert j.state is not JobState.DONE
            if j.state is JobState.QUEUED:
                assert any(q is j for q in j.func.queues[j.priority])
            holders = [p for p in d.peers.values() if p.held.get(j.handle) is j]
            if j.state is JobState.RUNNING:
                assert holders == [j.worker], j
            else:
                assert holders == [], j

    def check_not_lost(self) -> None:
        """Acknowledged work is still known, or ended for a reason the spec allows."""
        d = self.d_()
        for job in self.jobs.values():
            acked = job.bg_acked or any(
                not self.peers[c].gone and job.handle in self.peers[c].fg_submits
                for c in job.clients
            )
            if job.handle in d.jobs:
                continue
            if job.bg_acked:
                assert job.ended in ("result", "exhausted", "cancel"), (job.handle, job.ended)
            elif acked:
                assert job.ended in ("result", "exhausted", "cancel", "store_failed")

    def check_disk(self) -> None:
        """S19: a live job whose background JOB_CREATED went out is on disk."""
        if not self.durable:
            return
        for job in self.live_jobs():
            if job.bg_acked:
                assert job.handle in self.disk, f"{job.handle!r} acknowledged, not stored"

    def teardown(self) -> None:
        if self.d is None:
            return
        event(f"jobs submitted: {min(len(self.jobs) // 5 * 5, 20)}+")
        d = self.d
        if self.durable:
            for _ in range(10):
                if self.inflight is not None:
                    self.store_done_(True)
                self.store_take()
                if self.inflight is None:
                    break
            self.drain()
            self.check_streams()
            assert not d.has_store_work()
            stored = {h for h, j in d.jobs.items() if j.stored}
            assert set(self.disk) == stored, (sorted(self.disk), sorted(stored))
            for h in stored:
                assert self.disk[h].attempts == d.jobs[h].attempts
        # Every client still connected got exactly one terminal per foreground submit of
        # an ended job, and none for a live one.
        for p in self.live(False):
            for h, submits in p.fg_submits.items():
                job = self.jobs[h]
                if job.state == "DONE":
                    assert p.terminals[h] == submits, (p.peer.id, h, job.ended)
                else:
                    assert p.terminals[h] == 0


DispatcherModel.TestCase.settings = settings(
    max_examples=1000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDispatcherModel = DispatcherModel.TestCase
