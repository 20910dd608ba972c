"""The Gearman worker: serve functions on every server given, ``concurrency`` jobs at once.

How it maps to the wire (see ``docs/worker.md``):

* One connection per server.  On connecting, the worker sends SET_CLIENT_ID and probes
  with one GRAB_JOB_UNIQ before registering anything: gearmand and trigear answer
  NO_JOB; the Perl Gearman::Server, which knows neither GRAB_JOB_UNIQ nor WORK_DATA nor
  WORK_WARNING, answers ERROR.  Such a *legacy* server gets GRAB_JOB, CAN_DO_TIMEOUT in
  seconds rather than milliseconds, no WORK_DATA/WORK_WARNING, and WORK_FAIL after
  WORK_EXCEPTION (it does not end a job on WORK_EXCEPTION).
* Grabbing is driven by events, never by polling: while a slot is free and the server
  has work, the worker keeps as many grabs in flight as it has free slots; the first
  NO_JOB stops grabbing, and once every grab is answered it sends PRE_SLEEP and waits
  for NOOP.  Slots are shared by all connections, so ``concurrency`` bounds the jobs
  running across every server.  Those rules are a sans-IO state machine of their own
  (:mod:`.grabbing`); this module feeds it and writes what it queues.
* A job that raises ends with WORK_EXCEPTION carrying the error's text; one that raises
  :class:`JobFailed` ends with WORK_FAIL.  Either way the worker goes on serving.
* :meth:`Worker.stop` is graceful: no more grabs, running jobs finish and report, then
  the connections close and :meth:`Worker.run` returns.  Cancelling :meth:`Worker.run`
  closes the connections at once; the servers requeue the jobs this worker held.
* A connection that breaks cancels the jobs it carried (their server requeues them) and
  is reopened with backoff; the other servers keep being served meanwhile, and get the
  slots its grabs held at once.
"""

from __future__ import annotations

import inspect
import logging
import math
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from .._keepalive import DEFAULT_KEEPALIVE, Keepalive
from ..protocol import check, encode_request
from ..protocol import packets as P
from .connection import Connection, open_stream
from .errors import ConnectionLost, JobFailed
from .grabbing import GrabMachine, GrabState, Slots
from .placement import Address, Backoff, parse_addresses

if TYPE_CHECKING:
    import ssl

__all__ = ["Job", "JobFunction", "Worker", "WorkerStatistics"]

log = logging.getLogger("trigear.worker")

#: A worker function: ``async def f(job) -> bytes | str | None``, or a plain ``def``
#: (run in a worker thread).
JobFunction = (
    Callable[["Job"], Awaitable[bytes | str | None]] | Callable[["Job"], bytes | str | None]
)
F = TypeVar("F", bound=Callable[..., Any])

#: A session shorter than this counts as a failed connect for the backoff.
_STABLE_AFTER: Final = 5.0


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of :meth:`Worker.statistics`."""

    #: Connections registered with their server (past the probe) and not closed.
    connections: int
    #: Connections opened since the worker was made: one per server unless one broke
    #: (or the server was out of step) and was reopened.
    connections_opened: int
    #: Jobs running, across every connection.
    running: int
    #: Slots neither running a job nor held by a grab in flight.
    free: int


@dataclass(frozen=True, slots=True)
class _Function:
    name: bytes
    func: Callable[..., Any]
    is_async: bool
    timeout: float | None


class Job:
    """A job assigned to this worker: what the function gets.

    ``send_status``, ``send_data`` and ``send_warning`` queue a packet (waiting only if
    the connection's output buffer is full) and raise :class:`ConnectionLost` if the
    connection is gone.  From a plain ``def`` function, which runs in a thread, call them
    through ``anyio.from_thread.run(job.send_status, 1, 2)``.
    """

    __slots__ = ("_session", "data", "function", "handle", "unique")

    def __init__(
        self, session: _WorkerSession, handle: bytes, function: str, unique: bytes, data: bytes
    ) -> None:
        self._session = session
        self.handle = handle
        self.function = function
        #: The unique the job was submitted with (``b""`` from a legacy server).
        self.unique = unique
        self.data = data

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function} {len(self.data)} bytes>"

    async def _send(self, event: Any) -> None:
        conn = self._session.conn
        await conn.wait_writable()
        conn.send(encode_request(event))

    async def send_status(self, numerator: int, denominator: int) -> None:
        """WORK_STATUS: progress ``numerator`` out of ``denominator``."""
        if numerator < 0 or denominator < 0:
            raise ValueError("status numbers must not be negative")
        await self._send(P.WorkStatus(self.handle, b"%d" % numerator, b"%d" % denominator))

    async def send_data(self, data: bytes | str) -> None:
        """WORK_DATA: partial output (dropped on legacy servers, which lack it)."""
        if self._session.machine.legacy:
            await anyio.lowlevel.checkpoint()
            return
        await self._send(P.WorkData(self.handle, _to_bytes(data)))

    async def send_warning(self, data: bytes | str) -> None:
        """WORK_WARNING (dropped on legacy servers, which lack it)."""
        if self._session.machine.legacy:
            await anyio.lowlevel.checkpoint()
            return
        await self._send(P.WorkWarning(self.handle, _to_bytes(data)))


def _to_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"a worker function must return bytes, str or None, not {type(value).__name__}")


class _WorkerSession:
    """One connection of the worker: its transport, its :class:`GrabMachine`, the task
    group its jobs run in.  The machine decides; this writes what it queued."""

    def __init__(self, worker: Worker, conn: Connection, machine: GrabMachine) -> None:
        self.worker = worker
        self.conn = conn
        self.machine = machine
        #: Where the jobs run: the session's task group, set once it is open.
        self.tg: anyio.abc.TaskGroup | None = None
        #: Set once the probe was answered (registered, or closed).
        self.ready = anyio.Event()

    def flush(self) -> None:
        """Send what the machine queued; close once it is CLOSED."""
        data = self.machine.data_to_send()
        if self.conn.closed:
            return
        if data:
            self.conn.send(data)
        if self.machine.state is GrabState.CLOSED:
            self.conn.close_when_flushed("worker stopped")

    def on_events(self, events: list[Any]) -> None:
        """The reader's callback: feed the machine, start what it assigns, write."""
        machine = self.machine
        try:
            for ev in events:
                probing = machine.state is GrabState.PROBING
                if machine.receive(ev):
                    self._start_job(ev)
                elif type(ev) is P.Error and not probing:
                    # A WORK_* the server no longer knows (CAN_DO_TIMEOUT ran out, or the
                    # WORK_FAIL after WORK_EXCEPTION): nothing to do.
                    log.debug("%s: server error %r %r", self.conn.address, ev.code, ev.text)
            if machine.state is not GrabState.PROBING:
                self.ready.set()
        finally:
            # Also when the machine raised (the server is out of step and the connection
            # goes): a slot it gave back may have let another connection grab.
            self.worker._flush()

    def _start_job(self, ev: Any) -> None:
        unique = b"" if type(ev) is P.JobAssign else ev.unique
        fn = self.worker._functions.get(ev.function)
        if fn is None:
            log.warning("%s: got a job for unknown function %r", self.conn.address, ev.function)
            self.conn.send(encode_request(P.WorkFail(ev.handle)))
            self.machine.job_done()
            return
        job = Job(self, ev.handle, ev.function.decode(errors="replace"), unique, ev.data)
        assert self.tg is not None
        self.tg.start_soon(self._run_job, fn, job, name=f"gearman job {ev.handle!r}")

    async def _run_job(self, fn: _Function, job: Job) -> None:
        packet: bytes | None = None
        try:
            try:
                if fn.is_async:
                    result = await fn.func(job)
                else:
                    result = await anyio.to_thread.run_sync(
                        fn.func, job, limiter=self.worker._limiter
                    )
                packet = encode_request(P.WorkComplete(job.handle, _to_bytes(result)))
            except ConnectionLost:
                packet = None  # the server requeues the job
            except JobFailed:
                packet = encode_request(P.WorkFail(job.handle))
            except Exception as exc:
                log.info("job %r (%s) raised %r", job.handle, job.function, exc)
                text = traceback.format_exception_only(exc)[-1].strip().encode()
                packet = encode_request(P.WorkException(job.handle, text))
                if self.machine.legacy:
                    packet += encode_request(P.WorkFail(job.handle))
            if packet is not None and not self.conn.closed:
                self.conn.send(packet)
        finally:
            self.machine.job_done()
            self.worker._flush()


class Worker:
    """A Gearman worker over one or more servers.

    Register functions with :meth:`function` (a decorator) or :meth:`register`, then
    ``await worker.run(concurrency=N)``; it serves until cancelled or :meth:`stop`-ped.
    """

    def __init__(
        self,
        *servers: str | tuple[str, int],
        client_id: str | bytes | None = None,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: Keepalive = DEFAULT_KEEPALIVE,
    ) -> None:
        self.servers: tuple[Address, ...] = parse_addresses(servers or ("127.0.0.1:4730",))
        #: TLS for every connection (see :func:`trigear.open_client`), or None.
        self.ssl_context = ssl_context
        #: TCP keepalive of its sockets: a server whose host vanished is noticed and
        #: the worker reconnects (``docs/robustness.md``).
        self.keepalive = keepalive
        if isinstance(client_id, str):
            client_id = client_id.encode()
        if client_id is not None:
            check(P.SetClientId(client_id))
        self.client_id: bytes | None = client_id
        self._functions: dict[bytes, _Function] = {}
        self._sessions: list[_WorkerSession] = []
        self._slots: Slots | None = None
        self._opened = 0
        self._stopping = False
        self._limiter = anyio.CapacityLimiter(1)
        self._running = False
        self._stop_event = anyio.Event()

    # -- registration --

    def register(
        self, name: str | bytes, func: JobFunction, *, timeout: float | None = None
    ) -> None:
        """Serve ``name`` with ``func``.  ``timeout`` (seconds) sends CAN_DO_TIMEOUT: the
        server takes the job back from a worker that holds it longer."""
        if self._running:
            raise RuntimeError("register functions before run()")
        fname = name.encode() if isinstance(name, str) else bytes(name)
        check(P.CanDo(fname))
        if not fname:
            raise ValueError("a function name must not be empty")
        if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004
        )
        self._functions[fname] = _Function(fname, func, is_async, timeout)

    def function(self, name: str | bytes, *, timeout: float | None = None) -> Callable[[F], F]:
        """Decorator form of :meth:`register`."""

        def decorate(func: F) -> F:
            self.register(name, func, timeout=timeout)
            return func

        return decorate

    # -- running --

    async def run(
        self,
        *,
        concurrency: int = 1,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve every server until cancelled, or until :meth:`stop` and the running jobs
        have finished.  ``task_status.started()`` fires once each server has been tried
        (registered, or found down)."""
        if not self._functions:
            raise ValueError("no functions registered")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self._running:
            raise RuntimeError("this worker is already running")
        self._running = True
        self._stopping = False
        self._stop_event = anyio.Event()
        self._slots = Slots(concurrency)
        self._limiter = anyio.CapacityLimiter(concurrency)
        tried = 0
        all_tried = anyio.Event()

        def on_tried() -> None:
            nonlocal tried
            tried += 1
            if tried == len(self.servers):
                all_tried.set()

        try:
            async with anyio.create_task_group() as tg:
                for address in self.servers:
                    tg.start_soon(self._serve, address, on_tried, name=f"gearman worker {address}")
                await all_tried.wait()
                task_status.started()
        finally:
            self._running = False
            self._sessions.clear()

    def stop(self) -> None:
        """Stop gracefully: take no new jobs, let running ones finish, then return from
        :meth:`run`.  Safe to call from any task, any number of times."""
        self._stopping = True
        self._stop_event.set()
        if self._slots is not None:
            self._slots.stop()
            self._flush()

    def statistics(self) -> WorkerStatistics:
        """Connections registered and opened so far, jobs running, free slots."""
        slots = self._slots
        if slots is None:
            return WorkerStatistics(connections=0, connections_opened=0, running=0, free=0)
        return WorkerStatistics(
            connections=slots.serving,
            connections_opened=self._opened,
            running=slots.running,
            free=slots.free,
        )

    def _flush(self) -> None:
        """Write what every connection's machine queued (a slot freed on one connection
        may have let another grab)."""
        for session in list(self._sessions):
            session.flush()

    async def _serve(self, address: Address, on_tried: Callable[[], None]) -> None:
        backoff = Backoff()
        first = True
        while not self._stopping:
            try:
                stream = await open_stream(address, self.ssl_context, self.keepalive)
            except OSError as exc:
                log.warning("%s: cannot connect: %s", address, exc)
                if first:
                    first = False
                    on_tried()
                await self._pause(backoff.failed(anyio.current_time()))
                continue
            self._opened += 1
            began = anyio.current_time()
            error = await self._session(Connection(stream, address), first and on_tried)
            first = False
            if self._stopping:
                return
            log.warning("%s: %s; reconnecting", address, error)
            if anyio.current_time() - began > _STABLE_AFTER:
                backoff.succeeded()
            await self._pause(backoff.failed(anyio.current_time()))

    async def _pause(self, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self._stop_event.wait()

    async def _session(
        self, conn: Connection, on_ready: Callable[[], None] | bool
    ) -> ConnectionLost | None:
        assert self._slots is not None
        functions = [(fn.name, fn.timeout) for fn in self._functions.values()]
        machine = GrabMachine(self._slots, functions, self.client_id)
        session = _WorkerSession(self, conn, machine)
        self._sessions.append(session)
        error: ConnectionLost | None = None
        try:
            async with anyio.create_task_group() as tg:
                session.tg = tg

                async def run_connection() -> None:
                    nonlocal error
                    error = await conn.run(session.on_events)
                    # Before the jobs are cancelled, so the slots they free go elsewhere.
                    machine.connection_lost()
                    self._flush()
                    tg.cancel_scope.cancel()

                tg.start_soon(run_connection)
                try:
                    session.flush()  # SET_CLIENT_ID and the probe
                    await session.ready.wait()
                    if callable(on_ready):
                        on_ready()
                finally:
                    if not session.ready.is_set() and callable(on_ready):
                        on_ready()  # the probe never came back: count the server as tried
        finally:
            if session in self._sessions:  # run() may have cleared them
                self._sessions.remove(session)
            machine.connection_lost()
            self._slots.remove(machine)
            self._flush()
        return error
