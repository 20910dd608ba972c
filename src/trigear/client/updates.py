"""What the client's calls hand back besides bytes: progress updates and job status.

These are plain frozen values, apart from the wire: a :class:`DataUpdate` is what a
WORK_DATA packet *means* to the caller, not the packet (the protocol core's ``WorkData``
keeps the handle and lives in :mod:`trigear.protocol`).  Keeping them in a module of
their own lets the routing (:mod:`.routing`) build them and the client (:mod:`.submit`)
return them without either depending on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DataUpdate", "JobStatus", "StatusUpdate", "Update", "WarningUpdate"]


@dataclass(frozen=True, slots=True)
class DataUpdate:
    """A WORK_DATA packet: a piece of partial output."""

    data: bytes


@dataclass(frozen=True, slots=True)
class WarningUpdate:
    """A WORK_WARNING packet."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A WORK_STATUS packet: progress ``numerator`` out of ``denominator``."""

    numerator: int
    denominator: int


#: What ``async for update in job`` yields (see :class:`trigear.JobStream`).
Update = DataUpdate | WarningUpdate | StatusUpdate


@dataclass(frozen=True, slots=True)
class JobStatus:
    """The answer to GET_STATUS (``waiting`` is None) or GET_STATUS_UNIQUE."""

    known: bool
    running: bool
    numerator: int
    denominator: int
    #: Clients waiting on the job; only GET_STATUS_UNIQUE reports it.
    waiting: int | None = None
