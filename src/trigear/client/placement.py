"""Server addresses, job placement and reconnect backoff, shared by the client and worker.

Rules:

* An address is ``"host:port"``, ``"host"`` (port 4730), ``"[v6]:port"`` or a
  ``(host, port)`` tuple.  Duplicates are an error: they would skew placement.
* Placement hashes the unique with CRC-32 over the addresses *sorted*, so every client
  given the same set of servers, in any order, sends a unique to the same server and
  Gearman's coalescing keeps working.  The unique ``-`` means "the payload is the key"
  (spec S2), so the payload is hashed instead.  Without a unique, jobs go round-robin.
* After the preferred server come the others in ring order (failover); servers that
  recently failed go last, so a dead server costs one failed connect per backoff period
  rather than one per job.

Addresses and placement themselves live in :mod:`trigear._placement` (the server shares
a dead server's jobs out with the same function); they are re-exported here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._placement import DEFAULT_PORT, Address, Placement, parse_address

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DEFAULT_PORT", "Address", "Backoff", "Placement", "parse_address", "parse_addresses"]


def parse_addresses(specs: Iterable[str | tuple[str, int] | Address]) -> tuple[Address, ...]:
    """Parse several addresses, keeping their order; at least one, no duplicates."""
    out = tuple(parse_address(s) for s in specs)
    if not out:
        raise ValueError("at least one server address is needed")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate server address in {[str(a) for a in out]}")
    return out


@dataclass
class Backoff:
    """Exponential reconnect delay with jitter: ``initial`` doubling up to ``maximum``."""

    initial: float = 0.1
    maximum: float = 10.0
    failures: int = 0
    #: Clock time (any monotonic clock the caller uses) before which not to retry.
    down_until: float = 0.0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self) -> float:
        """The delay before the next attempt, given the failures so far."""
        if self.failures == 0:
            return 0.0
        base = min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, 60))
        return base * (0.5 + self._rng.random() / 2)

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; return the delay before the next attempt."""
        self.failures += 1
        d = self.delay()
        self.down_until = now + d
        return d

    def succeeded(self) -> None:
        self.failures = 0
        self.down_until = 0.0

    def is_down(self, now: float) -> bool:
        return self.failures > 0 and now < self.down_until
