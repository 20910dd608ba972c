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
  running across every server.
* A job that raises ends with WORK_EXCEPTION carrying the error's text; one that raises
  :class:`JobFailed` ends with WORK_FAIL.  Either way the worker goes on serving.
* :meth:`Worker.stop` is graceful: no more grabs, running jobs finish and report, then
  the connections close and :meth:`Worker.run` returns.  Cancelling :meth:`Worker.run`
  closes the connections at once; the servers requeue the jobs this worker held.
* A connection that breaks cancels the jobs it carried (their server requeues them) and
  is reopened with backoff; the other servers keep being served meanwhile.
"""

from __future__ import annotations

import inspect
import logging
import math
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from ..protocol import check, encode_request
from ..protocol import packets as P
from .connection import Connection
from .errors import ConnectionLost, JobFailed
from .placement import Address, Backoff, parse_addresses

__all__ = ["Job", "JobFunction", "Worker"]

log = logging.getLogger("trigear.worker")

#: A worker function: ``async def f(job) -> bytes | str | None``, or a plain ``def``
#: (run in a worker thread).
JobFunction = (
    Callable[["Job"], Awaitable[bytes | str | None]] | Callable[["Job"], bytes | str | None]
)
F = TypeVar("F", bound=Callable[..., Any])

_GRAB_UNIQ: Final = encode_request(P.GrabJobUniq())
_GRAB: Final = encode_request(P.GrabJob())
_PRE_SLEEP: Final = encode_request(P.PreSleep())
#: A session shorter than this counts as a failed connect for the backoff.
_STABLE_AFTER: Final = 5.0


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

    __slots__ = ("_wc", "data", "function", "handle", "unique")

    def __init__(
        self, wc: _WorkerSession, handle: bytes, function: str, unique: bytes, data: bytes
    ) -> None:
        self._wc = wc
        self.handle = handle
        self.function = function
        #: The unique the job was submitted with (``b""`` from a legacy server).
        self.unique = unique
        self.data = data

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function} {len(self.data)} bytes>"

    async def _send(self, event: Any) -> None:
        conn = self._wc.conn
        await conn.wait_writable()
        conn.send(encode_request(event))

    async def send_status(self, numerator: int, denominator: int) -> None:
        """WORK_STATUS: progress ``numerator`` out of ``denominator``."""
        if numerator < 0 or denominator < 0:
            raise ValueError("status numbers must not be negative")
        await self._send(P.WorkStatus(self.handle, b"%d" % numerator, b"%d" % denominator))

    async def send_data(self, data: bytes | str) -> None:
        """WORK_DATA: partial output (dropped on legacy servers, which lack it)."""
        if self._wc.legacy:
            await anyio.lowlevel.checkpoint()
            return
        await self._send(P.WorkData(self.handle, _to_bytes(data)))

    async def send_warning(self, data: bytes | str) -> None:
        """WORK_WARNING (dropped on legacy servers, which lack it)."""
        if self._wc.legacy:
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
    """The grab/sleep state machine of one connection.  Every method is synchronous."""

    def __init__(self, worker: Worker, conn: Connection, tg: anyio.abc.TaskGroup) -> None:
        self.worker = worker
        self.conn = conn
        self.tg = tg
        self.probing = True
        self.legacy = False
        self.ready = anyio.Event()
        self.outstanding = 0
        self.sleeping = False
        self.saw_no_job = False
        self.running = 0

    def start(self) -> None:
        w = self.worker
        if w.client_id is not None:
            self.conn.send(encode_request(P.SetClientId(w.client_id)))
        self.conn.send(_GRAB_UNIQ)

    def _register(self) -> None:
        out = []
        for fn in self.worker.functions.values():
            if fn.timeout is None:
                out.append(encode_request(P.CanDo(fn.name)))
            else:
                # gearmand and trigear take milliseconds; the Perl server, seconds.
                t = math.ceil(fn.timeout) if self.legacy else math.ceil(fn.timeout * 1000)
                out.append(encode_request(P.CanDoTimeout(fn.name, max(1, t))))
        self.conn.send(b"".join(out))

    def on_events(self, events: list[Any]) -> None:
        for ev in events:
            cls = type(ev)
            if cls is P.JobAssignUniq:
                self.outstanding -= 1
                self._start_job(ev.handle, ev.function, ev.unique, ev.data)
            elif cls is P.JobAssign:
                self.outstanding -= 1
                self._start_job(ev.handle, ev.function, b"", ev.data)
            elif cls is P.JobAssignAll:
                self.outstanding -= 1
                self._start_job(ev.handle, ev.function, ev.unique, ev.data)
            elif cls is P.NoJob:
                if self.probing:
                    self._probed(legacy=False)
                    continue
                self.outstanding -= 1
                self.worker.free += 1
                self.saw_no_job = True
            elif cls is P.Noop:
                if self.sleeping:
                    self.sleeping = False
                    self.saw_no_job = False
            elif cls is P.Error:
                if self.probing:
                    self._probed(legacy=True)
                    continue
                # A WORK_* the server no longer knows (CAN_DO_TIMEOUT ran out, or the
                # WORK_FAIL after WORK_EXCEPTION): nothing to do.
                log.debug("%s: server error %r %r", self.conn.address, ev.code, ev.text)
        self.pump()
        if self.worker.free:
            # A NO_JOB here freed a slot this connection will not use (it goes to sleep):
            # offer it to the other connections, which may be awake and waiting for one.
            self.worker.offer()

    def _probed(self, *, legacy: bool) -> None:
        self.probing = False
        self.legacy = legacy
        self._register()
        self.ready.set()
        self.worker.connections.add(self)

    def pump(self) -> None:
        """Send the grabs (or the PRE_SLEEP) the current state calls for."""
        if self.probing or self.conn.closed:
            return
        w = self.worker
        if w.stopping:
            if self.running == 0:
                self.conn.close_when_flushed("worker stopped")
            return
        if self.sleeping:
            return
        if self.saw_no_job:
            if self.outstanding == 0:
                self.conn.send(_PRE_SLEEP)
                self.sleeping = True
                self.saw_no_job = False
            return
        n = w.free
        if n > 0:
            w.free = 0
            self.outstanding += n
            self.conn.send((_GRAB if self.legacy else _GRAB_UNIQ) * n)

    def _start_job(self, handle: bytes, function: bytes, unique: bytes, data: bytes) -> None:
        fn = self.worker.functions.get(function)
        if fn is None:
            log.warning("%s: got a job for unknown function %r", self.conn.address, function)
            self.conn.send(encode_request(P.WorkFail(handle)))
            self.worker.free += 1
            return
        self.running += 1
        job = Job(self, handle, function.decode(errors="replace"), unique, data)
        self.tg.start_soon(self._run_job, fn, job, name=f"gearman job {handle!r}")

    async def _run_job(self, fn: _Function, job: Job) -> None:
        packet: bytes | None = None
        try:
            try:
                if fn.is_async:
                    result = await fn.func(job)
                else:
                    result = await anyio.to_thread.run_sync(
                        fn.func, job, limiter=self.worker.limiter
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
                if self.legacy:
                    packet += encode_request(P.WorkFail(job.handle))
            if packet is not None and not self.conn.closed:
                self.conn.send(packet)
        finally:
            self.running -= 1
            self.worker.release()


class Worker:
    """A Gearman worker over one or more servers.

    Register functions with :meth:`function` (a decorator) or :meth:`register`, then
    ``await worker.run(concurrency=N)``; it serves until cancelled or :meth:`stop`-ped.
    """

    def __init__(
        self, *servers: str | tuple[str, int], client_id: str | bytes | None = None
    ) -> None:
        self.servers: tuple[Address, ...] = parse_addresses(servers or ("127.0.0.1:4730",))
        if isinstance(client_id, str):
            client_id = client_id.encode()
        if client_id is not None:
            check(P.SetClientId(client_id))
        self.client_id: bytes | None = client_id
        self.functions: dict[bytes, _Function] = {}
        self.connections: set[_WorkerSession] = set()
        self.free = 0
        self.stopping = False
        self.limiter = anyio.CapacityLimiter(1)
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
        self.functions[fname] = _Function(fname, func, is_async, timeout)

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
        if not self.functions:
            raise ValueError("no functions registered")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self._running:
            raise RuntimeError("this worker is already running")
        self._running = True
        self.stopping = False
        self._stop_event = anyio.Event()
        self.free = concurrency
        self.limiter = anyio.CapacityLimiter(concurrency)
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
            self.connections.clear()

    def stop(self) -> None:
        """Stop gracefully: take no new jobs, let running ones finish, then return from
        :meth:`run`.  Safe to call from any task, any number of times."""
        self.stopping = True
        self._stop_event.set()
        for wc in list(self.connections):
            wc.pump()

    def release(self) -> None:
        """A slot is free again: let every connection grab with it."""
        self.free += 1
        self.offer()

    def offer(self) -> None:
        """Let every connection that is awake grab with the free slots."""
        for wc in list(self.connections):
            wc.pump()
            if self.free == 0:
                break

    def statistics(self) -> dict[str, int]:
        """Connections registered, jobs running, free slots."""
        return {
            "connections": len(self.connections),
            "running": sum(wc.running for wc in self.connections),
            "free": self.free,
        }

    async def _serve(self, address: Address, on_tried: Callable[[], None]) -> None:
        backoff = Backoff()
        first = True
        while not self.stopping:
            try:
                stream = await anyio.connect_tcp(address.host, address.port)
            except OSError as exc:
                log.warning("%s: cannot connect: %s", address, exc)
                if first:
                    first = False
                    on_tried()
                await self._pause(backoff.failed(anyio.current_time()))
                continue
            began = anyio.current_time()
            error = await self._session(Connection(stream, address), first and on_tried)
            first = False
            if self.stopping:
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
        error: ConnectionLost | None = None
        async with anyio.create_task_group() as tg:
            wc = _WorkerSession(self, conn, tg)

            async def run_connection() -> None:
                nonlocal error
                error = await conn.run(wc.on_events)
                tg.cancel_scope.cancel()

            tg.start_soon(run_connection)
            try:
                wc.start()
                await wc.ready.wait()
                if callable(on_ready):
                    on_ready()
            finally:
                if not wc.ready.is_set() and callable(on_ready):
                    on_ready()  # the probe never came back: count the server as tried
        self.connections.discard(wc)
        self.free += wc.outstanding
        wc.outstanding = 0
        return error
