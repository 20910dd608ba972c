"""Log lines that a peer, or the lack of a resource, can make repeat without end (accept
failures while out of descriptors, connections refused over a limit, non-readers cut):
at most one a period per kind, the next one saying how many were left out."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """``log(msg, *args)`` logs at most once every ``period`` seconds; the lines left
    out in between are counted and the next line that is logged says how many."""

    __slots__ = ("_clock", "_left_out", "_level", "_logger", "_next", "period")

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self.period = period
        self._clock = clock
        self._next = -float("inf")
        self._left_out = 0

    def __call__(self, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless one was logged less than ``period`` ago; True if
        it was logged."""
        now = self._clock()
        if now < self._next:
            self._left_out += 1
            return False
        self._next = now + self.period
        if self._left_out:
            msg += " (and %d more like it in the last %g s, not logged)"
            args = (*args, self._left_out, self.period)
            self._left_out = 0
        self._logger.log(self._level, msg, *args)
        return True
