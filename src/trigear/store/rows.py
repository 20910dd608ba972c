"""A stored job as a table row: the one mapping both SQL stores use.

SQLite and PostgreSQL keep a job in the same eight columns (their schemas differ only in
column types and in how the original order is kept).  The column names, their order in
statements and the conversion each way live here, so the two stores cannot drift apart:
a field added to :class:`StoredJob` is added here once, and the shared store suite
(``tests/store``) checks it survives both.

Going in, every byte field becomes exact ``bytes`` (the server may hand over a
``bytearray`` or ``memoryview``) and the priority its integer; coming out, byte columns
become ``bytes`` whatever the driver returns for a blob, and the priority a
:class:`Priority` again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .base import Priority, StoredJob

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["COLUMNS", "SELECT_LIST", "UPDATE_FROM_EXCLUDED", "Row", "from_row", "to_row"]

#: The job columns, in the order of :data:`Row`.  ``handle`` is the key.
COLUMNS: Final = (
    "handle",
    "function",
    "unique_key",
    "data",
    "priority",
    "run_at",
    "reducer",
    "attempts",
)
#: ``handle, function, ...``: for ``SELECT`` and ``INSERT`` column lists.
SELECT_LIST: Final = ", ".join(COLUMNS)
#: ``function = excluded.function, ...``: an upsert that replaces every field but the key
#: (and so keeps the row's place in the original order).
UPDATE_FROM_EXCLUDED: Final = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])

#: handle, function, unique_key, data, priority, run_at, reducer, attempts.
Row = tuple[bytes, bytes, bytes, bytes, int, int | None, bytes | None, int]


def to_row(job: StoredJob) -> Row:
    """The row to write for ``job``."""
    return (
        bytes(job.handle),
        bytes(job.function),
        bytes(job.unique),
        bytes(job.data),
        int(job.priority),
        job.when,
        None if job.reducer is None else bytes(job.reducer),
        job.attempts,
    )


def from_row(row: Sequence[Any]) -> StoredJob:
    """The job a row read back (columns in :data:`COLUMNS` order) holds."""
    handle, function, unique, data, priority, run_at, reducer, attempts = row
    return StoredJob(
        handle=bytes(handle),
        function=bytes(function),
        unique=bytes(unique),
        data=bytes(data),
        priority=Priority(priority),
        when=None if run_at is None else int(run_at),
        reducer=None if reducer is None else bytes(reducer),
        attempts=int(attempts),
    )
