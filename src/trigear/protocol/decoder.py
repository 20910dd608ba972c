"""Bytes to events, with no I/O.

Framing (spec section 1): a binary packet is a 12-byte header -- magic, type and body
length -- then the body, whose arguments are separated by NUL bytes; the last argument
runs to the end of the body and may hold NULs itself.  A server's stream may also carry
text admin lines: a first byte other than NUL starts a line that runs to ``\\n``.

The :class:`Decoder` is incremental: feed it bytes split anywhere with
:meth:`Decoder.receive_data`, then take events with :meth:`Decoder.next_event` (one at a
time, ``NEED_DATA`` when the buffer holds no whole packet) or
:meth:`Decoder.receive_events` (all of them, the hot path).  It never buffers more than one
packet body (at most ``Limits.max_body``) plus the bytes it was fed last: sizes a header
declares are checked before anything is buffered for them.  The decoder does the
framing; each whole body goes to its packet type's generated decoder
(:mod:`trigear.protocol.bodies`), which checks and converts the arguments.

Errors follow :mod:`trigear.protocol.errors`: anything wrong with the input raises
:class:`RemoteProtocolError` and nothing else.  When the frame could be delimited (a
complete header told us where the packet ends), the decoder skips the bad packet and stays
usable (``close`` is false); otherwise ``close`` is true and the decoder refuses further
input.
"""

from __future__ import annotations

from typing import Any, Final

from .bodies import _TOO_LARGE, body_decoders
from .errors import RemoteProtocolError
from .framing import _HEAD3, _REQ_INT, _RES_INT, Role
from .limits import DEFAULT_LIMITS, Limits
from .packets import AdminCommand, Event, PacketType

__all__ = ["NEED_DATA", "Decoder"]

#: Reads shorter than this are appended to one ``bytearray`` while a packet is
#: incomplete; longer ones are kept as they came (their object costs under 1%).
_SMALL_READ: Final = 4096


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`Decoder.next_event` when no whole event is buffered.
NEED_DATA: Final = _NeedData()

_INVALID_COMMAND: Final = b"INVALID_COMMAND"
_INVALID_MAGIC: Final = b"INVALID_MAGIC"
_NOT_EXPECTED: Final = b"Command not expected"


class Decoder:
    """Incremental decoder for one end of one connection.

    ``Decoder(Role.SERVER)`` accepts ``\\0REQ`` packets and admin text lines;
    ``Decoder(Role.CLIENT)`` accepts ``\\0RES`` packets only.
    """

    __slots__ = (
        "_buf",
        "_chunks",
        "_chunks_len",
        "_closed",
        "_deferred",
        "_done",
        "_limits",
        "_line_wait",
        "_need",
        "_pos",
        "_role",
        "_skip",
        "_table",
        "_want",
        "_wrong",
    )

    def __init__(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> None:
        self._role = role
        self._limits = limits
        self._buf = b""
        self._pos = 0
        #: What arrived since the buffer was last joined: each large read as its own
        #: ``bytes`` (no copy), runs of small reads in one ``bytearray`` each, so a peer
        #: that trickles a byte per read costs about a byte per byte, not an object each.
        self._chunks: list[bytes | bytearray] = []
        self._chunks_len = 0
        #: Packets and lines finished (or rejected) so far: see :attr:`progress`.
        self._done = 0
        #: Bytes (counted from ``_pos``) that must be buffered before parsing can progress.
        self._need = 1
        #: Bytes of a rejected packet's body still to be dropped as they arrive.
        self._skip = 0
        self._closed: RemoteProtocolError | None = None
        self._deferred: RemoteProtocolError | None = None
        #: Waiting for the end of an admin line (``_need`` is then past the line limit).
        self._line_wait = False
        if role is Role.SERVER:
            self._want, self._wrong = _REQ_INT, _RES_INT
        else:
            self._want, self._wrong = _RES_INT, _REQ_INT
        self._table = body_decoders(role, limits)

    @property
    def role(self) -> Role:
        return self._role

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet make a whole event (0 between packets)."""
        return len(self._buf) - self._pos + self._chunks_len

    @property
    def mid_packet(self) -> bool:
        """True when part of a packet or line has arrived but not all of it.

        A server uses this to time out peers that stall mid-packet (spec section 5),
        while idle connections between packets are left alone.
        """
        return self.buffered > 0 or self._skip > 0

    @property
    def progress(self) -> int:
        """A count that grows each time a packet or line is finished or rejected: a
        caller timing a packet (the server's whole-packet deadline) knows from it that
        the partial packet it holds now is a new one."""
        return self._done

    @property
    def expected(self) -> int:
        """Bytes the packet or line being received needs in all, as far as known (its
        header's size once the header is here; a line's limit for a line)."""
        return max(self._need, self._skip)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes from the peer (any bytes-like object: a stream's ``receive_some``
        may return a bytearray).  Cheap: nothing is parsed until events are asked for.

        Once the decoder has raised an error with ``close`` set, input is dropped: a
        connection that is going away cannot make it buffer anything.
        """
        if self._closed is not None:
            return
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        if data:
            if self._line_wait and b"\n" in data:
                # An admin line waiting for its end: join only once the end is here, so a
                # line fed a byte at a time costs linear time, not quadratic.
                self._line_wait = False
                self._need = 1
            chunks = self._chunks
            if len(data) >= _SMALL_READ:
                chunks.append(bytes(data))
            elif chunks and type(chunks[-1]) is bytearray:
                chunks[-1] += data
            elif chunks:
                chunks.append(bytearray(data))
            else:
                # The first read since the last join stays as it is: a read of whole
                # packets is parsed without a copy.
                chunks.append(bytes(data))
            self._chunks_len += len(data)

    def next_event(self) -> Event | _NeedData:
        """Return the next whole event, or ``NEED_DATA``.

        Raises :class:`RemoteProtocolError` for bad input; after one with ``close`` false
        the decoder goes on with the next packet.
        """
        events = self._parse(1)
        if events:
            return events[0]
        return NEED_DATA

    def receive_events(self) -> list[Event]:
        """Return every whole event buffered, in order (possibly none).

        If bad input follows some good events, the good ones are returned and the error is
        raised by the next call, so no event is lost to a later error.
        """
        return self._parse(0)

    def _fill(self) -> bool:
        # Join pending chunks into the buffer once enough bytes are there to progress;
        # large bodies arriving in many chunks are joined once, not once per chunk.
        if self._chunks and len(self._buf) - self._pos + self._chunks_len >= self._need:
            if self._pos < len(self._buf):
                self._chunks.insert(0, self._buf[self._pos :])
            chunks = self._chunks
            self._buf = b"".join(chunks) if len(chunks) > 1 else bytes(chunks[0])
            self._chunks.clear()
            self._chunks_len = 0
            self._pos = 0
            return True
        return False

    def _parse(self, limit: int) -> list[Event]:
        """Decode up to ``limit`` events (0: all there are) from what is buffered.

        The loop is the hot path: it keeps the buffer and its position in locals, and
        calls out once per packet body (its type's generated decoder) and otherwise only
        for what is rare: admin lines, rejected headers, refills, errors.
        """
        self._raise_held_error()
        self._fill()
        out: list[Any] = []
        buf = self._buf
        pos = self._pos
        end = len(buf)
        table = self._table
        want = self._want
        max_body = self._limits.max_body
        unpack = _HEAD3.unpack_from
        try:
            while not limit or len(out) < limit:
                if end - pos >= 12 and not buf[pos]:
                    # A whole header: a binary packet.
                    magic, ptype, size = unpack(buf, pos)
                    decode = table.get(ptype)
                    if magic != want or size > max_body or decode is None:
                        exc = self._header_error(magic, ptype, size)
                        if not exc.close:
                            buf, pos = self._skip_packet(buf, pos, size)
                        raise exc
                    stop = pos + 12 + size
                    if stop <= end:
                        body = buf[pos + 12 : stop]
                        pos = stop
                        out.append(decode(body))
                        continue
                    self._need = 12 + size
                elif pos < end and buf[pos]:
                    # Not a NUL first: an admin text line.
                    nxt = self._line(buf, pos, end, out)
                    if nxt >= 0:
                        pos = nxt
                        continue
                else:
                    self._need = 12  # too few bytes for a header
                # Incomplete here.  Chunks fed while a caller took events one at a time
                # may complete it: go on if they do.
                self._pos = pos
                if not self._fill():
                    break
                buf, pos, end = self._buf, 0, len(self._buf)
        except RemoteProtocolError as exc:
            return self._settle_error(exc, buf, pos, out)
        if pos > end - pos:
            # The unparsed rest is smaller than what was parsed: keep only the rest, so
            # a partial packet does not hold on to the whole read it came with.
            buf, pos = buf[pos:], 0
        self._buf, self._pos = buf, pos
        self._done += len(out)
        self._compact()
        return out

    def _raise_held_error(self) -> None:
        """Raise the error that ended the last call, or that closed the decoder."""
        if self._deferred is not None:
            err, self._deferred = self._deferred, None
            raise err
        if self._closed is not None:
            raise self._closed

    def _header_error(self, magic: int, ptype: int, size: int) -> RemoteProtocolError:
        """Why a complete header cannot be taken; ``close`` unless its frame is trusted.

        A declared size over the limit, or magic that is no Gearman magic at all, leaves
        nothing to stay in sync with; a well-formed packet of the other direction or of a
        type this end does not accept is skipped, body unseen (S20).
        """
        max_body = self._limits.max_body
        if magic != _REQ_INT and magic != _RES_INT:
            return RemoteProtocolError("Request magic expected", code=_INVALID_MAGIC, close=True)
        if size > max_body:
            return RemoteProtocolError(
                f"packet body of {size} bytes is over the limit of {max_body}",
                code=_TOO_LARGE,
                close=True,
            )
        if magic == self._wrong:
            return RemoteProtocolError(
                "Request magic expected"
                if self._role is Role.SERVER
                else "Response magic expected",
                code=_INVALID_MAGIC,
            )
        return _bad_type(ptype)

    def _skip_packet(self, buf: bytes, pos: int, size: int) -> tuple[bytes, int]:
        """Drop the packet whose header is at ``pos`` (body of ``size`` bytes), without
        waiting for or buffering its body; return the buffer and the position after it.
        Bytes of the body that have not arrived yet are dropped by :meth:`receive_data`."""
        if self._chunks:
            self._pos = pos
            self._need = 1
            self._fill()
            buf, pos = self._buf, 0
        end = len(buf)
        if end - pos >= 12 + size:
            return buf, pos + 12 + size
        self._skip = 12 + size - (end - pos)
        return buf, end

    def _settle_error(
        self, exc: RemoteProtocolError, buf: bytes, pos: int, out: list[Any]
    ) -> list[Event]:
        """After bad input: forget everything if the stream is lost (``exc.close``), else
        resume after the bad packet at ``pos``.  Then raise ``exc`` now, or, if good
        events came before it, return them and hold ``exc`` for the next call."""
        self._done += len(out) + 1
        if exc.close:
            self._closed = exc
            self._buf, self._pos = b"", 0
            self._chunks.clear()
            self._chunks_len = 0
            self._skip = 0
        else:
            self._buf, self._pos = buf, pos
            self._compact()
        if out:
            self._deferred = exc
            return out
        raise exc

    def _compact(self) -> None:
        if self._pos >= len(self._buf):
            self._buf = b""
            self._pos = 0
            self._need = 1

    def _line(self, buf: bytes, pos: int, end: int, out: list[Any]) -> int:
        """Parse one admin line at ``pos``; return the position after it, or -1 (with
        ``_need`` set) if the line is not complete yet.  Only a server's peers send
        text: on a client's stream a first byte other than NUL is garbage."""
        if self._role is not Role.SERVER:
            raise RemoteProtocolError(
                "response does not start with a NUL byte", code=_INVALID_MAGIC, close=True
            )
        max_line = self._limits.max_admin_line
        nl = buf.find(b"\n", pos, min(end, pos + max_line + 2))
        if nl < 0:
            if end - pos > max_line + 1:
                raise RemoteProtocolError("admin line too long", close=True)
            # Wait until a line end arrives (receive_data lowers _need) or the line
            # cannot fit any more.
            self._need = max_line + 2
            self._line_wait = True
            return -1
        line = buf[pos:nl]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > max_line:
            raise RemoteProtocolError("admin line too long", close=True)
        out.append(tuple.__new__(AdminCommand, (line,)))
        return nl + 1


def _bad_type(ptype: int) -> RemoteProtocolError:
    if 0 < ptype <= 42 and ptype != 5:
        return RemoteProtocolError(
            f"{PacketType(ptype).name} is not expected here",
            code=_INVALID_COMMAND,
            text=_NOT_EXPECTED,
        )
    return RemoteProtocolError(
        f"unknown packet type {ptype}", code=_INVALID_COMMAND, text=_NOT_EXPECTED
    )
