"""Where bytes leave the dispatcher: per-peer output, collected during a pass.

The dispatcher never writes to a socket.  It appends encoded packets to ``peer.out`` and
lists the peer once; after the pass the Trio layer takes the list (:meth:`Output.take`)
and writes each peer's bytes.

A reply can be held back: a background JOB_CREATED waits for the store's commit (S19).
Output for the same peer produced meanwhile waits behind it, in the held reply's
``after``, so a peer gets its replies in the order of its requests (S1) however the
commits go.  :mod:`trigear.server.commits` decides when a held reply is ready;
:meth:`Output.release` sends it and what waited behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .state import Peer

__all__ = ["Output"]


class Output:
    """The peers with output waiting, in the order they got their first bytes."""

    __slots__ = ("_dirty",)

    def __init__(self) -> None:
        self._dirty: list[Peer] = []

    def send(self, peer: Peer, data: bytes) -> None:
        """Queue ``data`` for ``peer``, behind any reply held for it."""
        if peer.gone:
            return
        if peer.waiting:
            peer.waiting[-1].after.append(data)
            return
        if not peer.out:
            self._dirty.append(peer)
        peer.out.append(data)

    def close_after_output(self, peer: Peer) -> None:
        """Close ``peer`` once what is queued for it is written (S20: the stream is out
        of sync)."""
        peer.closing = True
        if not peer.out and peer not in self._dirty:
            self._dirty.append(peer)

    def release(self, peer: Peer) -> None:
        """Queue the held replies that are ready, in request order, each followed by the
        output that waited behind it; stop at the first one still held."""
        waiting = peer.waiting
        while waiting and waiting[0].ready:
            reply = waiting.popleft()
            if peer.gone:
                continue
            if not peer.out:
                self._dirty.append(peer)
            peer.out.append(reply.reply)
            # What followed this reply came before the next held one: send it now.
            peer.out.extend(reply.after)

    def take(self) -> list[Peer]:
        """The peers with output in ``peer.out``; the caller writes and clears it."""
        dirty = self._dirty
        self._dirty = []
        return dirty
