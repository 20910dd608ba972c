"""The live jobs by handle, in a fraction of the memory of a table keyed by handle bytes.

A handle this server made is its prefix (``H:<name>:``) and a number, and the numbers
go up by one per job.  Rather than keep a bytes object of ~21 characters per queued job
(64 bytes with its header), a job keeps the number (:attr:`JobRecord.key
<trigear.server.state.JobRecord.key>`) and makes its handle when asked for it, a few
times per run, not per second of queueing.

Rather than a dictionary entry per job (about 35 bytes at 300,000 jobs), the jobs of
this server's recent handles sit in a *window*: a list whose slot ``i`` holds the job
of number ``base + i`` (8 bytes per slot), or None once that job ended.  The window's
front moves on as the oldest jobs end, and it never grows mostly empty: a job whose
number is far behind the others (an epoch job for tomorrow under a stream of short
ones) moves to a dictionary, as does a handle of any other form (a job adopted from
another server, or replayed from a store written under another name).

To its users it is a read-only mapping from handle bytes to jobs, listing the jobs in
the dictionary first, then the window's in handle order; the scheduler adds and removes
jobs by their key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import JobRecord

__all__ = ["JobIndex"]

#: Longest number kept as an int: 19 digits, below 2**64 (gearmand's handles are too).
_MAX_DIGITS = 19
#: Free slots at the front of the window that are cut off at once, and the window length
#: from which a mostly empty window moves its older jobs to the dictionary.
_SLACK = 4096


class JobIndex(Mapping[bytes, "JobRecord"]):
    """Live jobs by handle (see the module docstring)."""

    __slots__ = ("_base", "_head", "_in_window", "_last", "_others", "_prefix", "_window")

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        #: Slot ``i`` is the job of handle number ``_base + i``; the slots before
        #: ``_head`` are free.
        self._window: list[JobRecord | None] = []
        self._base = 0
        self._head = 0
        #: Live jobs in the window.
        self._in_window = 0
        #: Jobs outside the window, by key.
        self._others: dict[int | bytes, JobRecord] = {}
        #: The job added last.
        self._last: JobRecord | None = None

    def key(self, handle: bytes) -> int | bytes:
        """The table key of ``handle``: its number if it is this server's prefix and a
        number in its one decimal spelling (no sign, no leading zero), else itself."""
        prefix = self._prefix
        if handle.startswith(prefix):
            digits = handle[len(prefix) :]
            if digits.isdigit() and digits[0] != 48 and len(digits) <= _MAX_DIGITS:
                return int(digits)
        return handle

    # --- the scheduler's side ---------------------------------------------------------

    def add(self, job: JobRecord) -> None:
        self._last = job
        key = job.key
        if type(key) is int:
            window = self._window
            i = key - self._base
            end = len(window)
            if i >= end:
                if i - end > _SLACK:
                    # Far ahead (handles continue after a store's high-water mark): the
                    # window starts again here, its jobs go to the dictionary.
                    self._move_out(end)
                    self._base = key
                else:
                    window.extend([None] * (i - end))
                window.append(job)
                self._in_window += 1
                return
            if i >= self._head and window[i] is None:
                window[i] = job
                self._in_window += 1
                return
        self._others[key] = job

    def discard(self, job: JobRecord) -> bool:
        """Remove ``job``; False if it was not there."""
        key = job.key
        if type(key) is int:
            window = self._window
            i = key - self._base
            if self._head <= i < len(window) and window[i] is job:
                window[i] = None
                self._in_window -= 1
                # Only the front's job, or a long window, can leave anything to trim.
                if i == self._head or len(window) - self._head >= _SLACK:
                    self._trim()
                return True
        if self._others.get(key) is job:
            del self._others[key]
            return True
        return False

    def _trim(self) -> None:
        """Keep the window short: move its front past the free slots, cut them off once
        they are many, and move the jobs of a mostly empty older half out."""
        window = self._window
        head, end = self._head, len(window)
        while head < end and window[head] is None:
            head += 1
        self._head = head
        if self._in_window == 0:
            self._base += end
            self._head = 0
            window.clear()
        elif head >= _SLACK and head * 2 >= end:
            self._cut(head)
        elif end - head >= _SLACK and self._in_window * 8 < end - head:
            # A few old jobs hold the front: those of the older half move to the
            # dictionary, which costs them their slot but frees the rest.
            self._move_out(head + (end - head) // 2)
            self._trim()

    def _move_out(self, upto: int) -> None:
        """Move the window's jobs before slot ``upto`` to the dictionary and cut."""
        others = self._others
        for j in self._window[self._head : upto]:
            if j is not None:
                others[j.key] = j
                self._in_window -= 1
        self._cut(upto)

    def _cut(self, upto: int) -> None:
        """Drop the window's first ``upto`` slots (free ones)."""
        del self._window[:upto]
        self._base += upto
        self._head = max(0, self._head - upto)

    def newest(self) -> JobRecord | None:
        """The job added last, if it is still here."""
        job = self._last
        return job if job is not None and self.get(job.handle) is job else None

    def records(self) -> list[JobRecord]:
        """The jobs, in the mapping's order."""
        jobs = list(self._others.values())
        jobs.extend(j for j in self._window[self._head :] if j is not None)
        return jobs

    # --- the mapping ------------------------------------------------------------------

    def get(self, handle: bytes, default: JobRecord | None = None) -> JobRecord | None:  # type: ignore[override]
        key = self.key(handle)
        if type(key) is int:
            i = key - self._base
            if self._head <= i < len(self._window):
                job = self._window[i]
                if job is not None:
                    return job
        return self._others.get(key, default)

    def __getitem__(self, handle: bytes) -> JobRecord:
        job = self.get(handle)
        if job is None:
            raise KeyError(handle)
        return job

    def __contains__(self, handle: object) -> bool:
        return isinstance(handle, bytes) and self.get(handle) is not None

    def __iter__(self) -> Iterator[bytes]:
        return (job.handle for job in self.records())

    def __len__(self) -> int:
        return self._in_window + len(self._others)

    def __repr__(self) -> str:
        return f"JobIndex({dict(self.items())!r})"
