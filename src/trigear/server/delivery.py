"""Where a pass's output reaches the connections, and where the output limits bite.

After each dispatcher pass, :meth:`Delivery.flush` hands every peer's bytes to its
connection (:meth:`~trigear.server.connection.Connection.write_nowait`, which never
blocks).  Output is counted as it is made (:mod:`trigear.server.output`): a peer past
``ServerConfig.max_output`` unread is closed here, and when all peers together leave more
than ``ServerConfig.max_output_total`` unread, the biggest non-readers are closed until
the rest fit (docs/robustness.md).  Both are logged at most once per 10 s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .ratelog import RateLimitedLog

if TYPE_CHECKING:
    from .config import ServerConfig
    from .connection import Connection
    from .dispatcher import Dispatcher

__all__ = ["Delivery"]

log = logging.getLogger("trigear.server")


class Delivery:
    """The connections' side of the dispatcher's output."""

    def __init__(
        self, conns: dict[int, Connection], dispatcher: Dispatcher, config: ServerConfig
    ) -> None:
        #: The server's open connections by peer id (shared: the server adds and removes).
        self._conns = conns
        self._dispatcher = dispatcher
        self._config = config
        self._log_limit = RateLimitedLog(log, logging.WARNING)

    def flush(self) -> None:
        """Hand each peer's output of this pass to its connection."""
        conns = self._conns
        for peer in self._dispatcher.take_output():
            out = peer.out
            conn = conns.get(peer.id)
            if conn is None or peer.gone:
                out.clear()
                continue
            if peer.cut:
                self._log_limit(
                    "closing %r: over %d bytes of output unread", peer, self._config.max_output
                )
                self.cut(conn)
                continue
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            conn.write_nowait(data, peer.closing)
        if self._dispatcher.output.unread > self._config.max_output_total:
            self._cut_over_budget()

    def cut(self, conn: Connection) -> None:
        """Close a peer over an output limit.  What it left unread stops counting now
        (not when its close reaches the dispatcher), so the server-wide budget does not
        cut another peer for the same bytes."""
        peer = conn.peer
        peer.cut = True
        self._dispatcher.stats.output_cuts += 1
        self._conns.pop(peer.id, None)
        self._dispatcher.output.forget(peer)
        conn.cancel()

    def _cut_over_budget(self) -> None:
        """All peers together left more than ``max_output_total`` unread: close the
        biggest non-readers until the rest fit."""
        output = self._dispatcher.output
        budget = self._config.max_output_total
        for conn in sorted(self._conns.values(), key=lambda c: -c.peer.unread):
            if output.unread <= budget or conn.peer.unread == 0:
                break
            self._log_limit(
                "closing %r: %d bytes unread, and %d in all is over the server's %d",
                conn.peer,
                conn.peer.unread,
                output.unread,
                budget,
            )
            self.cut(conn)
