"""Bytes to events and events to bytes, with no I/O.

Framing (spec section 1): a binary packet is a 12-byte header -- magic, type and body
length -- then the body, whose arguments are separated by NUL bytes; the last argument
runs to the end of the body and may hold NULs itself.  A server's stream may also carry
text admin lines: a first byte other than NUL starts a line that runs to ``\\n``.

The :class:`Decoder` is incremental: feed it bytes split anywhere with
:meth:`Decoder.receive_data`, then take events with :meth:`Decoder.next_event` (one at a
time, ``NEED_DATA`` when the buffer holds no whole packet) or
:meth:`Decoder.receive_events` (all of them, the hot path).  It never buffers more than one
packet body (at most ``Limits.max_body``) plus the bytes it was fed last: sizes a header
declares are checked before anything is buffered for them.

Errors follow :mod:`trigear.protocol.errors`: anything wrong with the input raises
:class:`RemoteProtocolError` and nothing else.  When the frame could be delimited (a
complete header told us where the packet ends), the decoder skips the bad packet and stays
usable (``close`` is false); otherwise ``close`` is true and the decoder refuses further
input.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from struct import Struct
from typing import Any, Final, Literal

from .errors import LocalProtocolError, RemoteProtocolError
from .limits import DEFAULT_LIMITS, Limits
from .packets import (
    CLIENT_TO_SERVER,
    EVENT_CLASSES,
    SERVER_TO_CLIENT,
    AdminCommand,
    CanDoTimeout,
    Event,
    PacketType,
    StatusRes,
    StatusResUnique,
    SubmitJobEpoch,
)

__all__ = [
    "HEADER",
    "NEED_DATA",
    "REQ",
    "RES",
    "Decoder",
    "Role",
    "check",
    "encode",
    "encode_many",
    "encode_request",
    "encode_response",
]

REQ: Final = b"\0REQ"
RES: Final = b"\0RES"
HEADER: Final = Struct(">4sII")
_REQ_INT: Final = 0x00524551
_RES_INT: Final = 0x00524553
_HEAD3: Final = Struct(">III")


class Role(enum.Enum):
    """Which end of a connection the codec serves."""

    #: Reads ``\\0REQ`` packets and admin text lines, writes ``\\0RES`` packets.
    SERVER = "server"
    #: A client or a worker: reads ``\\0RES`` packets, writes ``\\0REQ`` packets.
    CLIENT = "client"


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`Decoder.next_event` when no whole event is buffered.
NEED_DATA: Final = _NeedData()

_INVALID_COMMAND: Final = b"INVALID_COMMAND"
_INVALID_MAGIC: Final = b"INVALID_MAGIC"
_TOO_LARGE: Final = b"ARGUMENT_TOO_LARGE"
_INVALID_PACKET: Final = b"INVALID_PACKET"
_INVALID_ARGUMENT: Final = b"INVALID_ARGUMENT"
_NOT_EXPECTED: Final = b"Command not expected"

# Which argument positions hold a function name, a unique, a handle or a client id, per
# packet type; checked against the limits after splitting.
_FUNCTION_AT: dict[PacketType, int] = {}
_UNIQUE_AT: dict[PacketType, int] = {}
_HANDLE_AT: dict[PacketType, int] = {}
for _t, _cls in EVENT_CLASSES.items():
    _fields = _cls._fields
    if "function" in _fields:
        _FUNCTION_AT[_t] = _fields.index("function")
    if "unique" in _fields:
        _UNIQUE_AT[_t] = _fields.index("unique")
    if "handle" in _fields:
        _HANDLE_AT[_t] = _fields.index("handle")


def _parse_uint(value: bytes, what: str) -> int:
    if not value or not value.isdigit() or len(value) > 20:
        raise RemoteProtocolError(
            f"{what} is not a decimal number: {value[:32]!r}", code=_INVALID_ARGUMENT
        )
    return int(value)


def _parse_bool(value: bytes, what: str) -> bool:
    if value == b"1":
        return True
    if value == b"0":
        return False
    raise RemoteProtocolError(f"{what} is not 0 or 1: {value[:32]!r}", code=_INVALID_ARGUMENT)


def _conv_epoch(parts: list[bytes]) -> tuple[Any, ...]:
    return (parts[0], parts[1], _parse_uint(parts[2], "epoch"), parts[3])


def _conv_timeout(parts: list[bytes]) -> tuple[Any, ...]:
    return (parts[0], _parse_uint(parts[1], "timeout"))


def _conv_status_res(parts: list[bytes]) -> tuple[Any, ...]:
    return (
        parts[0],
        _parse_bool(parts[1], "known"),
        _parse_bool(parts[2], "running"),
        _parse_uint(parts[3], "numerator"),
        _parse_uint(parts[4], "denominator"),
    )


def _conv_status_res_unique(parts: list[bytes]) -> tuple[Any, ...]:
    return (*_conv_status_res(parts[:5]), _parse_uint(parts[5], "client count"))


_CONVERTERS: dict[type[Any], Callable[[list[bytes]], tuple[Any, ...]]] = {
    SubmitJobEpoch: _conv_epoch,
    CanDoTimeout: _conv_timeout,
    StatusRes: _conv_status_res,
    StatusResUnique: _conv_status_res_unique,
}

# A decode-table entry: (class, number of arguments, converter, function index, unique
# index, handle index, empty-body singleton).  -1 means "no such argument".
_Entry = tuple[type[Any], int, Callable[[list[bytes]], tuple[Any, ...]] | None, int, int, int, Any]


def _table(accepted: frozenset[PacketType]) -> dict[int, _Entry]:
    table: dict[int, _Entry] = {}
    for t in accepted:
        cls = EVENT_CLASSES[t]
        nargs = len(cls._fields)
        table[int(t)] = (
            cls,
            nargs,
            _CONVERTERS.get(cls),
            _FUNCTION_AT.get(t, -1),
            _UNIQUE_AT.get(t, -1),
            _HANDLE_AT.get(t, -1),
            cls() if nargs == 0 else None,
        )
    return table


_SERVER_TABLE: Final = _table(CLIENT_TO_SERVER)
_CLIENT_TABLE: Final = _table(SERVER_TO_CLIENT)


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
        "_limits",
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
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        #: Bytes (counted from ``_pos``) that must be buffered before parsing can progress.
        self._need = 1
        #: Bytes of a rejected packet's body still to be dropped as they arrive.
        self._skip = 0
        self._closed: RemoteProtocolError | None = None
        self._deferred: RemoteProtocolError | None = None
        if role is Role.SERVER:
            self._want, self._wrong = _REQ_INT, _RES_INT
            self._table = _SERVER_TABLE
        else:
            self._want, self._wrong = _RES_INT, _REQ_INT
            self._table = _CLIENT_TABLE

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

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer.  Cheap: nothing is parsed until events are asked for."""
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        if data:
            self._chunks.append(bytes(data))
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
            self._buf = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks.clear()
            self._chunks_len = 0
            self._pos = 0
            return True
        return False

    def _join_all(self) -> None:
        if self._chunks:
            self._need = 0
            self._fill()

    def _parse(self, limit: int) -> list[Event]:
        if self._deferred is not None:
            err, self._deferred = self._deferred, None
            raise err
        if self._closed is not None:
            raise self._closed
        self._fill()
        out: list[Any] = []
        buf = self._buf
        pos = self._pos
        end = len(buf)
        table = self._table
        want = self._want
        limits = self._limits
        max_body = limits.max_body
        unpack = _HEAD3.unpack_from
        try:
            while True:
                if end - pos < 12 or buf[pos] != 0:
                    if pos < end and buf[pos] != 0:
                        if self._role is not Role.SERVER:
                            raise RemoteProtocolError(
                                "response does not start with a NUL byte",
                                code=_INVALID_MAGIC,
                                close=True,
                            )
                        nxt = self._line(buf, pos, end, out)
                        if nxt >= 0:
                            pos = nxt
                            if limit and len(out) >= limit:
                                break
                            continue
                    else:
                        self._need = 12
                    # Incomplete: take in pending chunks if they complete it.
                    if self._chunks and end - pos + self._chunks_len >= self._need:
                        self._pos = pos
                        self._fill()
                        buf, pos, end = self._buf, 0, len(self._buf)
                        continue
                    break
                magic, ptype, size = unpack(buf, pos)
                if magic != want or size > max_body:
                    if magic == self._wrong and size <= max_body:
                        # A well-formed packet of the other direction: skip its body
                        # as it arrives and stay in sync (S20).
                        self._pos = pos
                        self._join_all()
                        buf, pos, end = self._buf, 0, len(self._buf)
                        if end - pos >= 12 + size:
                            pos += 12 + size
                        else:
                            self._skip = 12 + size - (end - pos)
                            pos = end
                        raise RemoteProtocolError(
                            "Request magic expected"
                            if self._role is Role.SERVER
                            else "Response magic expected",
                            code=_INVALID_MAGIC,
                        )
                    if magic != _REQ_INT and magic != _RES_INT:
                        raise RemoteProtocolError(
                            "Request magic expected", code=_INVALID_MAGIC, close=True
                        )
                    raise RemoteProtocolError(
                        f"packet body of {size} bytes is over the limit of {max_body}",
                        code=_TOO_LARGE,
                        close=True,
                    )
                stop = pos + 12 + size
                if stop > end:
                    self._need = 12 + size
                    if self._chunks and end - pos + self._chunks_len >= self._need:
                        self._pos = pos
                        self._fill()
                        buf, pos, end = self._buf, 0, len(self._buf)
                        continue
                    break
                entry = table.get(ptype)
                if entry is None:
                    pos = stop
                    raise _bad_type(ptype)
                cls, nargs, conv, fi, ui, hi, single = entry
                if single is not None:
                    out.append(single)
                    pos = stop
                else:
                    parts = buf[pos + 12 : stop].split(b"\0", nargs - 1)
                    pos = stop
                    if len(parts) != nargs:
                        raise RemoteProtocolError(
                            f"{PacketType(ptype).name} needs {nargs} arguments, got {len(parts)}",
                            code=_INVALID_PACKET,
                        )
                    if ui >= 0 and len(parts[ui]) > limits.max_unique:
                        raise RemoteProtocolError("Unique value too large", code=_TOO_LARGE)
                    if fi >= 0 and len(parts[fi]) > limits.max_function:
                        raise RemoteProtocolError("Function name too large", code=_TOO_LARGE)
                    if hi >= 0 and len(parts[hi]) > limits.max_handle:
                        raise RemoteProtocolError("Job handle too large", code=_TOO_LARGE)
                    if conv is not None:
                        out.append(tuple.__new__(cls, conv(parts)))
                    else:
                        if ptype == 22 and len(parts[0]) > limits.max_client_id:
                            raise RemoteProtocolError("Client id too large", code=_TOO_LARGE)
                        out.append(tuple.__new__(cls, parts))
                if limit and len(out) >= limit:
                    break
        except RemoteProtocolError as exc:
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
            raise
        self._buf, self._pos = buf, pos
        self._compact()
        return out

    def _compact(self) -> None:
        if self._pos >= len(self._buf):
            self._buf = b""
            self._pos = 0
            self._need = 1

    def _line(self, buf: bytes, pos: int, end: int, out: list[Any]) -> int:
        """Parse one admin line at ``pos``; return the position after it, or -1 (with
        ``_need`` set) if the line is not complete yet."""
        max_line = self._limits.max_admin_line
        nl = buf.find(b"\n", pos, min(end, pos + max_line + 2))
        if nl < 0:
            if end - pos > max_line + 1:
                raise RemoteProtocolError("admin line too long", close=True)
            self._need = end - pos + 1
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


# --- encoding -------------------------------------------------------------------------

_ENCODE_TABLE: dict[type[Any], tuple[bytes, bytes, Callable[[Any], bytes] | None]] = {}


def _num(v: int) -> bytes:
    return str(int(v)).encode()


def _enc_epoch(e: SubmitJobEpoch) -> bytes:
    return b"\0".join((e.function, e.unique, _num(e.epoch), e.data))


def _enc_timeout(e: CanDoTimeout) -> bytes:
    return e.function + b"\0" + _num(e.timeout)


def _enc_status(e: StatusRes) -> bytes:
    return b"\0".join(
        (
            e.handle,
            b"1" if e.known else b"0",
            b"1" if e.running else b"0",
            _num(e.numerator),
            _num(e.denominator),
        )
    )


def _enc_status_unique(e: StatusResUnique) -> bytes:
    return b"\0".join(
        (
            e.unique,
            b"1" if e.known else b"0",
            b"1" if e.running else b"0",
            _num(e.numerator),
            _num(e.denominator),
            _num(e.client_count),
        )
    )


_ENCODERS: dict[type[Any], Callable[[Any], bytes]] = {
    SubmitJobEpoch: _enc_epoch,
    CanDoTimeout: _enc_timeout,
    StatusRes: _enc_status,
    StatusResUnique: _enc_status_unique,
}

for _t, _cls in EVENT_CLASSES.items():
    _ENCODE_TABLE[_cls] = (
        REQ + int(_t).to_bytes(4, "big"),
        RES + int(_t).to_bytes(4, "big"),
        _ENCODERS.get(_cls),
    )


def encode_response(event: Event) -> bytes:
    """Encode a packet with ``\\0RES`` magic, unchecked (the server's fast path)."""
    _, prefix, conv = _ENCODE_TABLE[type(event)]
    body = b"\0".join(event) if conv is None else conv(event)  # type: ignore[arg-type]
    return prefix + len(body).to_bytes(4, "big") + body


def encode_request(event: Event) -> bytes:
    """Encode a packet with ``\\0REQ`` magic, unchecked."""
    prefix, _, conv = _ENCODE_TABLE[type(event)]
    body = b"\0".join(event) if conv is None else conv(event)  # type: ignore[arg-type]
    return prefix + len(body).to_bytes(4, "big") + body


def check(event: Event, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise :class:`LocalProtocolError` if ``event`` cannot be sent as it is.

    Every argument but the last must be free of NUL bytes; uniques, handles, function
    names and client ids must fit the limits; numbers must be non-negative.
    """
    cls = type(event)
    if cls not in _ENCODE_TABLE:
        raise LocalProtocolError(f"{cls.__name__} is not a packet")
    fields = cls._fields
    for i, (name, value) in enumerate(zip(fields, event, strict=True)):
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            if value < 0:
                raise LocalProtocolError(f"{cls.__name__}.{name} must not be negative")
            continue
        if not isinstance(value, bytes | bytearray | memoryview):
            raise LocalProtocolError(f"{cls.__name__}.{name} must be bytes, not {type(value)}")
        if i < len(fields) - 1 and b"\0" in value:
            raise LocalProtocolError(f"{cls.__name__}.{name} must not contain a NUL byte")
        limit = {
            "unique": limits.max_unique,
            "handle": limits.max_handle,
            "function": limits.max_function,
            "client_id": limits.max_client_id,
        }.get(name)
        if limit is not None and len(value) > limit:
            raise LocalProtocolError(f"{cls.__name__}.{name} is over {limit} bytes")


def encode(
    event: Event, role: Role | Literal["server", "client"], *, validate: bool = True
) -> bytes:
    """Encode ``event`` as ``role`` sends it (a server sends ``\\0RES``).

    With ``validate`` (the default) the event is checked first (see :func:`check`).
    """
    if isinstance(event, AdminCommand):
        raise LocalProtocolError("admin lines are text; send AdminCommand.line + b'\\n'")
    if validate:
        check(event)
    if Role(role) is Role.SERVER:
        return encode_response(event)
    return encode_request(event)


def encode_many(events: Iterable[Event], role: Role) -> bytes:
    """Encode several events into one buffer, unchecked (for batched writes)."""
    enc = encode_response if role is Role.SERVER else encode_request
    return b"".join([enc(e) for e in events])
