"""A blocking Gearman client, for code that is not async: a Django or Flask view, a script.

It is the async :class:`~trigear.client.submit.Client`, not a second implementation: an
event loop (Trio) runs in one background thread, the client lives there, and each call is
handed to it through an anyio blocking portal and waited for.  So every rule of the async
client holds (placement, failover, what a job failure raises), and:

* **Threads.**  Any number of threads may call one :class:`BlockingClient` at once; their
  calls run concurrently on the loop, over the same connections.  One client per process
  is the intended use (make it at start-up, close it at exit).  After ``fork()`` the loop
  thread is gone: a client made before a fork refuses to be used in the child.
* **Timeouts.**  A blocking caller has no cancel scope, so here -- and only here -- the
  library takes ``timeout=`` (seconds).  When it runs out the call raises the built-in
  :class:`TimeoutError` and is cancelled on the loop, which leaves the client usable: the
  job itself is not cancelled (a Gearman client cannot do that), its result is dropped.
  ``timeout=None`` (the default) waits as long as it takes.
* **Errors** are the async client's, raised in the calling thread: :class:`JobFailed`,
  :class:`JobException`, :class:`ServerError`, :class:`ConnectionLost`,
  :class:`NoServerAvailable`; a call after :meth:`BlockingClient.close` raises
  ``anyio.ClosedResourceError`` as the async client does.
* **Closing** (:meth:`BlockingClient.close`, or leaving its ``with`` block) closes the
  connections -- calls still in flight in other threads raise :class:`ConnectionLost` --
  then stops the loop and joins its thread.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
import anyio.from_thread

from ..protocol.packets import Priority
from .submit import open_client

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from contextlib import AbstractContextManager
    from datetime import datetime
    from types import TracebackType

    from .placement import Address
    from .submit import Client, ClientStatistics, JobStream
    from .updates import JobStatus, Update

__all__ = ["BlockingClient", "BlockingJobStream"]

T = TypeVar("T")

#: The event loop the background thread runs (the client itself is anyio).
BACKEND: Final = "trio"

_END: Final = object()


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not (timeout >= 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
    return timeout


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


async def _within(seconds: float | None, func: Callable[[], Awaitable[T]]) -> T:
    """Await ``func()``, raising TimeoutError after ``seconds`` (on the loop thread)."""
    if seconds is None:
        return await func()
    with anyio.fail_after(seconds):
        return await func()


class BlockingJobStream:
    """A foreground job whose progress is being read, from :meth:`BlockingClient.submit_stream`.

    ``for update in job`` yields :class:`~trigear.DataUpdate`,
    :class:`~trigear.StatusUpdate` and :class:`~trigear.WarningUpdate` as the worker
    sends them and stops when the job completes; if it fails, the loop raises
    :class:`~trigear.JobFailed` or :class:`~trigear.JobException`.
    """

    def __init__(self, client: BlockingClient, stream: JobStream, deadline: float | None) -> None:
        self._client = client
        self._stream = stream
        self._deadline = deadline
        #: The job handle the server gave it.
        self.handle: bytes = stream.handle

    def __iter__(self) -> Iterator[Update]:
        return self

    def __next__(self) -> Update:
        update = self._client._run(_left(self._deadline), self._next)
        if update is _END:
            raise StopIteration
        return update  # type: ignore[return-value]

    async def _next(self) -> object:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return _END

    def wait(self) -> bytes:
        """Skip the remaining updates and return the result (or raise the failure)."""
        return self._client._run(_left(self._deadline), self._stream.wait)

    @property
    def done(self) -> bool:
        """True once the job has ended and every update was read."""
        return self._client._portal_call(lambda: self._stream.done)

    @property
    def result(self) -> bytes:
        """The job's result once the stream ended; raises the failure if it failed."""
        return self._client._portal_call(lambda: self._stream.result)


class BlockingClient:
    """A Gearman client whose calls block: the async client on a background event loop.

    ``BlockingClient("host:port", ...)`` starts the loop thread; the connections open on
    first use.  Use it as a context manager, or call :meth:`close`::

        with trigear.BlockingClient("127.0.0.1:4730") as client:
            print(client.submit("reverse", "hello", timeout=10))  # b'olleh'
    """

    def __init__(
        self,
        *servers: str | tuple[str, int],
        client_id: str | bytes | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._portal_cm = anyio.from_thread.start_blocking_portal(BACKEND)
        self._portal = self._portal_cm.__enter__()
        try:
            self._client_cm: AbstractContextManager[Client] = (
                self._portal.wrap_async_context_manager(
                    open_client(*servers, client_id=client_id, ssl_context=ssl_context)
                )
            )
            self._client = self._client_cm.__enter__()
        except BaseException as exc:
            self._portal_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        #: The servers, parsed, in the order given.
        self.servers: tuple[Address, ...] = self._client.servers

    # -- plumbing --

    def _check(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError("the client is closed")
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this BlockingClient was made before fork(): make a new one in this process"
            )

    def _portal_call(self, func: Callable[[], T]) -> T:
        self._check()
        try:
            return self._portal.call(func)
        except RuntimeError:
            if self._closed:  # closed by another thread while this call was on its way
                raise anyio.ClosedResourceError("the client is closed") from None
            raise

    def _run(self, timeout: float | None, func: Callable[[], Awaitable[T]]) -> T:
        self._check()
        try:
            return self._portal.call(_within, _check_timeout(timeout), func)
        except RuntimeError:
            if self._closed:
                raise anyio.ClosedResourceError("the client is closed") from None
            raise

    # -- the calls --

    def submit(
        self,
        function: str | bytes,
        data: str | bytes = b"",
        *,
        unique: str | bytes | None = None,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
    ) -> bytes:
        """Run a job and return its result; see :meth:`trigear.Client.submit`.

        Raises :class:`TimeoutError` if it has not ended within ``timeout`` seconds.
        """
        call = functools.partial(
            self._client.submit, function, data, unique=unique, priority=priority
        )
        return self._run(timeout, call)

    def submit_background(
        self,
        function: str | bytes,
        data: str | bytes = b"",
        *,
        unique: str | bytes | None = None,
        priority: Priority = Priority.NORMAL,
        run_at: datetime | float | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Queue a job and return its handle; see :meth:`trigear.Client.submit_background`."""
        call = functools.partial(
            self._client.submit_background,
            function,
            data,
            unique=unique,
            priority=priority,
            run_at=run_at,
        )
        return self._run(timeout, call)

    @contextmanager
    def submit_stream(
        self,
        function: str | bytes,
        data: str | bytes = b"",
        *,
        unique: str | bytes | None = None,
        priority: Priority = Priority.NORMAL,
        timeout: float | None = None,
    ) -> Iterator[BlockingJobStream]:
        """Run a job and read its progress: ``with client.submit_stream(...) as job``.

        ``timeout`` bounds the whole job: entering (JOB_CREATED) and every step of the
        iteration raise :class:`TimeoutError` once it has run out.  Leaving the block
        early stops the routing of the job's packets to it, as in the async client.
        """
        self._check()
        deadline = _deadline(_check_timeout(timeout))
        stream_cm = self._client.submit_stream(function, data, unique=unique, priority=priority)
        wrapped = self._portal.wrap_async_context_manager(_entered(stream_cm, deadline))
        with wrapped as stream:
            yield BlockingJobStream(self, stream, deadline)

    def get_status(self, handle: str | bytes, *, timeout: float | None = None) -> JobStatus:
        """GET_STATUS; see :meth:`trigear.Client.get_status`."""
        return self._run(timeout, functools.partial(self._client.get_status, handle))

    def get_status_unique(self, unique: str | bytes, *, timeout: float | None = None) -> JobStatus:
        """GET_STATUS_UNIQUE; see :meth:`trigear.Client.get_status_unique`."""
        return self._run(timeout, functools.partial(self._client.get_status_unique, unique))

    def echo(self, data: str | bytes = b"", *, timeout: float | None = None) -> bytes:
        """ECHO_REQ to the next server; return what it echoed."""
        return self._run(timeout, functools.partial(self._client.echo, data))

    def statistics(self) -> ClientStatistics:
        """A snapshot: connections open, calls waiting for an answer, jobs being followed."""
        return self._portal_call(self._client.statistics)

    # -- lifetime --

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connections, stop the loop and join its thread.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if os.getpid() != self._pid:
            return  # the loop thread lives in the parent process only
        try:
            self._client_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@asynccontextmanager
async def _entered(stream_cm: Any, deadline: float | None) -> AsyncIterator[JobStream]:
    """Enter ``submit_stream`` within what is left of ``deadline``; the deadline does not
    span the block (each step of the iteration applies it again)."""
    async with AsyncExitStack() as stack:
        with anyio.fail_after(_left(deadline)):
            stream: JobStream = await stack.enter_async_context(stream_cm)
        yield stream
