"""The client side: Gearman clients and workers, the two kinds of peer a job server has.

* :mod:`.submit` -- :class:`Client` and :func:`open_client`: submit jobs, stream their
  progress, ask their status.
* :mod:`.updates` -- what those calls return besides bytes: progress updates, job status.
* :mod:`.routing` -- the client's session with one server: answers matched to calls.
* :mod:`.worker` -- :class:`Worker`: serve functions, run jobs.
* :mod:`.grabbing` -- the worker's grab/sleep state machine, sans-IO.
* :mod:`.connection` -- one TCP connection to one server (single reader, single writer),
  shared by both: the only thing this package calls a connection.
* :mod:`.placement` -- server addresses, which server a job goes to, reconnect backoff.
* :mod:`.errors` -- the exceptions both raise.

Everything here runs on anyio, so Trio and asyncio programs can use it.  The server
(:mod:`trigear.server`) does not import any of it.
"""

from .errors import (
    ConnectionLost,
    GearmanError,
    JobException,
    JobFailed,
    NoServerAvailable,
    ServerError,
)
from .submit import Client, ClientStatistics, JobStream, open_client
from .updates import DataUpdate, JobStatus, StatusUpdate, Update, WarningUpdate
from .worker import Job, JobFunction, Worker, WorkerStatistics

__all__ = [
    "Client",
    "ClientStatistics",
    "ConnectionLost",
    "DataUpdate",
    "GearmanError",
    "Job",
    "JobException",
    "JobFailed",
    "JobFunction",
    "JobStatus",
    "JobStream",
    "NoServerAvailable",
    "ServerError",
    "StatusUpdate",
    "Update",
    "WarningUpdate",
    "Worker",
    "WorkerStatistics",
    "open_client",
]
