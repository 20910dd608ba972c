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

from .tally import FuncTally

if TYPE_CHECKING:
    from ..protocol.packets import Priority
    from .acl import Grants

__all__ = ["Func", "JobRecord", "JobState", "Peer", "PendingReply"]


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


class JobRecord:
    """One live job, known by its handle."""

    __slots__ = (
        "attempts",
        "background",
        "clients",
        "data",
        "denominator",
        "func",
        "handle",
        "numerator",
        "owner",
        "priority",
        "reducer",
        "run_id",
        "since",
        "state",
        "stored",
        "unique",
        "when",
        "worker",
    )

    def __init__(
        self,
        handle: bytes,
        func: Func,
        unique: bytes,
        data: bytes,
        priority: Priority,
        background: bool,
    ) -> None:
        self.handle = handle
        self.func = func
        self.unique = unique
        self.data = data
        self.priority = priority
        #: True once any background submit touched the job: never dropped for client
        #: loss (S12).
        self.background = background
        self.reducer: bytes | None = None
        self.when: int | None = None
        self.attempts = 0
        #: The foreground submits waiting for the result, as their connections, in
        #: submit order: one entry per submit, so a connection that submitted the same
        #: unique twice is in it twice and gets every WORK_* packet twice (S2, S6).  A
        #: shared empty tuple until the first one attaches: most queued jobs are
        #: background jobs, and an empty list would cost 56 bytes each.
        self.clients: list[Peer] | tuple[()] = ()
        self.worker: Peer | None = None
        self.state = _QUEUED
        self.numerator = 0
        self.denominator = 0
        #: The job is (or is being) written to a durable store.
        self.stored = False
        #: Counts runs, so a timer set for one run does not fire on the next (S11).
        self.run_id = 0
        #: The identity that submitted it, set only under an access control list.
        self.owner: str | None = None
        #: Monotonic seconds since it is queued, or running (the time histograms of
        #: :mod:`trigear.server.tally`).
        self.since = 0.0

    def __repr__(self) -> str:
        return f"<JobRecord {self.handle!r} {self.func.name!r} {self.state.name}>"


class Func:
    """A function name and everything queued for it."""

    __slots__ = (
        "counts",
        "maxqueue",
        "name",
        "queues",
        "running",
        "sleepers",
        "tally",
        "uniques",
        "workers",
    )

    def __init__(self, name: bytes, tally: FuncTally | None = None) -> None:
        self.name = name
        #: What it did, for the metrics (:mod:`trigear.server.tally`).
        self.tally = tally or FuncTally()
        #: One FIFO per priority (HIGH, NORMAL, LOW: indexed by Priority).  Entries whose
        #: job is no longer QUEUED are dropped lazily when they reach the head.
        self.queues: tuple[deque[JobRecord], deque[JobRecord], deque[JobRecord]] = (
            deque(),
            deque(),
            deque(),
        )
        #: Jobs waiting to run, per priority (queued or scheduled), indexed by Priority.
        self.counts = [0, 0, 0]
        self.running = 0
        #: Live jobs with a non-empty unique, by coalescing key (S2).
        self.uniques: dict[bytes, JobRecord] = {}
        #: Connections that can do this function, in CAN_DO order.
        self.workers: dict[Peer, None] = {}
        #: Of those, the ones asleep after PRE_SLEEP, oldest first (S5).
        self.sleepers: dict[Peer, None] = {}
        #: maxqueue limit per priority, indexed by Priority; 0 is unlimited (S18).
        self.maxqueue = (0, 0, 0)

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
        "out",
        "rr",
        "sleeping",
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
        #: The same functions' records, for grabbing without lookups.
        self.funcs: list[Func] = []
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
        self.waiting: deque[PendingReply] = deque()
        #: Close after the pending output is written (an unrecoverable protocol error).
        self.closing = False
        self.gone = False

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.ip} {self.client_id!r}>"
