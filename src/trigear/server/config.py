"""Server settings, shared by the dispatcher, the connection layer and the command line."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from .._keepalive import DEFAULT_KEEPALIVE, Keepalive
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
    #: Seconds a packet or line may take from its first byte to its last, on top of
    #: its size at ``min_upload_rate``: a deadline for the whole packet, not reset by
    #: each byte that arrives.
    stall_timeout: float = 30.0
    #: Bytes per second a large packet is allowed on top of ``stall_timeout`` (its
    #: header's size divided by this): 64 MiB gets 30 + 64 s at the default 1 MiB/s.
    min_upload_rate: int = 1024 * 1024
    #: Seconds a connection to a TLS listener has to finish its handshake.
    handshake_timeout: float = 10.0
    #: Bytes made for one peer and not yet read by it before it is cut off (checked as
    #: output is made).
    max_output: int = 64 * 1024 * 1024
    #: Bytes made for all peers and not yet read; beyond it the biggest non-readers
    #: are cut off until the rest fit.
    max_output_total: int = 256 * 1024 * 1024
    #: Seconds a graceful shutdown waits for running jobs (S21).
    shutdown_timeout: float = 30.0
    #: Accept the admin ``shutdown`` from any address, not only loopback (S21).
    remote_shutdown: bool = False
    #: TCP keepalive on accepted connections: a peer whose host vanished is found and
    #: its jobs requeued (``Keepalive(idle=0)``: off).
    keepalive: Keepalive = DEFAULT_KEEPALIVE
    #: Connections in all; beyond it new ones are closed at once (0: no limit).
    max_connections: int = 65536
    #: Connections from one address (0: no limit).
    max_connections_per_address: int = 16384
    #: Functions one connection may register; a CAN_DO beyond is ignored (0: no limit).
    max_functions_per_connection: int = 10_000
    #: Unused function records (no workers, no jobs, no maxqueue) kept, as gearmand
    #: keeps them all; beyond, the oldest are freed.
    max_idle_functions: int = 1000
    #: Live jobs (queued, scheduled or running) in the whole server; a submit of a new
    #: job beyond gets QUEUE_ERROR, as a full ``maxqueue`` (0: no limit).
    max_jobs: int = 10_000_000
    #: Bytes of job data in the whole server, likewise (0: no limit).
    max_job_bytes: int = 4 * 1024**3
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
