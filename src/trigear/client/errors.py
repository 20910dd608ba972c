"""Exceptions of the client and worker API.

Two axes, as in the protocol core: a *job* can fail (:class:`JobFailed`, and
:class:`JobException` when the worker reported an exception), and a *server* can fail
(:class:`ServerError` for an ERROR packet, :class:`ConnectionLost` when the connection
dies under a call, :class:`NoServerAvailable` when no server can be reached).  Everything
derives from :class:`GearmanError`; ``Cancelled`` is never wrapped or swallowed.
"""

from __future__ import annotations

__all__ = [
    "ConnectionLost",
    "GearmanError",
    "JobException",
    "JobFailed",
    "NoServerAvailable",
    "ServerError",
]


class GearmanError(Exception):
    """Base class of the errors the client and worker raise."""


class JobFailed(GearmanError):
    """The job ended with WORK_FAIL (or WORK_EXCEPTION, see :class:`JobException`).

    A worker function may raise it too: the job then ends with a plain WORK_FAIL.
    """

    def __init__(self, handle: bytes = b"", message: str = "") -> None:
        self.handle = handle
        super().__init__(message or f"job {handle.decode(errors='replace')} failed")


class JobException(JobFailed):
    """The job ended with WORK_EXCEPTION; ``data`` is what the worker sent."""

    def __init__(self, handle: bytes, data: bytes) -> None:
        self.data = data
        text = data.decode(errors="replace")
        super().__init__(handle, f"job {handle.decode(errors='replace')} raised: {text}")


class ServerError(GearmanError):
    """The server answered a request with an ERROR packet."""

    def __init__(self, code: bytes, text: bytes) -> None:
        self.code = code
        self.text = text
        super().__init__(f"{code.decode(errors='replace')}: {text.decode(errors='replace')}")


class ConnectionLost(GearmanError):
    """The connection to a server ended while a call needed it."""


class NoServerAvailable(GearmanError):
    """None of the client's servers could be reached."""
