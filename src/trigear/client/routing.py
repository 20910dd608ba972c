"""Matching what one server sends to the client calls waiting for it.

Gearman answers carry no request id, so the client matches them by two rules (spec S1,
S13, S14), kept here and nowhere else:

* **In-order answers.**  JOB_CREATED, ECHO_RES, STATUS_RES, STATUS_RES_UNIQUE,
  OPTION_RES and ERROR come back in the order the requests went out on the connection.
  A :class:`Session` keeps a FIFO of :class:`Waiter` entries, appended in the same
  synchronous step that queues the request, and pops one per answer.  An answer of the
  wrong type means the two sides are out of step: the connection is closed, since
  nothing after that can be trusted.  One exception: the OPTION_REQ a connection opens
  with is *optional* (python gear's server, geard, never answers it), so its entry
  steps aside for an answer that is not its own.
* **WORK_* by handle.**  Once JOB_CREATED names a foreground job's handle, its
  :class:`Submission` is registered under it; WORK_DATA, WORK_WARNING and WORK_STATUS
  are appended to it and WORK_COMPLETE, WORK_FAIL and WORK_EXCEPTION end it.  Several
  submits of one unique on one connection share a handle (spec S2): each is registered,
  and each gets every packet.

A caller that gives up (cancelled, or leaving a stream early) must not unbalance either
rule.  Its FIFO entry stays, marked *abandoned*, and still takes its answer, so later
calls stay matched; a JOB_CREATED taken by an abandoned entry registers nothing.  A
submit abandoned after JOB_CREATED is unregistered at once (:meth:`Session.forget`), so
nothing the session routes outlives the calls that wait for it.

Routing is synchronous: :meth:`Session.on_events` is the connection's reader callback
(:class:`~trigear.client.connection.Connection`), so answers are matched in the order
the server sent them and a JOB_CREATED is always routed before the WORK_* that follow it.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final

import anyio

from ..protocol import packets as P
from .errors import ConnectionLost, GearmanError, JobException, JobFailed, ServerError
from .updates import DataUpdate, StatusUpdate, Update, WarningUpdate

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["ANSWER_TO", "Session", "Submission", "Waiter"]

#: The in-order answer each request without a job expects (besides ERROR).
ANSWER_TO: Final[dict[type[Any], type[Any]]] = {
    P.EchoReq: P.EchoRes,
    P.GetStatus: P.StatusRes,
    P.GetStatusUnique: P.StatusResUnique,
    P.OptionReq: P.OptionRes,
}

#: The packets answered in order (everything else is routed by handle, or ignored).
_IN_ORDER: Final = frozenset(
    {P.JobCreated, P.EchoRes, P.StatusRes, P.StatusResUnique, P.OptionRes, P.Error}
)


def _number(value: bytes) -> int:
    return int(value) if value.isdigit() else 0


class Waiter:
    """A call waiting for the in-order answer to its request (or an abandoned one)."""

    __slots__ = ("abandoned", "changed", "error", "expect", "optional", "value")

    def __init__(self, expect: type[Any], *, optional: bool = False) -> None:
        self.expect = expect
        self.changed = anyio.Event()
        self.value: Any = None
        self.error: GearmanError | None = None
        self.abandoned = False
        #: The request may go unanswered (OPTION_REQ: python gear's geard ignores it).
        #: Such a waiter takes only its own answer, or an ERROR ``UNKNOWN_OPTION``;
        #: anything else shows the server never answered it, and it steps aside.
        self.optional = optional

    def takes(self, event: Any) -> bool:
        """Whether ``event`` is the answer of an optional request."""
        cls = type(event)
        if cls is P.Error:
            return bool(event.code.upper() == b"UNKNOWN_OPTION")
        return cls is self.expect

    def answer(self, event: Any, session: Session) -> None:
        if type(event) is P.Error:
            self.error = ServerError(event.code, event.text)
        else:
            self.value = event
        self.changed.set()

    def lost(self, error: ConnectionLost) -> None:
        self.error = error
        self.changed.set()

    @property
    def settled(self) -> bool:
        return self.value is not None or self.error is not None

    async def wait(self) -> Any:
        """The answer; raise the ERROR it was, or the :class:`ConnectionLost`."""
        try:
            await self.changed.wait()
        except BaseException:
            self.abandoned = True
            raise
        if self.error is not None:
            raise self.error
        return self.value


class Submission(Waiter):
    """A submit: first waits for JOB_CREATED, then (foreground) for the job to end."""

    __slots__ = ("background", "created", "handle", "outcome", "updates")

    def __init__(self, *, background: bool, stream: bool) -> None:
        super().__init__(P.JobCreated)
        self.background = background
        self.handle: bytes | None = None
        self.created = False
        #: ("complete", data) / ("fail", b"") / ("exception", data), once the job ended.
        self.outcome: tuple[str, bytes] | None = None
        self.updates: deque[Update] | None = deque() if stream else None

    def answer(self, event: Any, session: Session) -> None:
        if type(event) is P.Error:
            self.error = ServerError(event.code, event.text)
            self.changed.set()
            return
        self.handle = event.handle
        self.created = True
        if self.abandoned:
            return  # its caller left: register nothing, so the job's WORK_* are dropped
        if self.background:
            self.value = event.handle
        else:
            session.follow(self)
        self.changed.set()

    def update(self, item: Update) -> None:
        if self.updates is not None:
            self.updates.append(item)
            self.changed.set()

    def finish(self, kind: str, data: bytes) -> None:
        self.outcome = (kind, data)
        self.changed.set()

    @property
    def settled(self) -> bool:
        return self.outcome is not None or self.error is not None

    def result(self) -> bytes:
        """The job's result, or raise why it has none."""
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        assert self.handle is not None
        kind, data = self.outcome
        if kind == "complete":
            return data
        if kind == "exception":
            raise JobException(self.handle, data)
        raise JobFailed(self.handle)

    async def next_change(self) -> None:
        self.changed = anyio.Event()
        await self.changed.wait()


class Session:
    """The client's session with one server: its :class:`Connection` (the transport) and
    the routing state that matches what the server sends to the calls waiting for it."""

    __slots__ = ("conn", "jobs", "pending")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: Calls waiting for an in-order answer, oldest first (abandoned ones included).
        self.pending: deque[Waiter] = deque()
        #: Foreground jobs by handle: the submits following each.
        self.jobs: dict[bytes, list[Submission]] = {}

    # -- what calls do --

    def request(self, waiter: Waiter, packet: bytes) -> None:
        """Queue a request and its FIFO entry together (no await between them)."""
        self.conn.send(packet)
        self.pending.append(waiter)

    def follow(self, job: Submission) -> None:
        """Route the WORK_* of ``job``'s handle to it (on its JOB_CREATED)."""
        assert job.handle is not None
        self.jobs.setdefault(job.handle, []).append(job)

    def forget(self, job: Submission) -> None:
        """Stop routing anything to ``job``: its caller gave up.  Before JOB_CREATED its
        FIFO entry stays, abandoned; after, its handle is unregistered now."""
        job.abandoned = True
        if job.handle is None:
            return
        followers = self.jobs.get(job.handle)
        if followers is not None and job in followers:
            followers.remove(job)
            if not followers:
                del self.jobs[job.handle]

    async def wait(self, job: Submission, *, until_created: bool) -> None:
        """Wait until ``job`` ended or failed (or, with ``until_created``, until its
        JOB_CREATED); if the caller is cancelled meanwhile, :meth:`forget` it."""
        try:
            while not (job.settled or (until_created and job.created)):
                await job.next_change()
        except BaseException:
            self.forget(job)
            raise

    # -- what the server sends --

    def on_events(self, events: list[Any]) -> None:
        """Route a batch the reader decoded (synchronous: the reader's callback)."""
        jobs = self.jobs
        for ev in events:
            cls = type(ev)
            if cls is P.WorkComplete:
                self._end(ev.handle, "complete", ev.data)
            elif cls is P.WorkFail:
                # gearmand 1.1.20 leaves a NUL after the handle.
                self._end(ev.handle.partition(b"\0")[0], "fail", b"")
            elif cls is P.WorkException:
                self._end(ev.handle, "exception", ev.data)
            elif cls is P.WorkData or cls is P.WorkWarning or cls is P.WorkStatus:
                followers = jobs.get(ev.handle)
                if followers is None:
                    continue
                item: Update
                if cls is P.WorkData:
                    item = DataUpdate(ev.data)
                elif cls is P.WorkWarning:
                    item = WarningUpdate(ev.data)
                else:
                    item = StatusUpdate(_number(ev.numerator), _number(ev.denominator))
                for job in followers:
                    job.update(item)
            elif cls in _IN_ORDER and not self._answer(ev):
                return  # out of step: the connection is closing
            # NOOP, NO_JOB and JOB_ASSIGN* are for workers; a client ignores them.

    def _answer(self, ev: Any) -> bool:
        """Hand an in-order answer to the oldest waiter; False if out of step."""
        cls = type(ev)
        if not self.pending:
            self.conn.close(f"unexpected {cls.__name__} from the server")
            return False
        waiter = self.pending[0]
        if waiter.optional and not waiter.takes(ev):
            # The server does not answer this request at all: the answer is the next's.
            self.pending.popleft()
            waiter.lost(ConnectionLost(f"{self.conn.address}: no answer to {waiter.expect}"))
            return self._answer(ev)
        if cls is not P.Error and cls is not waiter.expect:
            # Out of step with the server: nothing after this can be trusted.
            self.conn.close(f"got {cls.__name__} where {waiter.expect.__name__} was due")
            return False
        self.pending.popleft()
        waiter.answer(ev, self)
        return True

    def _end(self, handle: bytes, kind: str, data: bytes) -> None:
        followers = self.jobs.pop(handle, None)
        if followers is not None:
            for job in followers:
                job.finish(kind, data)

    def lost(self, error: ConnectionLost) -> None:
        """The connection ended: every call still waiting gets ``error``."""
        pending, self.pending = self.pending, deque()
        for waiter in pending:
            waiter.lost(error)
        jobs, self.jobs = self.jobs, {}
        for followers in jobs.values():
            for job in followers:
                job.lost(error)

    # -- counters --

    @property
    def followed(self) -> int:
        """Submits whose job's WORK_* are routed to them."""
        return sum(len(followers) for followers in self.jobs.values())
