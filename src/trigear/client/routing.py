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
* **WORK_* by handle, one copy per submit.**  Once JOB_CREATED names a foreground job's
  handle, its :class:`Submission` takes a *slot* under that handle; WORK_DATA,
  WORK_WARNING and WORK_STATUS are appended to it and WORK_COMPLETE, WORK_FAIL and
  WORK_EXCEPTION end it.  Several submits of one unique on one connection share a handle
  (spec S2), and the server attaches the connection once per submit: it sends every
  packet once per submit, all copies of one packet before the next packet (gearmand,
  the Perl server, trigear).  So the i-th copy of each packet goes to the i-th slot, in
  JOB_CREATED order, and each submit gets exactly its own copy.

A caller that gives up (cancelled, or leaving a stream early) must not unbalance either
rule.  Its FIFO entry stays, marked *abandoned*, and still takes its answer, so later
calls stay matched.  Its slot stays too, empty, for as long as the server sends it
copies, that is until the job ends (or the connection does): a JOB_CREATED taken by an
abandoned entry takes an empty slot, and a submit abandoned after JOB_CREATED empties
its slot (:meth:`Session.forget`).  An empty slot swallows its copies, so a later submit
of the same unique still gets exactly one of each, and the caller's own state (a
stream's unread updates) is dropped at once.

**Servers that send one copy per connection.**  The copies of one packet always arrive
together.  So when anything else arrives while a packet still owes copies to later
slots, the server is one that attaches a connection once, whatever the number of
submits (as trigear's own server did before it followed S2).  The session then gives
that packet to the remaining slots, and from then on every packet to every slot of its
handle (:attr:`Session.one_copy`).  If a read ends while a packet still owes copies, the
session sends an ECHO_REQ: its answer comes after every copy the server made before it,
so it settles the question even when nothing else would arrive.  Until the session
knows, identical packets in a row from such a server pass for one packet's copies: the
only case where a submit can miss an update.

Routing is synchronous: :meth:`Session.on_events` is the connection's reader callback
(:class:`~trigear.client.connection.Connection`), so answers are matched in the order
the server sent them and a JOB_CREATED is always routed before the WORK_* that follow it.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import anyio

from ..protocol import encode_request
from ..protocol import packets as P
from .errors import ConnectionLost, GearmanError, JobException, JobFailed, ServerError
from .updates import DataUpdate, StatusUpdate, Update, WarningUpdate

if TYPE_CHECKING:
    from collections.abc import Callable

    from .connection import Connection

__all__ = ["ANSWER_TO", "Session", "Submission", "Waiter"]

_PROBE: Final = encode_request(P.EchoReq(b"trigear: copies"))

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
        if self.background:
            self.value = event.handle
        else:
            # The server sends this submit its copy of each WORK_*: take its slot, an
            # empty one if the caller left, which swallows them.
            session.follow(event.handle, None if self.abandoned else self)
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


# What a submit does with its copy of each WORK_* packet, and whether the packet ends the
# job: one table lookup and one call per packet on the routing's hot path.


def _data(job: Submission, ev: Any) -> None:
    job.update(DataUpdate(ev.data))


def _warning(job: Submission, ev: Any) -> None:
    job.update(WarningUpdate(ev.data))


def _status(job: Submission, ev: Any) -> None:
    job.update(StatusUpdate(_number(ev.numerator), _number(ev.denominator)))


def _complete(job: Submission, ev: Any) -> None:
    job.finish("complete", ev.data)


def _fail(job: Submission, ev: Any) -> None:
    job.finish("fail", b"")


def _exception(job: Submission, ev: Any) -> None:
    job.finish("exception", ev.data)


_WORK: Final[dict[type[Any], tuple[Callable[[Submission, Any], None], bool]]] = {
    P.WorkData: (_data, False),
    P.WorkWarning: (_warning, False),
    P.WorkStatus: (_status, False),
    P.WorkComplete: (_complete, True),
    P.WorkFail: (_fail, True),
    P.WorkException: (_exception, True),
}


class _Probe(Waiter):
    """The ECHO_REQ that tells whether a packet's missing copies are still coming (see
    the module docstring); nobody waits for it."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(P.EchoRes)
        self.abandoned = True

    def answer(self, event: Any, session: Session) -> None:
        session._probing = False


#: The submits of one connection attached to one job, in JOB_CREATED order; None for a
#: caller that gave up.
_Slots = list["Submission | None"]


class Session:
    """The client's session with one server: its :class:`Connection` (the transport) and
    the routing state that matches what the server sends to the calls waiting for it."""

    __slots__ = ("_probing", "_run", "_turns", "conn", "jobs", "one_copy", "pending")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        #: Calls waiting for an in-order answer, oldest first (abandoned ones included).
        self.pending: deque[Waiter] = deque()
        #: Foreground jobs by handle: the slots of the submits attached to each.
        self.jobs: dict[bytes, _Slots] = {}
        #: The server sends one copy of each WORK_* per connection, not per submit.
        self.one_copy = False
        #: Of a handle with several slots, the slot the next copy of a packet goes to,
        #: while it is not the first.
        self._turns: dict[bytes, int] = {}
        #: A packet that still owes copies to later slots: (its slots, it).
        self._run: tuple[_Slots, Any] | None = None
        #: An ECHO_REQ asking about missing copies is out.
        self._probing = False

    # -- what calls do --

    def request(self, waiter: Waiter, packet: bytes) -> None:
        """Queue a request and its FIFO entry together (no await between them)."""
        self.conn.send(packet)
        self.pending.append(waiter)

    def follow(self, handle: bytes, job: Submission | None) -> None:
        """A foreground submit got JOB_CREATED: give it the next slot of ``handle`` (an
        empty one, None, if its caller left)."""
        slots = self.jobs.get(handle)
        if slots is None:
            self.jobs[handle] = [job]
        else:
            slots.append(job)

    def forget(self, job: Submission) -> None:
        """Stop routing anything to ``job``: its caller gave up.  Before JOB_CREATED its
        FIFO entry stays, abandoned; after, its slot is emptied now."""
        job.abandoned = True
        if job.handle is None:
            return
        slots = self.jobs.get(job.handle)
        if slots is not None:
            for i, s in enumerate(slots):
                if s is job:
                    slots[i] = None
                    break

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
            run = self._run
            if run is not None and (cls is not type(run[1]) or ev != run[1]):
                self._one_copy_only(run)
            work = _WORK.get(cls)
            if work is None:
                if cls in _IN_ORDER and not self._answer(ev):
                    return  # out of step: the connection is closing
                # NOOP, NO_JOB and JOB_ASSIGN* are for workers; a client ignores them.
                continue
            slots = jobs.get(ev.handle)
            if slots is None:
                continue  # a job no call here follows (or one whose copies all came)
            if len(slots) == 1:  # the usual case: one submit, one copy
                job = slots[0]
                if job is not None:
                    work[0](job, ev)
                if work[1]:
                    del jobs[ev.handle]
            else:
                self._route(slots, ev, work)
        if self._run is not None and not self._probing:
            # The read ended between copies: find out whether the rest are coming.
            self._probing = True
            with contextlib.suppress(ConnectionLost):  # gone: lost() follows
                self.request(_Probe(), _PROBE)

    def _route(
        self, slots: _Slots, ev: Any, work: tuple[Callable[[Submission, Any], None], bool]
    ) -> None:
        """Give a WORK_* packet of a handle with several submits to the slot whose copy it
        is (or to every slot, from a server that sends one copy per connection)."""
        take, ends = work
        handle = ev.handle
        if self.one_copy:
            for job in slots:
                if job is not None:
                    take(job, ev)
            if ends:
                del self.jobs[handle]
            return
        i = self._turns.pop(handle, 0)
        job = slots[i]
        if job is not None:
            take(job, ev)
        i += 1
        if i < len(slots):
            self._turns[handle] = i
            self._run = (slots, ev)
            return
        self._run = None
        if ends:
            del self.jobs[handle]

    def _one_copy_only(self, run: tuple[_Slots, Any]) -> None:
        """Something else came while ``run``'s packet owed copies: the server sends one
        copy per connection.  The remaining slots get that packet, and from now on every
        slot gets every packet."""
        slots, ev = run
        self._run = None
        self.one_copy = True
        take, ends = _WORK[type(ev)]
        for job in slots[self._turns.pop(ev.handle, 0) :]:
            if job is not None:
                take(job, ev)
        if ends:
            self.jobs.pop(ev.handle, None)

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

    def lost(self, error: ConnectionLost) -> None:
        """The connection ended: every call still waiting gets ``error``."""
        pending, self.pending = self.pending, deque()
        for waiter in pending:
            waiter.lost(error)
        jobs, self.jobs = self.jobs, {}
        self._run = None
        self._turns.clear()
        for slots in jobs.values():
            for job in slots:
                if job is not None and job.outcome is None:
                    job.lost(error)

    # -- counters --

    @property
    def followed(self) -> int:
        """Submits whose job's WORK_* are routed to them (not ended, not given up)."""
        return sum(
            job is not None and job.outcome is None for slots in self.jobs.values() for job in slots
        )
