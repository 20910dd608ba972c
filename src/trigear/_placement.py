"""Server addresses and job placement, shared by the client side and the server.

Rules (``trigear.client.placement`` re-exports these with the client's own parts):

* An address is ``"host:port"``, ``"host"`` (port 4730), ``"[v6]:port"`` or a
  ``(host, port)`` tuple.
* Placement hashes the unique with CRC-32 over the addresses *sorted*, so every client
  given the same set of servers, in any order, sends a unique to the same server and
  Gearman's coalescing keeps working.  The unique ``-`` means "the payload is the key"
  (spec S2), so the payload is hashed instead.  Without a unique, jobs go round-robin.
  After the preferred server come the others in ring order (failover).

Why outside :mod:`trigear.client`: servers sharing a store give a dead server's jobs to
the server a client would fail over to (:mod:`trigear.store.cluster`), with this very
function, and the server must not load the client side (anyio, the client's tasks).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["DEFAULT_PORT", "Address", "Placement", "parse_address"]

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
