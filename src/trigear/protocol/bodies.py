"""Packet bodies to events: one decoder per packet type, generated for the limits in force.

A packet's body holds its arguments separated by NUL bytes, the last one running to the
end (spec section 1).  :func:`body_decoders` gives, for one end of a connection and one
set of :class:`~.limits.Limits`, a table from packet type number to a function that turns
a whole body of that type into its event: it splits the arguments, checks their count,
converts the numeric ones and checks each bounded one against its limit.  The functions
are generated Python, one per type, with the limits inlined (:func:`_make_decode` says
why); :class:`~.decoder.Decoder` calls one per packet and does the framing around them.

Errors are :class:`RemoteProtocolError` without ``close``: a bad body is bad within its own
frame, and the stream is still in sync (S20).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from .errors import RemoteProtocolError
from .framing import MAX_NUMBER, Role
from .packets import (
    CLIENT_TO_SERVER,
    EVENT_CLASSES,
    SERVER_TO_CLIENT,
    CanDoTimeout,
    PacketType,
    StatusRes,
    StatusResUnique,
    SubmitJobEpoch,
    WorkFail,
)

if TYPE_CHECKING:
    from .limits import Limits

__all__ = ["BodyDecoder", "body_decoders"]

_TOO_LARGE: Final = b"ARGUMENT_TOO_LARGE"
_INVALID_PACKET: Final = b"INVALID_PACKET"
_INVALID_ARGUMENT: Final = b"INVALID_ARGUMENT"


def _parse_uint(value: bytes, what: str) -> int:
    # bytes.isdigit() is ASCII-only: no signs, spaces, underscores or other digits.
    if not value or not value.isdigit() or len(value) > 20 or int(value) > MAX_NUMBER:
        raise RemoteProtocolError(
            f"{what} is not a decimal number below 2**64: {value[:32]!r}",
            code=_INVALID_ARGUMENT,
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


def _parse_progress(value: bytes, what: str) -> int:
    # The Perl Gearman::Server answers GET_STATUS with empty numbers for a job that has
    # sent no WORK_STATUS: read them as 0.
    return _parse_uint(value, what) if value else 0


def _conv_status_res(parts: list[bytes]) -> tuple[Any, ...]:
    return (
        parts[0],
        _parse_bool(parts[1], "known"),
        _parse_bool(parts[2], "running"),
        _parse_progress(parts[3], "numerator"),
        _parse_progress(parts[4], "denominator"),
    )


def _conv_status_res_unique(parts: list[bytes]) -> tuple[Any, ...]:
    return (*_conv_status_res(parts[:5]), _parse_uint(parts[5], "client count"))


def _conv_work_fail(parts: list[bytes]) -> tuple[Any, ...]:
    # gearmand 1.1.20 turns WORK_EXCEPTION into a WORK_FAIL whose handle is followed by a
    # stray NUL (spec S7).  A handle never holds a NUL, so anything from one on is dropped.
    return (parts[0].split(b"\0", 1)[0],)


_CONVERTERS: dict[type[Any], Callable[[list[bytes]], tuple[Any, ...]]] = {
    WorkFail: _conv_work_fail,
    SubmitJobEpoch: _conv_epoch,
    CanDoTimeout: _conv_timeout,
    StatusRes: _conv_status_res,
    StatusResUnique: _conv_status_res_unique,
}

#: The argument fields each limit bounds, in the order they are checked, with the error
#: message a packet over the limit gets.
_BOUNDED: Final = (
    ("unique", "max_unique", "Unique value too large"),
    ("function", "max_function", "Function name too large"),
    ("handle", "max_handle", "Job handle too large"),
    ("client_id", "max_client_id", "Client id too large"),
)


#: A generated body decoder: a whole body of its type in, its event out.
BodyDecoder = Callable[[bytes], Any]


def _arity_error(name: str, nargs: int, got: int) -> RemoteProtocolError:
    return RemoteProtocolError(f"{name} needs {nargs} arguments, got {got}", code=_INVALID_PACKET)


def _too_large(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code=_TOO_LARGE)


def _make_decode(t: PacketType, limits: Limits) -> BodyDecoder:
    """Generate ``decode_<Event>(body)`` for packet type ``t`` under ``limits``.

    It splits a whole body into the type's arguments, checks their count (a body with too
    few is malformed within its own frame), converts the numeric ones and checks every
    bounded argument against its limit, in straight-line code with the limits inlined:
    the decoder calls it once per packet, so a loop over a table of bounds would cost
    a tenth of the decoder's speed.  It raises :class:`RemoteProtocolError` (never
    ``close``: the stream is still in sync, S20) or returns the event.
    """
    cls = EVENT_CLASSES[t]
    fields = cls._fields
    name = cls.__name__
    if not fields:
        # No arguments: one shared event, whatever the body holds.
        src = f"def decode_{name}(body):\n    return _single\n"
    else:
        nargs = len(fields)
        lines = [
            f"def decode_{name}(body):",
            f"    args = body.split(b'\\0', {nargs - 1})",
            f"    if len(args) != {nargs}:",
            f"        raise _arity_error({t.name!r}, {nargs}, len(args))",
        ]
        if cls in _CONVERTERS:
            # Converters keep byte arguments at their positions.
            lines.append("    args = _convert(args)")
        for field, limit, message in _BOUNDED:
            if field in fields:
                lines.append(f"    if len(args[{fields.index(field)}]) > {getattr(limits, limit)}:")
                lines.append(f"        raise _too_large({message!r})")
        lines.append("    return _new(_cls, args)")
        src = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {
        "_arity_error": _arity_error,
        "_too_large": _too_large,
        "_convert": _CONVERTERS.get(cls),
        "_new": tuple.__new__,
        "_cls": cls,
        "_single": None if fields else cls(),
    }
    exec(compile(src, f"<trigear decode {name}>", "exec"), namespace)
    decode: BodyDecoder = namespace[f"decode_{name}"]
    return decode


@lru_cache(maxsize=16)
def body_decoders(role: Role, limits: Limits) -> dict[int, BodyDecoder]:
    """The body decoders of the packet types ``role`` accepts, by number, for ``limits``."""
    accepted = CLIENT_TO_SERVER if role is Role.SERVER else SERVER_TO_CLIENT
    return {int(t): _make_decode(t, limits) for t in accepted}
