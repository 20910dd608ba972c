"""The dispatcher: the one owner of all server state, with no I/O in it.

Rules (the S-numbers are those of the spec, ``docs/server.md`` explains each):

* Every change to server state happens in a method of :class:`Dispatcher` or of one of
  its parts, called from one task.  Methods never block: output for a peer is appended
  to ``peer.out`` and the peer is listed in :attr:`~Dispatcher.take_output`; store writes
  are collected into one batch that :meth:`~Dispatcher.take_store_batch` hands to the
  store writer, whose answer comes back through :meth:`~Dispatcher.store_done`.
* There is no clock in here.  The caller sets :attr:`~Dispatcher.now` (monotonic seconds)
  and :attr:`~Dispatcher.wall` (unix seconds) before each pass, and asks
  :attr:`~Dispatcher.next_deadline` when to call :meth:`~Dispatcher.tick` next.

This keeps the whole of Gearman's job logic testable without sockets or trio, and lets a
hypothesis state machine drive it directly.

The dispatcher turns packets into the operations of its parts, each in a module of its
own: :class:`~trigear.server.scheduler.Scheduler` (submits, queues, runs, timers),
:class:`~trigear.server.functions.Functions` (the function records and the workers'
abilities, the scheduler's), :class:`~trigear.server.results.Results` (what workers report
about their runs), :class:`~trigear.server.commits.Commits` (what the store must write,
and the replies that wait for it), :class:`~trigear.server.stored.StoredJobs` (the store's
answers, and stored jobs brought back), :class:`~trigear.server.output.Output` (bytes for
peers), and the admin answers (:mod:`trigear.server.admin`).  Each packet class has one
handler, registered in a table whose entries mypy checks against the class (:func:`_on`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar, cast

from ..protocol.admin import parse_admin_line
from ..protocol.encoder import encode_response
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
    NoJob,
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
from .admin import answer
from .commits import Commits
from .config import ServerConfig
from .guard import guarded, identify, reidentify
from .output import Output
from .results import Results
from .scheduler import Scheduler
from .state import JobRecord, JobState, Peer
from .stats import ServerStats
from .stored import StoredJobs

if TYPE_CHECKING:
    from ..protocol.errors import RemoteProtocolError
    from ..store.base import LoadResult, StoredJob
    from .acl import Acl
    from .commits import StoreBatch

__all__ = ["Dispatcher", "GrabKind"]

_NO_JOB = encode_response(NoJob())
_NOT_EXPECTED = encode_response(Error(b"INVALID_COMMAND", b"Command not expected"))
_UNKNOWN_OPTION = encode_response(
    Error(b"UNKNOWN_OPTION", b"Server does not recognize given option")
)

_PlainSubmit = (
    SubmitJob | SubmitJobBg | SubmitJobHigh | SubmitJobHighBg | SubmitJobLow | SubmitJobLowBg
)
#: The priority and background flag each plain SUBMIT_JOB variant stands for.
_SUBMITS: dict[type[_PlainSubmit], tuple[Priority, bool]] = {
    SubmitJob: (Priority.NORMAL, False),
    SubmitJobBg: (Priority.NORMAL, True),
    SubmitJobHigh: (Priority.HIGH, False),
    SubmitJobHighBg: (Priority.HIGH, True),
    SubmitJobLow: (Priority.LOW, False),
    SubmitJobLowBg: (Priority.LOW, True),
}


class GrabKind(enum.Enum):
    """The packet a grab is answered with: what the worker asked to be told."""

    #: GRAB_JOB: handle, function, data.
    JOB_ASSIGN = enum.auto()
    #: GRAB_JOB_UNIQ: also the unique.
    JOB_ASSIGN_UNIQ = enum.auto()
    #: GRAB_JOB_ALL: also the reducer, for a job that has one.
    JOB_ASSIGN_ALL = enum.auto()


# Looked up once: on CPython 3.11 each ``GrabKind.JOB_ASSIGN`` in a function goes through
# the enum metaclass's attribute hook, about 0.1 us, and every grab would pay it twice.
_JOB_ASSIGN = GrabKind.JOB_ASSIGN
_JOB_ASSIGN_UNIQ = GrabKind.JOB_ASSIGN_UNIQ
_JOB_ASSIGN_ALL = GrabKind.JOB_ASSIGN_ALL


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
        self.now = 0.0
        self.wall = 0.0
        self.stats = ServerStats()
        self.peers: dict[int, Peer] = {}
        self._output = Output(self.config.max_output)
        #: Bytes made for peers and not yet written (:mod:`.output`).
        self.output = self._output
        self._send = self._output.send
        #: (peer, bytes) -> None: queue output for a peer.
        self.send = self._send
        #: The access control list in force (:meth:`set_acl`), and the handler table:
        #: the plain one without an ACL, so the checks cost nothing then.
        self.acl: Acl | None = None
        self._handlers = _HANDLERS
        self._commits = Commits()
        self.scheduler = Scheduler(
            self.config,
            self.stats,
            self._output,
            self._commits,
            durable=durable,
            first_handle=first_handle,
        )
        self._stored = StoredJobs(self.scheduler, self._commits, self.stats, self._output)
        self._results = Results(
            self.scheduler, self._send, self.stats, self.scheduler.tallies, self.config
        )
        #: The scheduler's jobs by handle and functions by name (the same dicts).
        self.jobs = self.scheduler.jobs
        self.funcs = self.scheduler.funcs
        #: Each function's counters and the recent failures (:mod:`.tally`).
        self.tallies = self.scheduler.tallies
        #: () -> the peers with output in ``peer.out``; the caller writes and clears it.
        self.take_output = self._output.take
        #: () -> (monotonic deadline of the next CAN_DO_TIMEOUT, unix time of the next
        #: epoch job), either may be None: when to call :meth:`tick`.
        self.next_deadline = self.scheduler.next_deadline
        #: Monotonic time until which jobs may be handed out: a cluster member's lease
        #: (:mod:`trigear.server.cluster`); infinite for a server of its own.
        self.lease_until = math.inf
        #: Set by the admin ``shutdown``: "now" or "graceful".
        self.shutdown_request: Literal["now", "graceful"] | None = None

    # --- peers and output -----------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        self.peers[peer.id] = peer
        if self.acl is not None:
            identify(self.acl, peer)

    def set_acl(self, acl: Acl | None) -> None:
        """Put ``acl`` in force (None: none), on open connections too: each is identified
        again and loses the abilities it may no longer register (:mod:`.guard`)."""
        self.acl = acl
        self._handlers = _HANDLERS if acl is None else guarded(_HANDLERS)
        for peer in self.peers.values():
            for name in reidentify(acl, peer):
                self.scheduler.functions.drop_abilities(peer, name)

    @property
    def running_jobs(self) -> int:
        return sum(len(p.held) for p in self.peers.values())

    def start_draining(self) -> None:
        """A graceful shutdown began: hand out no job any more (S21)."""
        self.scheduler.draining = True

    def disconnect(self, peer: Peer) -> None:
        """The connection is gone: requeue what it held (S9), let go of what it waited
        for (S12)."""
        if peer.gone:
            return
        peer.gone = True
        self.peers.pop(peer.id, None)
        self.scheduler.lose_runs(peer)
        self.scheduler.functions.drop_abilities(peer)
        self.scheduler.drop_client(peer)
        peer.waiting.clear()
        peer.out.clear()
        self._output.forget(peer)

    # --- the event entry point --------------------------------------------------------

    def handle(self, peer: Peer, event: Event) -> None:
        """Act on one event from ``peer``."""
        handler = self._handlers.get(type(event))
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
            self._output.close_after_output(peer)

    # --- grabbing ---------------------------------------------------------

    def _grab(self, peer: Peer, kind: GrabKind) -> None:
        job = self.scheduler.next_job(peer)
        if job is None:
            self._send(peer, _NO_JOB)
            return
        self.scheduler.assign(peer, job, self.now)
        if kind is _JOB_ASSIGN:
            reply: Event = JobAssign(job.handle, job.func.name, job.data)
        elif kind is _JOB_ASSIGN_ALL and job.reducer is not None:
            reply = JobAssignAll(job.handle, job.func.name, job.unique, job.reducer, job.data)
        else:
            reply = JobAssignUniq(job.handle, job.func.name, job.unique, job.data)
        self._send(peer, encode_response(reply))

    # --- packet handlers: workers ----------------------------------------------------

    def _on_can_do(self, peer: Peer, event: CanDo | CanDoTimeout) -> None:
        timeout = event.timeout if isinstance(event, CanDoTimeout) else 0
        self.scheduler.add_ability(peer, event.function, timeout)

    def _on_cant_do(self, peer: Peer, event: CantDo) -> None:
        self.scheduler.functions.drop_abilities(peer, event.function)
        self.scheduler.lose_runs(peer, event.function)

    def _on_reset(self, peer: Peer, event: ResetAbilities) -> None:
        self.scheduler.functions.drop_abilities(peer)
        self.scheduler.lose_runs(peer)

    def _on_pre_sleep(self, peer: Peer, event: PreSleep) -> None:
        self.scheduler.sleep(peer)

    def _on_grab(self, peer: Peer, event: GrabJob) -> None:
        self._grab(peer, _JOB_ASSIGN)

    def _on_grab_uniq(self, peer: Peer, event: GrabJobUniq) -> None:
        self._grab(peer, _JOB_ASSIGN_UNIQ)

    def _on_grab_all(self, peer: Peer, event: GrabJobAll) -> None:
        self._grab(peer, _JOB_ASSIGN_ALL)

    def _on_work_complete(self, peer: Peer, event: WorkComplete) -> None:
        self._results.complete(peer, event, self.now)

    def _on_work_fail(self, peer: Peer, event: WorkFail) -> None:
        self._results.fail(peer, event, self.now)

    def _on_work_exception(self, peer: Peer, event: WorkException) -> None:
        self._results.exception(peer, event, self.now)

    def _on_work_status(self, peer: Peer, event: WorkStatus) -> None:
        self._results.status(peer, event)

    def _on_work_data(self, peer: Peer, event: WorkData | WorkWarning) -> None:
        self._results.data(peer, event)

    # --- packet handlers: clients ----------------------------------------------------

    def _on_submit(self, peer: Peer, event: _PlainSubmit) -> None:
        prio, bg = _SUBMITS[type(event)]
        self.scheduler.submit(peer, event.function, event.unique, event.data, prio, bg, self.wall)

    def _on_epoch(self, peer: Peer, event: SubmitJobEpoch) -> None:
        f, u, data, wall = event.function, event.unique, event.data, self.wall
        self.scheduler.submit(peer, f, u, data, Priority.NORMAL, True, wall, when=event.epoch)

    def _on_reduce(self, peer: Peer, event: SubmitReduceJob | SubmitReduceJobBackground) -> None:
        bg = isinstance(event, SubmitReduceJobBackground)
        f, u, data, wall = event.function, event.unique, event.data, self.wall
        self.scheduler.submit(peer, f, u, data, Priority.NORMAL, bg, wall, reducer=event.reducer)

    def _on_get_status(self, peer: Peer, event: GetStatus) -> None:
        job = self.jobs.get(event.handle)
        if job is None or job.state is JobState.COMMITTING:
            self._send(peer, encode_response(StatusRes(event.handle, False, False, 0, 0)))
            return
        running = job.state is JobState.RUNNING
        status = StatusRes(job.handle, True, running, job.numerator, job.denominator)
        self._send(peer, encode_response(status))

    def _on_get_status_unique(self, peer: Peer, event: GetStatusUnique) -> None:
        job = None
        for live in self.scheduler.with_unique(event.unique) if event.unique else ():
            if live.state is not JobState.COMMITTING:
                job = live
                break
        if job is None:
            self._send(peer, encode_response(StatusResUnique(event.unique, False, False, 0, 0, 0)))
            return
        running = job.state is JobState.RUNNING
        # The waiting count is gearmand's: attached foreground submits, not connections.
        status = StatusResUnique(
            event.unique, True, running, job.numerator, job.denominator, len(job.clients)
        )
        self._send(peer, encode_response(status))

    def _on_option(self, peer: Peer, event: OptionReq) -> None:
        if event.option.lower() == b"exceptions":
            peer.exceptions = True
            self._send(peer, encode_response(OptionRes(event.option)))
        else:
            self._send(peer, _UNKNOWN_OPTION)

    # --- packet handlers: anyone -----------------------------------------------------

    def _on_echo(self, peer: Peer, event: EchoReq) -> None:
        self._send(peer, encode_response(EchoRes(event.data)))

    def _on_client_id(self, peer: Peer, event: SetClientId) -> None:
        peer.client_id = event.client_id or b"-"

    def _on_not_expected(self, peer: Peer, event: SubmitJobSched | AllYours) -> None:
        self._send(peer, _NOT_EXPECTED)

    def _on_admin(self, peer: Peer, event: AdminCommand) -> None:
        # Worker counts are exact: a departed worker's functions are let go of first.
        self.scheduler.functions.settle()
        self._send(peer, answer(self, peer, parse_admin_line(event.line)))

    # --- timers ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Fire the timers that are due at :attr:`now` / :attr:`wall`."""
        self.scheduler.tick(self.now, self.wall)

    # --- the store ------------------------------------------------------------------------

    def has_store_work(self) -> bool:
        """True while store changes wait to be committed or are being committed."""
        return self._commits.busy

    def take_store_batch(self) -> StoreBatch | None:
        """The next batch for the store writer, if one is due and none is in flight."""
        return self._commits.take(self.scheduler.last_handle_number)

    def store_done(self, ok: bool, joined: dict[bytes, bytes] | None = None) -> None:
        """The in-flight batch was committed (``ok``) or failed and applied not at all
        (:meth:`trigear.server.stored.StoredJobs.done`)."""
        self._stored.done(ok, self.wall, joined)

    def replay(self, loaded: LoadResult) -> None:
        """Recreate stored jobs at start, in their original order (S19)."""
        self._stored.replay(loaded, self.wall)

    def adopt(self, jobs: list[StoredJob]) -> int:
        """Take in stored jobs this server now owns (taken over from another server)."""
        return self._stored.adopt(jobs, self.wall)

    def fenced(self) -> int:
        """Another server owns this one's stored jobs now: forget them, refuse the
        background submits not yet committed.  Returns how many jobs were dropped."""
        return self._stored.fenced(self.wall)

    # --- what the admin commands use (trigear.server.admin.AdminView) ----------------------

    def set_maxqueue(self, name: bytes, limits: tuple[int, int, int]) -> None:
        self.scheduler.functions.set_maxqueue(name, limits)

    def with_unique(self, unique: bytes) -> list[JobRecord]:
        """The live jobs with coalescing key ``unique``, in any function."""
        return self.scheduler.with_unique(unique)

    def create_function(self, name: bytes) -> None:
        self.scheduler.functions.get(name)

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: end the job now (attached clients get WORK_FAIL)."""
        job = self.jobs.get(handle)
        if job is None or job.state is JobState.COMMITTING:
            return False
        self.scheduler.fail(job)
        return True

    def drop_function(self, name: bytes) -> str | None:
        """Admin ``drop function``: None on success, else the error text."""
        return self.scheduler.functions.drop(name)

    def request_shutdown(self, *, graceful: bool) -> None:
        self.shutdown_request = "graceful" if graceful else "now"


# --- the handler table: one handler per packet class ---------------------------------------

_E = TypeVar("_E", bound=Event)
_Handler = Callable[[Dispatcher, Peer, Event], None]
_HANDLERS: dict[type[Event], _Handler] = {}


def _on(cls: type[_E], handler: Callable[[Dispatcher, Peer, _E], None]) -> None:
    """Register ``handler`` for packets of class ``cls``.  mypy checks that the handler
    takes that class; :meth:`Dispatcher.handle` only ever passes it one."""
    _HANDLERS[cast("type[Event]", cls)] = cast("_Handler", handler)


_on(SubmitJob, Dispatcher._on_submit)
_on(SubmitJobBg, Dispatcher._on_submit)
_on(SubmitJobHigh, Dispatcher._on_submit)
_on(SubmitJobHighBg, Dispatcher._on_submit)
_on(SubmitJobLow, Dispatcher._on_submit)
_on(SubmitJobLowBg, Dispatcher._on_submit)
_on(SubmitJobEpoch, Dispatcher._on_epoch)
_on(SubmitReduceJob, Dispatcher._on_reduce)
_on(SubmitReduceJobBackground, Dispatcher._on_reduce)
_on(GetStatus, Dispatcher._on_get_status)
_on(GetStatusUnique, Dispatcher._on_get_status_unique)
_on(OptionReq, Dispatcher._on_option)
_on(CanDo, Dispatcher._on_can_do)
_on(CanDoTimeout, Dispatcher._on_can_do)
_on(CantDo, Dispatcher._on_cant_do)
_on(ResetAbilities, Dispatcher._on_reset)
_on(PreSleep, Dispatcher._on_pre_sleep)
_on(GrabJob, Dispatcher._on_grab)
_on(GrabJobUniq, Dispatcher._on_grab_uniq)
_on(GrabJobAll, Dispatcher._on_grab_all)
_on(WorkComplete, Dispatcher._on_work_complete)
_on(WorkFail, Dispatcher._on_work_fail)
_on(WorkException, Dispatcher._on_work_exception)
_on(WorkStatus, Dispatcher._on_work_status)
_on(WorkData, Dispatcher._on_work_data)
_on(WorkWarning, Dispatcher._on_work_data)
_on(EchoReq, Dispatcher._on_echo)
_on(SetClientId, Dispatcher._on_client_id)
_on(SubmitJobSched, Dispatcher._on_not_expected)
_on(AllYours, Dispatcher._on_not_expected)
_on(AdminCommand, Dispatcher._on_admin)
