"""One dedicated OS thread that owns a blocking database connection.

Both durable stores use blocking drivers (``sqlite3``, psycopg's sync connection: psycopg's
async connection needs asyncio and does not run under Trio).  Every call on the
connection is made from the same thread, in order, so a store has exactly one connection
and one thread, and no locking of its own.

A call waits for its result shielded from cancellation: once a batch is handed to the
database, the caller learns how it ended (committed, or :class:`StoreError`), even when
the waiting task is being cancelled.  A server shutting down therefore waits for the
commit in flight, which is bounded by the driver's own timeouts.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Generic, TypeVar

import trio

from .base import LoadResult, StoredJob, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["DbThread", "ThreadedStore"]

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("done", "error", "fn", "result", "token")

    def __init__(self, fn: Callable[[], T], token: trio.lowlevel.TrioToken) -> None:
        self.fn = fn
        self.token = token
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class DbThread:
    """A worker thread fed by a queue; :meth:`run` awaits one call made on it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Call[object] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the thread and return its result or raise its exception."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.start()
        call: _Call[T] = _Call(fn, trio.lowlevel.current_trio_token())
        self._queue.put(call)  # type: ignore[arg-type]
        with trio.CancelScope(shield=True):
            await call.done.wait()
        if call.error is not None:
            error, call.error = call.error, None
            raise error
        return call.result  # type: ignore[return-value]

    async def stop(self) -> None:
        """Let the thread finish its queue and end.  Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        await trio.to_thread.run_sync(thread.join)

    def _main(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            try:
                call.result = call.fn()
            except BaseException as exc:
                call.error = exc
            call.token.run_sync_soon(call.done.set)


class ThreadedStore:
    """The Trio face shared by the durable stores: every :class:`~.base.Store` call runs
    on the store's one :class:`DbThread`.  Subclasses implement the blocking ``_load``,
    ``_commit`` and ``_close_connection``, which only ever run on that thread."""

    description: str
    durable = True

    def __init__(self, thread_name: str) -> None:
        self._thread = DbThread(thread_name)
        self._closed = False

    async def load(self) -> LoadResult:
        return await self._run(self._load)

    async def commit(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> None:
        await self._run(lambda: self._commit(add, remove, attempts, last_handle_number))

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.running:
            await self._thread.run(self._close_connection)
        await self._thread.stop()

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError(f"{self.description}: the store is closed")
        return await self._thread.run(fn)

    # -- on the database thread -------------------------------------------------------------

    def _load(self) -> LoadResult:
        raise NotImplementedError

    def _commit(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> object:
        raise NotImplementedError

    def _close_connection(self) -> None:
        raise NotImplementedError
