"""The scheduler's indexes, which keep the work of one packet independent of how many
functions and jobs the server holds (``docs/robustness.md``):

* :class:`UniqueIndex`: live jobs by coalescing key, one lookup both for a submit's
  coalescing (S2, within its function) and for GET_STATUS_UNIQUE, which names no
  function.  One index, not one per function as well: each entry costs about 40 bytes
  per queued job (``docs/performance.md``).
* The *ready* index of a worker with many functions (``Peer.ready``): per priority, its
  functions that may have a job queued.  A function enters it when one of its queues
  gets a job after being empty (:func:`mark_ready`, for the workers listed in
  ``Func.indexed``) and leaves it when a grab finds that queue empty, so a GRAB_JOB
  costs the work it finds (:func:`next_indexed`), not a look at every function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .state import JobRecord, JobState

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .state import Func, Peer

__all__ = ["UniqueIndex", "has_indexed", "index_worker", "mark_ready", "next_indexed"]

_QUEUED = JobState.QUEUED


class UniqueIndex:
    """Live jobs by coalescing key, in any function: one job, or a list, oldest first,
    when several functions have one with the same key."""

    __slots__ = ("_by",)

    def __init__(self) -> None:
        self._by: dict[bytes, JobRecord | list[JobRecord]] = {}

    def add(self, key: bytes, job: JobRecord) -> None:
        by = self._by
        other = by.get(key)
        if other is None:
            by[key] = job
        elif type(other) is list:
            other.append(job)
        else:
            assert isinstance(other, JobRecord)
            by[key] = [other, job]

    def drop(self, key: bytes, job: JobRecord) -> None:
        by = self._by
        other = by.get(key)
        if other is job:
            del by[key]
        elif type(other) is list and job in other:
            other.remove(job)
            if len(other) == 1:
                by[key] = other[0]

    def get(self, key: bytes, func: Func) -> JobRecord | None:
        """The live job of ``func`` with coalescing key ``key``, or None."""
        found = self._by.get(key)
        if found is None:
            return None
        if type(found) is list:
            for job in found:
                if job.func is func:
                    return job
            return None
        assert isinstance(found, JobRecord)
        return found if found.func is func else None

    def __iter__(self) -> Iterator[tuple[bytes, JobRecord]]:
        """Every (key, job) indexed."""
        for key, found in self._by.items():
            if type(found) is list:
                for job in found:
                    yield key, job
            else:
                assert isinstance(found, JobRecord)
                yield key, found

    def find(self, key: bytes) -> list[JobRecord]:
        """The live jobs with coalescing key ``key``, oldest first: one lookup."""
        found = self._by.get(key)
        if found is None:
            return []
        if type(found) is list:
            return list(found)
        assert isinstance(found, JobRecord)
        return [found]


def index_worker(peer: Peer, func: Func) -> None:
    """``peer`` (a worker with a ``ready`` index) can do ``func``."""
    assert peer.ready is not None
    if func.indexed is None:
        func.indexed = [peer]
    elif peer not in func.indexed:
        func.indexed.append(peer)
    for prio, q in enumerate(func.queues):
        if q:
            peer.ready[prio][func] = None


def mark_ready(func: Func, prio: int) -> None:
    """A queue of ``func`` gets a job after being empty: tell the workers that keep an
    index of their functions with jobs."""
    assert func.indexed is not None
    for w in func.indexed:
        assert w.ready is not None
        w.ready[prio][func] = None


def next_indexed(peer: Peer) -> JobRecord | None:
    """The next job of a worker with a ready index: only its functions with a job queued
    are looked at.  HIGH before NORMAL before LOW, and at a priority they take turns
    (S3): the one a job came from goes to the back."""
    assert peer.ready is not None
    queued = _QUEUED
    for prio, ready in enumerate(peer.ready):
        while ready:
            f = next(iter(ready))
            del ready[f]
            q = f.queues[prio]
            while q:
                job = q.popleft()
                if job.state is queued:
                    if q:
                        ready[f] = None
                    return job
    return None


def has_indexed(peer: Peer) -> bool:
    """True when :func:`next_indexed` would find a job (entries found empty go)."""
    assert peer.ready is not None
    queued = _QUEUED
    for prio, ready in enumerate(peer.ready):
        while ready:
            f = next(iter(ready))
            q = f.queues[prio]
            while q:
                if q[0].state is queued:
                    return True
                q.popleft()
            del ready[f]
    return False
