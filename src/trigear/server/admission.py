"""Which new connections the server takes: at most ``max_connections`` in all and
``max_connections_per_address`` from one address.  One over either is closed at once,
before anything is read from it, counted (``connections_refused``) and logged at most
once every 10 s: a flood of them cannot flood the log."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .ratelog import RateLimitedLog

if TYPE_CHECKING:
    from .config import ServerConfig
    from .stats import ServerStats

__all__ = ["Admission"]

log = logging.getLogger("trigear.server")


class Admission:
    """Counts open connections, in all and by address."""

    __slots__ = ("_by_address", "_config", "_log", "_stats", "open")

    def __init__(self, config: ServerConfig, stats: ServerStats) -> None:
        self._config = config
        self._stats = stats
        self._by_address: dict[str, int] = {}
        self._log = RateLimitedLog(log, logging.WARNING)
        #: Connections open now.
        self.open = 0

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (and not counted) when it is over
        a limit: the caller closes it."""
        config = self._config
        n = self._by_address.get(ip, 0)
        if (config.max_connections and self.open >= config.max_connections) or (
            config.max_connections_per_address and n >= config.max_connections_per_address
        ):
            self._stats.connections_refused += 1
            self._log(
                "refusing a connection from %s: %d open in all, %d from there",
                ip,
                self.open,
                n,
            )
            return False
        self._by_address[ip] = n + 1
        self.open += 1
        return True

    def leave(self, ip: str) -> None:
        """A connection :meth:`admit` counted has closed."""
        self.open -= 1
        n = self._by_address[ip] - 1
        if n:
            self._by_address[ip] = n
        else:
            del self._by_address[ip]
