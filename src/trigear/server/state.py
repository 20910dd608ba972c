"""The records the dispatcher keeps: jobs, functions and peers.

Plain classes with ``__slots__``: the server keeps one :class:`JobRecord` per queued job, and a
million queued jobs must fit in far less memory than gearmand needs for them, so a job
holds only what the protocol needs and shares its function record.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .noqueue import NO_JOBS
from .tally import FuncTally

if TYPE_CHECKING:
    from ..protocol.packets import Priority
    from .acl import Grants

__all__ = ["NO_JOBS", "Func", "JobExtras", "JobRecord", "JobState", "Peer", "PendingReply"]


class JobState(enum.IntEnum):
    #: A background submit waits for the store's commit; not yet runnable (S19).
    COMMITTING = 0
    #: An epoch job waiting for its time (S15).
    SCHEDULED = 1
    QUEUED = 2
    RUNNING = 3
    DONE = 4


#: Looked up once (an enum member lookup is slow on the hot path; see scheduler.py).
_QUEUED = JobState.QUEUED
#: The bits of ``JobRecord._flags``.
_BACKGROUND = 1
_STORED = 2


class JobRecord:
    """One live job, known by its handle.

    Twelve slots (128 bytes in pure Python; a thirteenth would make it 144): a queued job
    costs its record, its key, unique and payload, and its entries in the job and unique
    indexes (docs/performance.md counts them).  What few jobs have -- a reducer, an epoch
    time, an owner, progress, a lost run -- lives in a :class:`JobExtras` made on first
    use, behind properties of the same names.
    """

    __slots__ = (
        "_extras",
        "_flags",
        "clients",
        "data",
        "func",
        "key",
        "priority",
        "run_id",
        "since",
        "state",
        "unique",
        "worker",
    )

    def __init__(
        self,
        key: int | bytes,
        func: Func,
        unique: bytes,
        data: bytes,
        priority: Priority,
        background: bool,
    ) -> None:
        #: Its key in the job index (:mod:`trigear.server.jobindex`): the number of a
        #: handle this server made, else the handle itself.
        self.key = key
        self.func = func
        self.unique = unique
        self.data = data
        self.priority = priority
        #: :attr:`background` and :attr:`stored`, as bits of one int.
        self._flags = _BACKGROUND if background else 0
        #: The foreground submits waiting for the result, as their connections, in
        #: submit order: one entry per submit, so a connection that submitted the same
        #: unique twice is in it twice and gets every WORK_* packet twice (S2, S6).  A
        #: shared empty tuple until the first one attaches: most queued jobs are
        #: background jobs, and an empty list would cost 56 bytes each.
        self.clients: list[Peer] | tuple[()] = ()
        self.worker: Peer | None = None
        self.state = _QUEUED
        #: Counts runs, so a timer set for one run does not fire on the next (S11).
        self.run_id = 0
        #: Monotonic seconds since it is queued, or running (the time histograms of
        #: :mod:`trigear.server.tally`).
        self.since = 0.0
        self._extras: JobExtras | None = None

    @property
    def handle(self) -> bytes:
        """The job handle, made from the key when it is a number."""
        key = self.key
        if isinstance(key, bytes):
            return key
        return self.func.handle_prefix + b"%d" % key

    @property
    def background(self) -> bool:
        """True once any background submit touched the job: never dropped for client
        loss (S12)."""
        return bool(self._flags & _BACKGROUND)

    @background.setter
    def background(self, value: bool) -> None:
        self._flags = self._flags | _BACKGROUND if value else self._flags & ~_BACKGROUND

    @property
    def stored(self) -> bool:
        """The job is (or is being) written to a durable store."""
        return bool(self._flags & _STORED)

    @stored.setter
    def stored(self, value: bool) -> None:
        self._flags = self._flags | _STORED if value else self._flags & ~_STORED

    def _more(self) -> JobExtras:
        extras = self._extras
        if extras is None:
            extras = self._extras = JobExtras()
        return extras

    @property
    def reducer(self) -> bytes | None:
        """SUBMIT_REDUCE_JOB's reducer, else None."""
        return None if self._extras is None else self._extras.reducer

    @reducer.setter
    def reducer(self, value: bytes | None) -> None:
        if value is not None or self._extras is not None:
            self._more().reducer = value

    @property
    def when(self) -> int | None:
        """SUBMIT_JOB_EPOCH's unix time to run at, else None (S15)."""
        return None if self._extras is None else self._extras.when

    @when.setter
    def when(self, value: int | None) -> None:
        if value is not None or self._extras is not None:
            self._more().when = value

    @property
    def owner(self) -> str | None:
        """The identity that submitted it, set only under an access control list."""
        return None if self._extras is None else self._extras.owner

    @owner.setter
    def owner(self, value: str | None) -> None:
        if value is not None or self._extras is not None:
            self._more().owner = value

    @property
    def attempts(self) -> int:
        """Runs lost so far (S9, S10)."""
        return 0 if self._extras is None else self._extras.attempts

    @attempts.setter
    def attempts(self, value: int) -> None:
        if value or self._extras is not None:
            self._more().attempts = value

    @property
    def numerator(self) -> int:
        """The last WORK_STATUS's numerator (0 before one)."""
        return 0 if self._extras is None else self._extras.numerator

    @numerator.setter
    def numerator(self, value: int) -> None:
        if value or self._extras is not None:
            self._more().numerator = value

    @property
    def denominator(self) -> int:
        """The last WORK_STATUS's denominator (0 before one)."""
        return 0 if self._extras is None else self._extras.denominator

    @denominator.setter
    def denominator(self, value: int) -> None:
        if value or self._extras is not None:
            self._more().denominator = value

    def __repr__(self) -> str:
        return f"<JobRecord {self.handle!r} {self.func.name!r} {self.state.name}>"


class JobExtras:
    """The fields of a :class:`JobRecord` that most jobs never set, made on first use."""

    __slots__ = ("attempts", "denominator", "numerator", "owner", "reducer", "when")

    def __init__(self) -> None:
        self.reducer: bytes | None = None
        self.when: int | None = None
        self.owner: str | None = None
        self.attempts = 0
        self.numerator = 0
        self.denominator = 0


class Func:
    """A function name and everything queued for it.

    Kept small (about 0.5 KB without jobs): a server may see many one-off names, and a
    record with no workers, no jobs and no ``maxqueue`` setting is freed.
    """

    __slots__ = (
        "counts",
        "handle_prefix",
        "indexed",
        "maxqueue",
        "name",
        "queues",
        "running",
        "sleepers",
        "tally",
        "workers",
    )

    def __init__(
        self, name: bytes, tally: FuncTally | None = None, *, handle_prefix: bytes = b""
    ) -> None:
        self.name = name
        #: What it did, for the metrics (:mod:`trigear.server.tally`).
        self.tally = tally or FuncTally()
        #: The handle prefix of the server it belongs to, for its jobs' handles.
        self.handle_prefix = handle_prefix
        #: One FIFO per priority (HIGH, NORMAL, LOW: indexed by Priority), the shared
        #: empty :data:`NO_JOBS` until a job is queued there.  Entries whose job is no
        #: longer QUEUED are dropped lazily when they reach the head.
        self.queues: list[deque[JobRecord]] = [NO_JOBS, NO_JOBS, NO_JOBS]
        #: Jobs waiting to run, per priority (queued or scheduled), indexed by Priority.
        self.counts = [0, 0, 0]
        self.running = 0
        #: Connections that can do this function, in CAN_DO order.
        self.workers: dict[Peer, None] = {}
        #: Of those, the ones asleep after PRE_SLEEP, oldest first (S5).
        self.sleepers: dict[Peer, None] = {}
        #: Of those, the ones with many functions, which find work through their
        #: ``Peer.ready`` index: told when a queue of this function gets a job.
        #: A list, not a dict: usually one or two, and a dict would cost 200 bytes more
        #: on each function of a worker with many.
        self.indexed: list[Peer] | None = None
        #: maxqueue limit per priority, indexed by Priority; 0 is unlimited (S18).
        self.maxqueue = (0, 0, 0)

    def queue(self, prio: int) -> deque[JobRecord]:
        """The queue of priority ``prio`` to append to (made on first use)."""
        q = self.queues[prio]
        if q is NO_JOBS:
            q = self.queues[prio] = deque()
        return q

    @property
    def total(self) -> int:
        """Queued plus running, as the admin ``status`` counts."""
        return self.counts[0] + self.counts[1] + self.counts[2] + self.running

    def __repr__(self) -> str:
        return f"<Func {self.name!r}>"


@dataclass(eq=False, slots=True)
class PendingReply:
    """A reply held back until the store has committed the job it acknowledges (S1, S19).

    Output for the same peer produced meanwhile waits in ``after`` so that replies keep
    the order of the requests.
    """

    job: JobRecord
    peer: Peer
    ready: bool = False
    reply: bytes = b""
    after: list[bytes] = field(default_factory=list)


class Peer:
    """One connection, seen from the dispatcher: a client, a worker, an admin, or all."""

    __slots__ = (
        "abilities",
        "certificate",
        "client_id",
        "closing",
        "cut",
        "exceptions",
        "fd",
        "funcs",
        "gone",
        "grants",
        "held",
        "id",
        "identity",
        "ip",
        "jobs",
        "loopback",
        "order",
        "out",
        "ready",
        "rr",
        "sleeping",
        "unread",
        "waiting",
    )

    def __init__(
        self,
        peer_id: int,
        fd: int,
        ip: str,
        loopback: bool = True,
        certificate: tuple[str, ...] = (),
    ) -> None:
        self.id = peer_id
        self.fd = fd
        self.ip = ip
        self.loopback = loopback
        #: The names of its TLS client certificate (:mod:`trigear.server.tls`), if any.
        self.certificate = certificate
        #: Who it is (:mod:`trigear.server.acl`): its certificate's first name, else the
        #: name for where it connects from.  Logs show it; the jobs it submits are its.
        self.identity = certificate[0] if certificate else ("loopback" if loopback else "anonymous")
        #: What the access control list lets it do; None without one.
        self.grants: Grants | None = None
        self.client_id = b"-"
        #: Function name -> CAN_DO_TIMEOUT in milliseconds (0: none), in CAN_DO order.
        self.abilities: dict[bytes, int] = {}
        #: The same functions' records, in CAN_DO order, for grabbing without lookups.
        self.funcs: dict[Func, None] = {}
        #: ``funcs`` as a list, for round-robin grabs; None after a change (rebuilt on
        #: the next grab).
        self.order: list[Func] | None = None
        #: For a worker with many functions: per priority, its functions that may have
        #: a job queued at that priority (entries found empty are dropped when looked
        #: at), so a grab costs the work it finds, not the number of its functions.
        #: None for a worker with few, which looks at each of them.
        self.ready: tuple[dict[Func, None], dict[Func, None], dict[Func, None]] | None = None
        #: Round-robin start among ``funcs`` (S3 fairness).
        self.rr = 0
        self.sleeping = False
        self.exceptions = False
        #: Jobs assigned to this connection as a worker, by handle.
        self.held: dict[bytes, JobRecord] = {}
        #: Foreground jobs this connection waits on as a client (once each, however
        #: many of its submits are attached to one).
        self.jobs: set[JobRecord] = set()
        #: Encoded output not yet handed to the writer.
        self.out: list[bytes] = []
        #: Replies held for the store's commit, oldest first: a list (a few at most;
        #: an empty deque would cost 700 bytes more on every connection).
        self.waiting: list[PendingReply] = []
        #: Close after the pending output is written (an unrecoverable protocol error).
        self.closing = False
        #: Bytes produced for it that the kernel has not taken yet: in ``out``, held
        #: behind a reply, or queued for its writer (:mod:`trigear.server.output`).
        self.unread = 0
        #: Over its output limit: nothing more is produced for it, and it is closed.
        self.cut = False
        self.gone = False

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.ip} {self.client_id!r}>"
