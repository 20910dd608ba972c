"""Server settings, shared by the dispatcher, the connection layer and the command line."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ..protocol.limits import DEFAULT_LIMITS, Limits

__all__ = ["ListenError", "ServerConfig"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything that changes how the server behaves.  Defaults match gearmand's."""

    #: Re-runs allowed after a worker loses a job: -1 unlimited, 0 none (S10).
    job_retries: int = -1
    #: Send WORK_EXCEPTION to every client, not only those that asked (S7).
    exceptions: bool = False
    #: Sleeping workers woken per new job; 0 wakes all that can do it (S5).
    worker_wakeup: int = 0
    #: The ``<host>`` part of ``H:<host>:<n>`` handles (S17).
    job_handle_prefix: str = field(default_factory=socket.gethostname)
    limits: Limits = DEFAULT_LIMITS
    #: Seconds a peer may stall in the middle of a packet or line before it is closed.
    stall_timeout: float = 30.0
    #: Seconds a connection to a TLS listener has to finish its handshake.
    handshake_timeout: float = 10.0
    #: Bytes queued for a peer that does not read before it is cut off.
    max_output: int = 64 * 1024 * 1024
    #: Seconds a graceful shutdown waits for running jobs (S21).
    shutdown_timeout: float = 30.0
    #: Accept the admin ``shutdown`` from any address, not only loopback (S21).
    remote_shutdown: bool = False
    #: Level name reported by the admin ``verbose`` command.
    log_level: str = "INFO"
    #: (host, port) of the HTTP side: metrics, the status page, HTTP submits
    #: (:mod:`trigear.server.http`, needs ``trigear[http]``).  None: off.
    http: tuple[str, int] | None = None
    #: Seconds an HTTP submit waits for its result unless it says
    #: (``X-Gearman-Timeout``).
    http_timeout: float = 30.0
    #: Functions that get a ``function`` label of their own in the metrics; the rest
    #: are summed as ``_other`` (:mod:`trigear.server.metrics`).
    metrics_functions: int = 50


class ListenError(OSError):
    """A listener the configuration asks for could not be opened (the port is taken,
    the address is not this machine's)."""
