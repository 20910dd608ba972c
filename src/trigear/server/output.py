"""Where bytes leave the dispatcher: per-peer output, collected during a pass.

The dispatcher never writes to a socket.  It appends encoded packets to ``peer.out`` and
lists the peer once; after the pass the Trio layer takes the list (:meth:`Output.take`)
and writes each peer's bytes.

Output is counted as it is produced: ``peer.unread`` holds the bytes made for a peer that
the kernel has not taken yet (the connection takes off what it writes), and
:attr:`Output.unread` the same for all peers.  A peer whose count passes
``ServerConfig.max_output`` is *cut*: nothing more is made for it in this pass or any
other (a pipelined admin ``status`` with many functions stops at the limit, not after the
whole read), and the Trio layer closes it.  The server-wide count lets the Trio layer
cut the biggest non-readers when all of them together pass
``ServerConfig.max_output_total``.

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

    __slots__ = ("_cap", "_dirty", "unread")

    def __init__(self, max_output: int = 64 * 1024 * 1024) -> None:
        self._dirty: list[Peer] = []
        self._cap = max_output
        #: Bytes made for all peers and not yet taken by the kernel.
        self.unread = 0

    def send(self, peer: Peer, data: bytes) -> None:
        """Queue ``data`` for ``peer``, behind any reply held for it."""
        if peer.gone or peer.cut:
            return
        n = len(data)
        peer.unread += n
        self.unread += n
        if peer.unread > self._cap:
            self._cut(peer)
            return
        if peer.waiting:
            peer.waiting[-1].after.append(data)
            return
        if not peer.out:
            self._dirty.append(peer)
        peer.out.append(data)

    def _cut(self, peer: Peer) -> None:
        """``peer`` is over its limit: drop what it has waiting, make nothing more for
        it, and list it so the Trio layer closes it."""
        peer.cut = True
        if not peer.out and peer not in self._dirty:
            self._dirty.append(peer)
        dropped = sum(map(len, peer.out))
        for reply in peer.waiting:
            dropped += sum(map(len, reply.after))
        peer.out.clear()
        peer.waiting.clear()
        peer.unread -= dropped
        self.unread -= dropped

    def written(self, peer: Peer, n: int) -> None:
        """``n`` bytes made for ``peer`` were taken by the kernel.  Not counted for a
        peer cut off or gone: what it had unread was forgotten then."""
        if peer.cut or peer.gone:
            return
        peer.unread -= n
        self.unread -= n

    def forget(self, peer: Peer) -> None:
        """``peer`` is gone: what it left unread no longer counts."""
        self.unread -= peer.unread
        peer.unread = 0

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
            reply = waiting.pop(0)
            if peer.gone or peer.cut:
                continue
            if not peer.out:
                self._dirty.append(peer)
            # Counted now: the reply was made by the store's commit, not by send().
            n = len(reply.reply)
            peer.unread += n
            self.unread += n
            peer.out.append(reply.reply)
            # What followed this reply came before the next held one: send it now.
            peer.out.extend(reply.after)

    def take(self) -> list[Peer]:
        """The peers with output in ``peer.out``; the caller writes and clears it."""
        dirty = self._dirty
        self._dirty = []
        return dirty
