"""The server's counters: live ones the dispatcher bumps, and the snapshot callers get.

The dispatcher counts in a plain mutable record (an attribute increment is all a counter
may cost on the hot path).  :meth:`Server.statistics() <trigear.server.Server.statistics>`
hands out a frozen copy instead, so a caller can keep it, compare two of them, or pass it
to another thread, and never sees the numbers move under it or changes them by mistake.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

__all__ = ["ServerStatistics", "ServerStats"]


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """What :meth:`Server.statistics() <trigear.server.Server.statistics>` returns:
    counters since the server started, as they were when it was called."""

    jobs_submitted: int = 0
    #: Submits that joined a live job with the same unique (S2).
    jobs_coalesced: int = 0
    jobs_completed: int = 0
    #: WORK_FAIL, WORK_EXCEPTION, and jobs whose retries were spent.
    jobs_failed: int = 0
    #: Runs lost (worker gone, CANT_DO, timeout) and queued again (S9).
    jobs_requeued: int = 0
    #: Jobs failed because ``job_retries`` was reached (S10).
    retries_exhausted: int = 0
    #: Runs that outlived their CAN_DO_TIMEOUT (S11).
    jobs_timed_out: int = 0
    protocol_errors: int = 0
    #: Packets that hit a bug in the server; each closed its connection.
    internal_errors: int = 0
    store_commits: int = 0
    store_failures: int = 0
    #: Packets and admin commands the access control list refused.
    acl_refusals: int = 0
    #: Connections to a TLS listener closed before their handshake completed (plain
    #: text, no or a bad certificate, too slow).
    tls_failures: int = 0
    #: accept() failures for lack of descriptors or memory (each retried after a pause).
    accept_failures: int = 0
    #: Connections closed at once: over the limit in all or per address.
    connections_refused: int = 0
    #: Peers cut off for leaving too much output unread (their own limit, or the
    #: server's in all).
    output_cuts: int = 0
    #: Submits refused by the server-wide queued-jobs or queued-bytes limits, and
    #: CAN_DOs over the functions one connection may register.
    limit_refusals: int = 0


@dataclass(slots=True)
class ServerStats:
    """The dispatcher's live counters; the fields of :class:`ServerStatistics`."""

    jobs_submitted: int = 0
    jobs_coalesced: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_requeued: int = 0
    retries_exhausted: int = 0
    jobs_timed_out: int = 0
    protocol_errors: int = 0
    internal_errors: int = 0
    store_commits: int = 0
    store_failures: int = 0
    acl_refusals: int = 0
    tls_failures: int = 0
    accept_failures: int = 0
    connections_refused: int = 0
    output_cuts: int = 0
    limit_refusals: int = 0

    def snapshot(self) -> ServerStatistics:
        """The counters as they are now, frozen."""
        return ServerStatistics(*astuple(self))
