"""The empty queue every function starts with, shared by all of them.

A module of its own because it subclasses ``deque``: the modules mypyc compiles
(``state.py`` among them, docs/performance.md) cannot hold such a subclass, and this one
stays Python.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["NO_JOBS"]


class _NoJobs(deque[Any]):
    """The empty queue every function starts with, one for all: an empty ``deque``
    costs about 760 bytes, and most functions never queue at some priority.  Writers
    put a queue of the function's own in its place first
    (:meth:`~trigear.server.state.Func.queue`); appending to this one is a bug and
    raises."""

    __slots__ = ()

    def append(self, job: Any) -> None:
        raise AssertionError("append to the shared empty queue")

    def appendleft(self, job: Any) -> None:
        raise AssertionError("append to the shared empty queue")


#: The shared empty queue (see :class:`_NoJobs`).
NO_JOBS: deque[Any] = _NoJobs()
