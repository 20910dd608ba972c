"""The store interface: where background jobs live so that they outlast the process (S19).

The dispatcher never waits on a store.  It hands every change of one pass -- jobs to add,
jobs that ended, attempt counts that moved -- to a single writer task, which applies them
with one :meth:`Store.commit` (group commit) and reports back; a background submit's
JOB_CREATED goes out only after the commit holding it succeeded.  A commit that raises
:class:`StoreError` fails every submit in it with ``ERROR QUEUE_ERROR`` and the server goes
on serving (a later commit may succeed when the store is back).

At start the server calls :meth:`Store.load` and replays every stored job in its original
order and priority, epoch jobs at their time, under their original handles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..protocol.packets import Priority

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["LoadResult", "Priority", "Store", "StoreError", "StoredJob"]


class StoreError(Exception):
    """A store could not do what was asked (disk full, database gone, ...)."""


@dataclass(slots=True)
class StoredJob:
    """One background job as a store keeps it."""

    handle: bytes
    function: bytes
    unique: bytes
    data: bytes
    priority: Priority = Priority.NORMAL
    #: Unix time the job becomes runnable (SUBMIT_JOB_EPOCH), else None.
    when: int | None = None
    #: Reducer of a SUBMIT_REDUCE_JOB_BACKGROUND, else None.
    reducer: bytes | None = None
    #: Runs started and lost so far (S9-S11); survives restarts.
    attempts: int = 0


@dataclass(slots=True)
class LoadResult:
    """What a store holds at start: jobs in submission order, and the highest handle
    number it has ever issued (so handles stay unique across restarts, S17)."""

    jobs: list[StoredJob]
    last_handle_number: int


@runtime_checkable
class Store(Protocol):
    """A place to keep background jobs.  Implementations: memory, SQLite, PostgreSQL."""

    #: Human-readable description for the startup line (e.g. ``"sqlite:/var/q.db"``).
    description: str
    #: False for the memory store: background jobs die with the process.
    durable: bool

    async def load(self) -> LoadResult:
        """Open the store and return every job it holds."""
        ...

    async def commit(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> None:
        """Apply one batch atomically: add jobs, remove jobs by handle, set attempt counts,
        and record the handle high-water mark.  Raise :class:`StoreError` on failure (then
        nothing of the batch is applied).

        Within a batch, adds are applied first (in the given order, which is the order
        :meth:`load` gives back), then attempt counts, then removals.  Adding a handle
        the store already holds replaces that job's fields and keeps its place; attempt
        counts and removals for handles the store does not hold are ignored.  The
        high-water mark only grows: a smaller ``last_handle_number`` leaves it as it is.
        """
        ...

    async def aclose(self) -> None:
        """Release the store's resources.  Safe to call twice."""
        ...
