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
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["DEFAULT_PORT", "Address", "Backoff", "Placement", "parse_address", "parse_addresses"]

DEFAULT_PORT = 4730


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def parse_address(spec: str | tuple[str, int] | Address) -> Address:
    """Parse one server address; raise ``ValueError`` if it is not one."""
    if isinstance(spec, tuple):
        tup_host, tup_port = spec
        return Address(str(tup_host), _port(str(tup_port), spec))
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"not a server address: {spec!r}")
    text = spec.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not host:
            raise ValueError(f"not a server address: {spec!r}")
        if not rest:
            return Address(host, DEFAULT_PORT)
        if not rest.startswith(":"):
            raise ValueError(f"not a server address: {spec!r}")
        return Address(host, _port(rest[1:], spec))
    if text.count(":") > 1:
        # A bare IPv6 address: no port.
        return Address(text, DEFAULT_PORT)
    name, sep, port_text = text.partition(":")
    if not name:
        raise ValueError(f"not a server address: {spec!r}")
    return Address(name, _port(port_text, spec) if sep else DEFAULT_PORT)


def _port(text: str, spec: object) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in server address {spec!r}")
    return int(text)


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


class Placement:
    """Which server a job goes to, and where to fail over."""

    def __init__(self, addresses: Sequence[Address]) -> None:
        self.addresses = tuple(addresses)
        self._ring = tuple(sorted(self.addresses))
        self._next = 0

    def order(self, unique: bytes, data: bytes) -> list[Address]:
        """Servers to try for a job, best first (backoff is applied by the caller)."""
        ring = self._ring
        n = len(ring)
        if n == 1:
            return [ring[0]]
        if unique:
            key = data if unique == b"-" else unique
            start = zlib.crc32(key) % n
        else:
            start = self._next % n
            self._next += 1
        return [ring[(start + i) % n] for i in range(n)]
