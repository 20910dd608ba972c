"""The Gearman client: submit jobs, stream their progress, ask their status.

How a call maps to the wire, and what cancelling it does (see ``docs/client.md``):

* Each server gets at most one connection, opened on first use and reopened after it
  breaks.  Gearman answers JOB_CREATED, ECHO_RES, STATUS_RES, OPTION_RES and ERROR in
  the order the requests came, so each connection keeps a FIFO of the calls waiting for
  such an answer; the reader pops one per answer.  WORK_* packets are routed by handle.
* A call cancelled before its packet is queued sent nothing.  A call cancelled after
  that leaves its entry in the FIFO marked *abandoned*: the entry still swallows the
  answer (so later calls stay matched), and a JOB_CREATED it swallows registers nothing,
  so WORK_* for that job are dropped.  A call cancelled after JOB_CREATED unregisters
  its handle at once.  The connection stays usable in every case; packets are queued
  whole (see :mod:`trigear.client.connection`), so no half packet is ever left on the wire.
* A submit whose connection dies before JOB_CREATED is retried on the next server (the
  server may or may not have taken it: at-least-once, as Gearman always is).  A foreground
  job whose connection dies after JOB_CREATED raises :class:`ConnectionLost`: the job may
  have run, and resubmitting is the application's call.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from ..protocol import check, encode_request
from ..protocol import packets as P
from ..protocol.packets import Priority
from .connection import Connection
from .errors import (
    ConnectionLost,
    GearmanError,
    JobException,
    JobFailed,
    NoServerAvailable,
    ServerError,
)
from .placement import Address, Backoff, Placement, parse_addresses

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Sequence

__all__ = [
    "Client",
    "DataUpdate",
    "JobStatus",
    "JobStream",
    "StatusUpdate",
    "Update",
    "WarningUpdate",
    "open_client",
]

#: How many handles of background jobs the client remembers, to send GET_STATUS to the
#: server that created them.
_HANDLE_MEMORY: Final = 65536

_FOREGROUND: Final[dict[Priority, type[Any]]] = {
    Priority.HIGH: P.SubmitJobHigh,
    Priority.NORMAL: P.SubmitJob,
    Priority.LOW: P.SubmitJobLow,
}
_BACKGROUND: Final[dict[Priority, type[Any]]] = {
    Priority.HIGH: P.SubmitJobHighBg,
    Priority.NORMAL: P.SubmitJobBg,
    Priority.LOW: P.SubmitJobLowBg,
}


# --- what a caller gets -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataUpdate:
    """A WORK_DATA packet: a piece of partial output."""

    data: bytes


@dataclass(frozen=True, slots=True)
class WarningUpdate:
    """A WORK_WARNING packet."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A WORK_STATUS packet: progress ``numerator`` out of ``denominator``."""

    numerator: int
    denominator: int


Update = DataUpdate | WarningUpdate | StatusUpdate


@dataclass(frozen=True, slots=True)
class JobStatus:
    """The answer to GET_STATUS (``waiting`` is None) or GET_STATUS_UNIQUE."""

    known: bool
    running: bool
    numerator: int
    denominator: int
    #: Clients waiting on the job; only GET_STATUS_UNIQUE reports it.
    waiting: int | None = None


def _number(value: bytes) -> int:
    return int(value) if value.isdigit() else 0


def _bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


# --- calls waiting for an answer ----------------------------------------------------


class _Waiter:
    """A call waiting for the in-order answer to its request (or an abandoned one)."""

    __slots__ = ("abandoned", "changed", "error", "expect", "value")

    def __init__(self, expect: type[Any]) -> None:
        self.expect = expect
        self.changed = anyio.Event()
        self.value: Any = None
        self.error: GearmanError | None = None
        self.abandoned = False

    def answer(self, event: Any, conn: _Session) -> None:
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
        try:
            await self.changed.wait()
        except BaseException:
            self.abandoned = True
            raise
        if self.error is not None:
            raise self.error
        return self.value


class _Submission(_Waiter):
    """A submit: first waits for JOB_CREATED, then (foreground) for the job to end."""

    __slots__ = ("background", "created", "handle", "outcome", "updates")

    def __init__(self, background: bool, stream: bool) -> None:
        super().__init__(P.JobCreated)
        self.background = background
        self.handle: bytes | None = None
        self.created = False
        #: ("complete", data) / ("fail", b"") / ("exception", data), once the job ended.
        self.outcome: tuple[str, bytes] | None = None
        self.updates: deque[Update] | None = deque() if stream else None

    def answer(self, event: Any, conn: _Session) -> None:
        if type(event) is P.Error:
            self.error = ServerError(event.code, event.text)
            self.changed.set()
            return
        self.handle = event.handle
        self.created = True
        if self.abandoned:
            return
        if self.background:
            self.value = event.handle
            self.changed.set()
            return
        jobs = conn.jobs.get(event.handle)
        if jobs is None:
            conn.jobs[event.handle] = [self]
        else:
            jobs.append(self)  # coalesced with another submit on this connection
        if self.updates is not None:
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


# --- one connection -----------------------------------------------------------------


class _Session:
    """The client's session with one server: its :class:`Connection` and the routing
    state that matches answers to calls."""

    __slots__ = ("conn", "jobs", "pending")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pending: deque[_Waiter] = deque()
        self.jobs: dict[bytes, list[_Submission]] = {}

    def request(self, waiter: _Waiter, packet: bytes) -> None:
        """Queue a request and its FIFO entry together (no await between them)."""
        self.conn.send(packet)
        self.pending.append(waiter)

    def forget(self, job: _Submission) -> None:
        """Stop routing WORK_* for ``job`` (its caller gave up)."""
        job.abandoned = True
        if job.handle is None:
            return
        jobs = self.jobs.get(job.handle)
        if jobs is not None and job in jobs:
            jobs.remove(job)
            if not jobs:
                del self.jobs[job.handle]

    def on_events(self, events: list[Any]) -> None:
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
                listeners = jobs.get(ev.handle)
                if listeners is None:
                    continue
                item: Update
                if cls is P.WorkData:
                    item = DataUpdate(ev.data)
                elif cls is P.WorkWarning:
                    item = WarningUpdate(ev.data)
                else:
                    item = StatusUpdate(_number(ev.numerator), _number(ev.denominator))
                for job in listeners:
                    job.update(item)
            elif cls in _ANSWERS:
                if not self.pending:
                    self.conn.close(f"unexpected {cls.__name__} from the server")
                    return
                waiter = self.pending[0]
                if cls is not P.Error and cls is not waiter.expect:
                    # Out of step with the server: nothing after this can be trusted.
                    self.conn.close(f"got {cls.__name__} where {waiter.expect.__name__} was due")
                    return
                self.pending.popleft()
                waiter.answer(ev, self)
            # NOOP, NO_JOB and JOB_ASSIGN* are for workers; a client ignores them.

    def _end(self, handle: bytes, kind: str, data: bytes) -> None:
        listeners = self.jobs.pop(handle, None)
        if listeners is not None:
            for job in listeners:
                job.finish(kind, data)

    def lost(self, error: ConnectionLost) -> None:
        pending, self.pending = self.pending, deque()
        for waiter in pending:
            waiter.lost(error)
        jobs, self.jobs = self.jobs, {}
        for listeners in jobs.values():
            for job in listeners:
                job.lost(error)


_ANSWERS: Final = frozenset(
    {P.JobCreated, P.EchoRes, P.StatusRes, P.StatusResUnique, P.OptionRes, P.Error}
)


# --- the client ---------------------------------------------------------------------


class JobStream:
    """A foreground job whose progress is being read (from :meth:`Client.submit_stream`).

    ``async for update in job`` yields :class:`DataUpdate`, :class:`StatusUpdate` and
    :class:`WarningUpdate` in the order the worker sent them and stops when the job
    completes; if it fails it raises :class:`JobFailed` or :class:`JobException`.
    """

    def __init__(self, job: _Submission) -> None:
        self._job = job
        assert job.handle is not None
        self.handle: bytes = job.handle

    def __aiter__(self) -> JobStream:
        return self

    async def __anext__(self) -> Update:
        job = self._job
        updates = job.updates
        assert updates is not None
        while True:
            if updates:
                await anyio.lowlevel.checkpoint()
                return updates.popleft()
            if job.settled:
                await anyio.lowlevel.checkpoint()
                job.result()
                raise StopAsyncIteration
            await job.next_change()

    async def wait(self) -> bytes:
        """Skip the remaining updates and return the result (or raise the failure)."""
        job = self._job
        while not job.settled:
            await job.next_change()
        assert job.updates is not None
        job.updates.clear()
        await anyio.lowlevel.checkpoint()
        return job.result()

    @property
    def done(self) -> bool:
        """True once the job has ended and every update was read."""
        return self._job.settled and not self._job.updates

    @property
    def result(self) -> bytes:
        """The job's result, once the stream ended; raises the failure if it failed."""
        if not self._job.settled:
            raise RuntimeError("the job has not ended yet: read the stream or await wait()")
        return self._job.result()


class Client:
    """A Gearman client over one or more servers.  Make one with :func:`open_client`."""

    def __init__(
        self,
        servers: Sequence[Address],
        task_group: anyio.abc.TaskGroup,
        *,
        client_id: str | bytes | None = None,
    ) -> None:
        self.servers = tuple(servers)
        self._tg = task_group
        self._client_id = _bytes(client_id, "client_id") if client_id is not None else None
        if self._client_id is not None:
            check(P.SetClientId(self._client_id))
        self._placement = Placement(self.servers)
        self._conns: dict[Address, _Session] = {}
        self._locks = {a: anyio.Lock() for a in self.servers}
        self._backoff = {a: Backoff() for a in self.servers}
        self._handles: OrderedDict[bytes, Address] = OrderedDict()
        self._closed = False

    # -- connections --

    async def _connection(self, address: Address) -> _Session:
        cc = self._conns.get(address)
        if cc is not None and not cc.conn.closed:
            return cc
        async with self._locks[address]:
            cc = self._conns.get(address)
            if cc is not None and not cc.conn.closed:
                return cc
            if self._closed:
                raise anyio.ClosedResourceError("the client is closed")
            try:
                stream = await anyio.connect_tcp(address.host, address.port)
            except OSError as exc:
                self._backoff[address].failed(anyio.current_time())
                raise ConnectionLost(f"{address}: cannot connect: {exc}") from exc
            self._backoff[address].succeeded()
            cc = _Session(Connection(stream, address))
            # Ask for WORK_EXCEPTION; the answer (OPTION_RES, or ERROR from a server
            # without the option) is swallowed by an abandoned FIFO entry.
            option = _Waiter(P.OptionRes)
            option.abandoned = True
            if self._client_id is not None:
                cc.conn.send(encode_request(P.SetClientId(self._client_id)))
            cc.request(option, encode_request(P.OptionReq(b"exceptions")))
            self._conns[address] = cc
            self._tg.start_soon(self._run_connection, cc)
            return cc

    async def _run_connection(self, cc: _Session) -> None:
        error = await cc.conn.run(cc.on_events)
        cc.lost(error)
        address = cc.conn.address
        if self._conns.get(address) is cc:
            del self._conns[address]
        if not self._closed:
            self._backoff[address].failed(anyio.current_time())

    def _order(self, servers: list[Address]) -> list[Address]:
        if len(servers) == 1:
            return servers
        now = anyio.current_time()
        down = [a for a in servers if self._backoff[a].is_down(now)]
        if not down:
            return servers
        return [a for a in servers if a not in down] + down

    async def _call(self, servers: Iterable[Address], event: Any) -> Any:
        """Send a request with an in-order answer to the first server that takes it."""
        packet = encode_request(event)
        errors: list[ConnectionLost] = []
        for address in servers:
            self._check_open()
            try:
                cc = await self._connection(address)
                await cc.conn.wait_writable()
                waiter = _Waiter(_EXPECT[type(event)])
                cc.request(waiter, packet)
                return await waiter.wait()
            except ConnectionLost as exc:
                errors.append(exc)
        self._check_open()
        raise _unavailable(errors)

    def _check_open(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError("the client is closed")

    # -- submitting --

    async def _submit(
        self,
        packet_class: type[Any],
        function: str | bytes,
        data: str | bytes,
        unique: str | bytes | None,
        *,
        background: bool,
        stream: bool,
        extra: tuple[Any, ...] = (),
    ) -> tuple[_Session, _Submission]:
        f = _bytes(function, "function")
        d = _bytes(data, "data")
        u = b"" if unique is None else _bytes(unique, "unique")
        event = packet_class(f, u, *extra, d)
        check(event)
        packet = encode_request(event)
        errors: list[ConnectionLost] = []
        for address in self._order(self._placement.order(u, d)):
            self._check_open()
            try:
                cc = await self._connection(address)
                await cc.conn.wait_writable()
                job = _Submission(background, stream)
                cc.request(job, packet)
            except ConnectionLost as exc:
                errors.append(exc)
                continue
            try:
                while not (job.settled or (job.created and (background or stream))):
                    await job.next_change()
            except BaseException:
                cc.forget(job)
                raise
            if isinstance(job.error, ConnectionLost) and not job.created:
                errors.append(job.error)  # never taken, or not known to be: next server
                continue
            if background and job.handle is not None and job.error is None:
                self._remember(job.handle, address)
            return cc, job
        self._check_open()
        raise _unavailable(errors)

    def _remember(self, handle: bytes, address: Address) -> None:
        self._handles[handle] = address
        self._handles.move_to_end(handle)
        if len(self._handles) > _HANDLE_MEMORY:
            self._handles.popitem(last=False)

    async def submit(
        self,
        function: str | bytes,
        data: str | bytes = b"",
        *,
        unique: str | bytes | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> bytes:
        """Run a job and return its result (the data of WORK_COMPLETE).

        Raises :class:`JobFailed` or :class:`JobException` if the job fails,
        :class:`ServerError` if the server refuses it, :class:`ConnectionLost` if its
        server goes away after accepting it, :class:`NoServerAvailable` if no server takes
        it.  Cancelling it leaves the client usable; the job itself is not cancelled (a
        Gearman client cannot do that) and its result is dropped.
        """
        _, job = await self._submit(
            _FOREGROUND[Priority(priority)], function, data, unique, background=False, stream=False
        )
        return job.result()

    async def submit_background(
        self,
        function: str | bytes,
        data: str | bytes = b"",
        *,
        unique: str | bytes | None = None,
        priority: Priority = Priority.NORMAL,
        run_at: datetime | float | None = None,
    ) -> bytes:
        """Queue a job and return its handle once the server has it.

        ``run_at`` (a datetime, or unix time in seconds) sends SUBMIT_JOB_EPOCH: the job
        waits until then (servers without it answer with an ERROR: :class:`ServerError`;
        gearmand 1.1.20 only runs it once a worker asks after that time).  Epoch jobs
        have normal priority.  Cancelling it after the packet went out leaves the job
        queued if the server took it; its handle is dropped.
        """
        if run_at is None:
            packet_class = _BACKGROUND[Priority(priority)]
            extra: tuple[Any, ...] = ()
        else:
            if Priority(priority) is not Priority.NORMAL:
                raise ValueError("run_at jobs have normal priority")
            packet_class = P.SubmitJobEpoch
            when = run_at.timestamp() if isinstance(run_at, datetime) else float(run_at)
            if not math.isfinite(when) or when < 0:
                raise ValueError(f"bad run_at: {run_at!r}")
            extra = (math.ceil(when),)
        _, job = await self._submit(
            packet_class, function, data, unique, background=True, stream=False, extra=extra
        )
        if job.error is not None:
            raise job.error
        assert job.handle is not None
        return job.handle

    @asynccontextmanager
    async def submit_stream(
        self,
        function: str | bytes,
        data: str | bytes = b"",
        *,
        unique: str | bytes | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> AsyncIterator[JobStream]:
        """Run a job and read its progress: ``async with client.submit_stream(...) as job``.

        Entering waits for JOB_CREATED (``job.handle``).  Leaving the block early, or
        being cancelled inside it, stops the routing of the job's packets to it.
        """
        cc, job = await self._submit(
            _FOREGROUND[Priority(priority)], function, data, unique, background=False, stream=True
        )
        if job.error is not None:
            raise job.error
        try:
            yield JobStream(job)
        finally:
            if not job.settled:
                cc.forget(job)

    # -- status and echo --

    async def get_status(self, handle: str | bytes) -> JobStatus:
        """GET_STATUS.  Asks the server that created ``handle`` if this client submitted
        it in the background, else each server in turn until one knows it."""
        h = _bytes(handle, "handle")
        event = P.GetStatus(h)
        check(event)
        known = self._handles.get(h)
        servers = [known] if known is not None else self._order(list(self._placement.addresses))
        errors: list[ConnectionLost] = []
        answer: P.StatusRes | None = None
        for address in servers:
            try:
                answer = await self._call([address], event)
            except NoServerAvailable as exc:
                if isinstance(exc.__cause__, ConnectionLost):
                    errors.append(exc.__cause__)
                continue
            assert answer is not None
            if answer.known:
                break
        if answer is None:
            raise _unavailable(errors)
        return JobStatus(answer.known, answer.running, answer.numerator, answer.denominator)

    async def get_status_unique(self, unique: str | bytes) -> JobStatus:
        """GET_STATUS_UNIQUE, to the server the unique hashes to (gearmand >= 1.1.19;
        others answer with an ERROR: :class:`ServerError`)."""
        u = _bytes(unique, "unique")
        event = P.GetStatusUnique(u)
        check(event)
        answer: P.StatusResUnique = await self._call(
            self._order(self._placement.order(u, b"")), event
        )
        return JobStatus(
            answer.known, answer.running, answer.numerator, answer.denominator, answer.client_count
        )

    async def echo(self, data: str | bytes = b"") -> bytes:
        """ECHO_REQ to the next server (round-robin); return what it echoed."""
        event = P.EchoReq(_bytes(data, "data"))
        answer: P.EchoRes = await self._call(self._order(self._placement.order(b"", b"")), event)
        return answer.data

    # -- lifetime --

    async def aclose(self) -> None:
        """Close every connection; calls in flight raise :class:`ConnectionLost`."""
        self._close()
        await anyio.lowlevel.checkpoint()

    def _close(self) -> None:
        self._closed = True
        for cc in list(self._conns.values()):
            cc.conn.close("client closed")

    def statistics(self) -> dict[str, int]:
        """Connections open, calls waiting for an answer, jobs being followed."""
        return {
            "connections": sum(not cc.conn.closed for cc in self._conns.values()),
            "pending": sum(len(cc.pending) for cc in self._conns.values()),
            "jobs": sum(len(v) for cc in self._conns.values() for v in cc.jobs.values()),
        }


_EXPECT: Final[dict[type[Any], type[Any]]] = {
    P.EchoReq: P.EchoRes,
    P.GetStatus: P.StatusRes,
    P.GetStatusUnique: P.StatusResUnique,
}


def _unavailable(errors: list[ConnectionLost]) -> NoServerAvailable:
    text = "; ".join(str(e) for e in errors) or "no server"
    exc = NoServerAvailable(f"no server available: {text}")
    if errors:
        exc.__cause__ = errors[-1]
    return exc


@asynccontextmanager
async def open_client(
    *servers: str | tuple[str, int], client_id: str | bytes | None = None
) -> AsyncIterator[Client]:
    """Open a client over ``servers`` (``"host:port"``; default ``127.0.0.1:4730``).

    Connections are opened on first use, one per server, and closed on exit.  Works under
    Trio and asyncio (through anyio); no threads.
    """
    addresses = parse_addresses(servers or ("127.0.0.1:4730",))
    try:
        async with anyio.create_task_group() as tg:
            client = Client(addresses, tg, client_id=client_id)
            try:
                yield client
            finally:
                client._close()
    except BaseExceptionGroup as group:
        # Connection tasks never raise, so a group here holds what the block raised.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
