"""The client side: Gearman clients and workers, the two kinds of peer a job server has.

* :mod:`.submit` -- :class:`Client` and :func:`open_client`: submit jobs, stream their
  progress, ask their status.
* :mod:`.worker` -- :class:`Worker`: serve functions, run jobs.
* :mod:`.connection` -- one TCP connection to one server (single reader, single writer),
  shared by both.
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
from .submit import (
    Client,
    DataUpdate,
    JobStatus,
    JobStream,
    StatusUpdate,
    Update,
    WarningUpdate,
    open_client,
)
from .worker import Job, JobFunction, Worker

__all__ = [
    "Client",
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
    "open_client",
]
