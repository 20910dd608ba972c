"""The Gearman client: submit jobs, stream their progress, ask their status.

How a call maps to the wire, and what cancelling it does (see ``docs/client.md``):

* Each server gets at most one connection, opened on first use and reopened after it
  breaks.  The client's :class:`~trigear.client.routing.Session` with a server pairs
  that connection (:mod:`.connection`, the transport) with the routing that matches
  answers to calls (:mod:`.routing`: a FIFO for in-order answers, WORK_* by handle).
* A call cancelled before its packet is queued sent nothing.  A call cancelled after
  that leaves its FIFO entry abandoned: the entry still takes the answer (so later calls
  stay matched).  A foreground submit's place among the submits attached to its job
  stays until the job ends, empty, swallowing the copies of WORK_* the server still
  sends it (spec S2: one attachment per submit), so other submits of the same unique
  keep getting exactly their own; the cancelled call's own state is dropped at once.
  The connection stays usable in every case; packets are queued whole, so no half
  packet is ever left on the wire.
  :meth:`Client.statistics` counts connections opened, so a test can tell "the
  connection survived" from "the client quietly reconnected".
* A submit whose connection dies before JOB_CREATED is retried on the next server (the
  server may or may not have taken it: at-least-once, as Gearman always is).  A foreground
  job whose connection dies after JOB_CREATED raises :class:`ConnectionLost`: the job may
  have run, and resubmitting is the application's call.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc

from .._keepalive import DEFAULT_KEEPALIVE, Keepalive
from ..protocol import check, encode_request
from ..protocol import packets as P
from ..protocol.packets import Priority
from .connection import Connection, open_stream
from .errors import ConnectionLost, NoServerAvailable
from .placement import Address, Backoff, Placement, parse_addresses
from .routing import ANSWER_TO, Session, Submission, Waiter
from .updates import JobStatus, Update

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Iterable, Sequence

__all__ = ["Client", "ClientStatistics", "JobStream", "open_client"]

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


def _bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """A snapshot of :meth:`Client.statistics`."""

    #: Connections open now (at most one per server).
    connections: int
    #: Connections opened since the client was: one per server unless one broke (or
    #: was dropped for an answer out of step) and was reopened.
    connections_opened: int
    #: Requests whose in-order answer has not come yet, abandoned ones included.
    pending: int
    #: Foreground submits whose job's WORK_* packets are being routed to them (a
    #: submit whose caller gave up is not counted, though its place swallows the
    #: packets until its job ends).
    jobs: int


class JobStream:
    """A foreground job whose progress is being read (from :meth:`Client.submit_stream`).

    ``async for update in job`` yields :class:`DataUpdate`, :class:`StatusUpdate` and
    :class:`WarningUpdate` in the order the worker sent them and stops when the job
    completes; if it fails it raises :class:`JobFailed` or :class:`JobException`.
    """

    def __init__(self, job: Submission) -> None:
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
        ssl_context: ssl.SSLContext | None = None,
        keepalive: Keepalive = DEFAULT_KEEPALIVE,
    ) -> None:
        self.servers = tuple(servers)
        self._tg = task_group
        self._ssl_context = ssl_context
        self._keepalive = keepalive
        self._client_id = _bytes(client_id, "client_id") if client_id is not None else None
        if self._client_id is not None:
            check(P.SetClientId(self._client_id))
        self._placement = Placement(self.servers)
        self._sessions: dict[Address, Session] = {}
        self._opened = 0
        self._locks = {a: anyio.Lock() for a in self.servers}
        self._backoff = {a: Backoff() for a in self.servers}
        self._handles: OrderedDict[bytes, Address] = OrderedDict()
        self._closed = False

    # -- sessions --

    async def _session(self, address: Address) -> Session:
        """The open session with ``address``, connecting first if there is none."""
        session = self._sessions.get(address)
        if session is not None and not session.conn.closed:
            return session
        async with self._locks[address]:
            session = self._sessions.get(address)
            if session is not None and not session.conn.closed:
                return session
            self._check_open()
            try:
                stream = await open_stream(address, self._ssl_context, self._keepalive)
            except OSError as exc:
                self._backoff[address].failed(anyio.current_time())
                raise ConnectionLost(f"{address}: cannot connect: {exc}") from exc
            self._backoff[address].succeeded()
            self._opened += 1
            session = Session(Connection(stream, address))
            # Ask for WORK_EXCEPTION; the answer (OPTION_RES, or ERROR from a server
            # without the option, or none from geard) is taken by an abandoned,
            # optional FIFO entry.
            option = Waiter(P.OptionRes, optional=True)
            option.abandoned = True
            if self._client_id is not None:
                session.conn.send(encode_request(P.SetClientId(self._client_id)))
            session.request(option, encode_request(P.OptionReq(b"exceptions")))
            self._sessions[address] = session
            self._tg.start_soon(self._run_session, session)
            return session

    async def _run_session(self, session: Session) -> None:
        error = await session.conn.run(session.on_events)
        session.lost(error)
        address = session.conn.address
        if self._sessions.get(address) is session:
            del self._sessions[address]
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
                session = await self._session(address)
                await session.conn.wait_writable()
                waiter = Waiter(ANSWER_TO[type(event)])
                session.request(waiter, packet)
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
    ) -> tuple[Session, Submission]:
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
                session = await self._session(address)
                await session.conn.wait_writable()
                job = Submission(background=background, stream=stream)
                session.request(job, packet)
            except ConnectionLost as exc:
                errors.append(exc)
                continue
            await session.wait(job, until_created=background or stream)
            if isinstance(job.error, ConnectionLost) and not job.created:
                errors.append(job.error)  # never taken, or not known to be: next server
                continue
            if background and job.handle is not None and job.error is None:
                self._remember(job.handle, address)
            return session, job
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
        session, job = await self._submit(
            _FOREGROUND[Priority(priority)], function, data, unique, background=False, stream=True
        )
        if job.error is not None:
            raise job.error
        try:
            yield JobStream(job)
        finally:
            if not job.settled:
                session.forget(job)

    # -- status and echo --

    async def get_status(self, handle: str | bytes) -> JobStatus:
        """GET_STATUS.  Asks the server that created ``handle`` first if this client
        submitted it in the background, then each other server in turn until one knows
        it: servers sharing a store take over a dead server's jobs under their handles,
        so the creator may be gone, or answer "unknown" for a job another server holds
        now."""
        h = _bytes(handle, "handle")
        event = P.GetStatus(h)
        check(event)
        known = self._handles.get(h)
        servers = self._order(list(self._placement.addresses))
        if known is not None:
            servers = [known, *(a for a in servers if a != known)]
        errors: list[ConnectionLost] = []
        answer: P.StatusRes | None = None
        for address in servers:
            try:
                reply: P.StatusRes = await self._call([address], event)
            except NoServerAvailable as exc:
                if isinstance(exc.__cause__, ConnectionLost):
                    errors.append(exc.__cause__)
                continue
            if answer is None or reply.known:
                answer = reply
            if reply.known:
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
        for session in list(self._sessions.values()):
            session.conn.close("client closed")

    def statistics(self) -> ClientStatistics:
        """Connections open and opened so far, calls waiting for an answer, jobs followed."""
        sessions = self._sessions.values()
        return ClientStatistics(
            connections=sum(not s.conn.closed for s in sessions),
            connections_opened=self._opened,
            pending=sum(len(s.pending) for s in sessions),
            jobs=sum(s.followed for s in sessions),
        )


def _unavailable(errors: list[ConnectionLost]) -> NoServerAvailable:
    text = "; ".join(str(e) for e in errors) or "no server"
    exc = NoServerAvailable(f"no server available: {text}")
    if errors:
        exc.__cause__ = errors[-1]
    return exc


@asynccontextmanager
async def open_client(
    *servers: str | tuple[str, int],
    client_id: str | bytes | None = None,
    ssl_context: ssl.SSLContext | None = None,
    keepalive: Keepalive = DEFAULT_KEEPALIVE,
) -> AsyncIterator[Client]:
    """Open a client over ``servers`` (``"host:port"``; default ``127.0.0.1:4730``).

    Connections are opened on first use, one per server, and closed on exit.  Works under
    Trio and asyncio (through anyio); no threads.  With ``ssl_context`` every connection
    speaks TLS (``ssl.create_default_context(cafile=...)``, plus ``load_cert_chain`` for
    a server that asks for client certificates: ``docs/security.md``); a server whose
    certificate does not verify is one that cannot be reached.  ``keepalive``: the TCP
    keepalive timings of its sockets (``Keepalive(idle=0)``: off), so a server whose
    host vanished is noticed (``docs/robustness.md``).
    """
    addresses = parse_addresses(servers or ("127.0.0.1:4730",))
    try:
        async with anyio.create_task_group() as tg:
            client = Client(
                addresses, tg, client_id=client_id, ssl_context=ssl_context, keepalive=keepalive
            )
            try:
                yield client
            finally:
                client._close()
    except BaseExceptionGroup as group:
        # Connection tasks never raise, so a group here holds what the block raised.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
