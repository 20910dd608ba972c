"""trigear: a Gearman job server, client and worker library on Trio."""

from . import protocol
from ._errors import (
    ConnectionLost,
    GearmanError,
    JobException,
    JobFailed,
    NoServerAvailable,
    ServerError,
)
from .client import (
    Client,
    JobStatus,
    JobStream,
    Update,
    WorkData,
    WorkStatus,
    WorkWarning,
    open_client,
)
from .protocol.packets import Priority
from .worker import Job, JobFunction, Worker

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConnectionLost",
    "GearmanError",
    "Job",
    "JobException",
    "JobFailed",
    "JobFunction",
    "JobStatus",
    "JobStream",
    "NoServerAvailable",
    "Priority",
    "ServerError",
    "Update",
    "WorkData",
    "WorkStatus",
    "WorkWarning",
    "Worker",
    "__version__",
    "open_client",
    "protocol",
]
