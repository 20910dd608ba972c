"""TCP keepalive, for the server's accepted sockets and the client's and worker's own.

A peer whose host vanishes (power loss, a partition: no FIN or RST ever arrives) looks
like an idle one for ever: a worker's job stays running and its client waits.  With
keepalive the kernel probes a connection idle for ``idle`` seconds every ``interval``
seconds and fails it after ``count`` unanswered probes; the read then fails and the
connection is handled as gone (the server requeues the worker's jobs, S9).  The same
three numbers as gear's ``tcp_keepidle``, ``tcp_keepintvl`` and ``tcp_keepcnt``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_KEEPALIVE", "Keepalive", "set_keepalive"]


@dataclass(frozen=True, slots=True)
class Keepalive:
    """When the kernel probes an idle connection and gives it up; ``idle=0`` turns
    keepalive off."""

    #: Seconds a connection is idle before the first probe.
    idle: int = 60
    #: Seconds between probes.
    interval: int = 10
    #: Unanswered probes after which the connection fails.
    count: int = 6

    def __post_init__(self) -> None:
        if self.idle < 0 or self.interval < 1 or self.count < 1:
            raise ValueError("keepalive idle must be >= 0, interval and count >= 1")

    @property
    def enabled(self) -> bool:
        return self.idle > 0

    @property
    def dead_after(self) -> int:
        """Seconds from a peer's last sign of life until its connection fails."""
        return self.idle + self.interval * self.count


#: A dead peer is found within 2 minutes: 60 s idle, then 6 probes 10 s apart.
DEFAULT_KEEPALIVE = Keepalive()


def set_keepalive(sock: Any, keepalive: Keepalive) -> None:
    """Apply ``keepalive`` to ``sock`` (a stdlib or trio socket).  The per-connection
    timings are Linux's (and most BSDs'); where one is missing the system's stays."""
    if not keepalive.enabled:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", keepalive.idle),
        ("TCP_KEEPINTVL", keepalive.interval),
        ("TCP_KEEPCNT", keepalive.count),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
