"""The messages the server's tasks pass each other, one small immutable class per kind.

Two kinds of channel connect the tasks (``docs/server.md`` draws them):

* the **inbox**, one for the server, bounded: connections and the store writer tell the
  dispatcher task what happened (:data:`InboxMessage`);
* one **outbox** per connection, unbounded: the dispatcher task hands the connection's
  writer the bytes the socket did not take at once (:data:`OutboxItem`).

Each kind is a :class:`typing.NamedTuple`, so the type checker follows every message
from the task that sends it to the branch that handles it.  Tuples rather than frozen
dataclasses because an :class:`Events` message is built for every read a connection
makes: building one costs about two thirds of what a frozen slotted dataclass does
(measured on CPython 3.11: 190 ns against 300 ns), and the dispatcher task unpacks it as
cheaply as a bare tuple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..protocol.errors import RemoteProtocolError
    from ..protocol.packets import Event
    from ..store.base import StoredJob
    from .acl import Acl
    from .state import Peer

__all__ = [
    "CLOSE_AFTER_OUTPUT",
    "Adopted",
    "BadInput",
    "CloseAfterOutput",
    "Closed",
    "Drain",
    "Events",
    "Fenced",
    "InboxMessage",
    "NewAcl",
    "Nudge",
    "Opened",
    "OutboxItem",
    "StoreDone",
]


class Opened(NamedTuple):
    """A connection is up; the dispatcher learns its peer."""

    peer: Peer


class Events(NamedTuple):
    """Every packet one read of a connection decoded, in order."""

    peer: Peer
    events: list[Event]


class BadInput(NamedTuple):
    """A connection sent something the decoder refused (S20)."""

    peer: Peer
    error: RemoteProtocolError


class Closed(NamedTuple):
    """A connection is gone: whatever it held is requeued (S9)."""

    peer: Peer


class StoreDone(NamedTuple):
    """The store writer committed the batch in flight (``ok``), or failed to.
    ``joined``: adds not stored because a live job on another server sharing the store
    has their unique, {handle: that job's handle}."""

    ok: bool
    joined: dict[bytes, bytes] | None = None


class Drain(NamedTuple):
    """A graceful shutdown began: assign no more jobs (S21)."""


class NewAcl(NamedTuple):
    """The access control list was (re)loaded: apply it to every connection."""

    acl: Acl | None


class Nudge(NamedTuple):
    """Nothing happened, but run a pass (its end reports whether the store has settled)."""


class Adopted(NamedTuple):
    """Stored jobs this server now owns (another server's, taken over; or its own after
    joining the cluster again), in their original order (:mod:`trigear.server.cluster`)."""

    jobs: list[StoredJob]


class Fenced(NamedTuple):
    """Another server took this one's jobs over: forget every stored job."""


InboxMessage = (
    Opened | Events | BadInput | Closed | StoreDone | Drain | NewAcl | Nudge | Adopted | Fenced
)


class CloseAfterOutput(NamedTuple):
    """In an outbox: close the connection once the bytes before it are written."""


#: The one :class:`CloseAfterOutput` the dispatcher task sends.
CLOSE_AFTER_OUTPUT = CloseAfterOutput()

OutboxItem = bytes | CloseAfterOutput
