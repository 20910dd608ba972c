"""The live jobs by handle, in about half the memory of a table keyed by handle bytes.

A handle this server made is its prefix (``H:<name>:``) and a number.  Rather than keep
a bytes object of ~21 characters per queued job (64 bytes with its header), the table is
keyed by the number (a 32-byte int) and a job makes its handle when asked for it
(:attr:`~trigear.server.state.JobRecord.handle`), which is a few times per run, not per
second of queueing.  A handle of any other form -- a job adopted from another server,
or replayed from a store written under another name -- is kept as it is.

To its users it is a read-only mapping from handle bytes to jobs; the scheduler adds and
removes jobs by their key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, ValuesView
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import JobRecord

__all__ = ["JobIndex"]

#: Longest number kept as an int: 19 digits, below 2**64 (gearmand's handles are too).
_MAX_DIGITS = 19


class JobIndex(Mapping[bytes, "JobRecord"]):
    """Live jobs by handle (see the module docstring)."""

    __slots__ = ("_jobs", "_prefix")

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        self._jobs: dict[int | bytes, JobRecord] = {}

    def key(self, handle: bytes) -> int | bytes:
        """The table key of ``handle``: its number if it is this server's prefix and a
        number in its one decimal spelling (no sign, no leading zero), else itself."""
        prefix = self._prefix
        if handle.startswith(prefix):
            digits = handle[len(prefix) :]
            if digits.isdigit() and digits[0] != 48 and len(digits) <= _MAX_DIGITS:
                return int(digits)
        return handle

    def add(self, job: JobRecord) -> None:
        self._jobs[job.key] = job

    def discard(self, job: JobRecord) -> bool:
        """Remove ``job``; False if it was not there."""
        return self._jobs.pop(job.key, None) is not None

    # --- the mapping ------------------------------------------------------------------

    def get(self, handle: bytes, default: JobRecord | None = None) -> JobRecord | None:  # type: ignore[override]
        return self._jobs.get(self.key(handle), default)

    def __getitem__(self, handle: bytes) -> JobRecord:
        return self._jobs[self.key(handle)]

    def __contains__(self, handle: object) -> bool:
        return isinstance(handle, bytes) and self.key(handle) in self._jobs

    def __iter__(self) -> Iterator[bytes]:
        return (job.handle for job in self._jobs.values())

    def __reversed__(self) -> Iterator[bytes]:
        return (job.handle for job in reversed(self._jobs.values()))

    def __len__(self) -> int:
        return len(self._jobs)

    def values(self) -> ValuesView[JobRecord]:
        return self._jobs.values()

    def __repr__(self) -> str:
        return f"JobIndex({dict(self.items())!r})"
