"""Events to bytes, with no I/O: the unchecked fast encoders and the checked ``encode``.

A packet is its magic and type (one 8-byte prefix per event class and direction, built at
import), the body length and the body: the event's fields joined by NUL, with numbers in
decimal (spec section 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from .errors import LocalProtocolError
from .framing import _CLIENT, _SERVER, MAX_NUMBER, REQ, RES, Role
from .limits import DEFAULT_LIMITS, Limits
from .packets import (
    EVENT_CLASSES,
    AdminCommand,
    CanDoTimeout,
    Event,
    StatusRes,
    StatusResUnique,
    SubmitJobEpoch,
)

__all__ = ["check", "encode", "encode_many", "encode_request", "encode_response"]

_ENCODE_TABLE: dict[type[Any], tuple[bytes, bytes, Callable[[Any], bytes] | None]] = {}


def _num(v: int) -> bytes:
    return str(int(v)).encode()


def _enc_epoch(e: SubmitJobEpoch) -> bytes:
    return b"\0".join((e.function, e.unique, _num(e.epoch), e.data))


def _enc_timeout(e: CanDoTimeout) -> bytes:
    return b"\0".join((e.function, _num(e.timeout)))


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


# --- validation -----------------------------------------------------------------------
#
# ``check`` runs before every validated encode, so it is built per event class once, at
# import: a straight-line function whose single boolean expression accepts the common case
# (exact ``bytes`` and ``int`` fields, nothing over a limit).  Anything else -- a bytearray,
# a bool, a bad value -- falls to the generic ``_check_slow``, which either accepts it or
# says exactly what is wrong.

#: Fields that name something (never carry a NUL, even as the last argument) -> limit.
_LIMITED: Final = {
    "function": "max_function",
    "unique": "max_unique",
    "handle": "max_handle",
    "client_id": "max_client_id",
}
_BYTES_LIKE: Final = (bytes, bytearray, memoryview)


def _field_kinds(cls: type[Any]) -> list[str]:
    """``"bytes"``, ``"int"`` or ``"bool"`` per field, from the class annotations."""
    kinds = []
    for name in cls._fields:
        ann = cls.__annotations__[name]
        # NamedTuple wraps string annotations in ForwardRef; plain classes may appear too.
        kind = getattr(ann, "__forward_arg__", None) or getattr(ann, "__name__", ann)
        if kind not in ("bytes", "int", "bool"):
            raise TypeError(f"{cls.__name__}.{name}: unsupported annotation {kind}")
        kinds.append(kind)
    return kinds


def _check_slow(event: Any, limits: Limits) -> None:
    cls = type(event)
    name_of = cls.__name__
    fields = cls._fields
    kinds = _KINDS[cls]
    body = len(fields) - 1 if fields else 0
    for i, (name, kind, value) in enumerate(zip(fields, kinds, event, strict=True)):
        where = f"{name_of}.{name}"
        if kind != "bytes":
            if not isinstance(value, int):
                raise LocalProtocolError(f"{where} must be an int, not {type(value).__name__}")
            if kind == "bool" and value not in (0, 1):
                raise LocalProtocolError(f"{where} must be a bool (or 0/1), not {value!r}")
            if value < 0:
                raise LocalProtocolError(f"{where} must not be negative")
            if value > MAX_NUMBER:
                raise LocalProtocolError(f"{where} does not fit 64 bits")
            body += len(str(int(value)))
            continue
        if not isinstance(value, _BYTES_LIKE):
            raise LocalProtocolError(f"{where} must be bytes, not {type(value).__name__}")
        raw = value.tobytes() if isinstance(value, memoryview) else value
        limit_name = _LIMITED.get(name)
        if (i < len(fields) - 1 or limit_name is not None) and b"\0" in raw:
            raise LocalProtocolError(f"{where} must not contain a NUL byte")
        if limit_name is not None and len(raw) > getattr(limits, limit_name):
            raise LocalProtocolError(f"{where} is over {getattr(limits, limit_name)} bytes")
        body += len(raw)
    if body > limits.max_body:
        raise LocalProtocolError(
            f"{name_of} body of {body} bytes is over the limit of {limits.max_body}"
        )


_Checker = Callable[[Any, Limits], None]
_CheckedEncoder = Callable[[Any, Limits, bytes], bytes]


def _make_checkers(cls: type[Any]) -> tuple[_Checker, _CheckedEncoder]:
    """Generate ``check_<cls>(event, limits)`` and ``encode_<cls>(event, limits, prefix)``,
    the latter validating and encoding in one call (the validated encode's hot path)."""
    fields = cls._fields
    kinds = _KINDS[cls]
    names = [f"a{i}" for i in range(len(fields))]
    conds = []
    lengths = []
    ints = 0
    for i, (field, kind, var) in enumerate(zip(fields, kinds, names, strict=True)):
        if kind == "int":
            conds.append(f"type({var}) is int and 0 <= {var} <= {MAX_NUMBER}")
            ints += 1
        elif kind == "bool":
            conds.append(f"type({var}) is bool")
            ints += 1
        else:
            conds.append(f"type({var}) is bytes")
            limit_name = _LIMITED.get(field)
            if i < len(fields) - 1 or limit_name is not None:
                # ``0 in b`` is a memchr; ``b"\0" in b`` is five times slower.
                conds.append(f"0 not in {var}")
            if limit_name is not None:
                conds.append(f"len({var}) <= limits.{limit_name}")
            lengths.append(f"len({var})")
    if fields:
        # Numbers count as their longest decimal form; _check_slow counts them exactly.
        lengths.append(str(len(fields) - 1 + 20 * ints))
        conds.append(f"{' + '.join(lengths)} <= limits.max_body")
        unpack = ", ".join(names) + ("," if len(names) == 1 else "")
        test = (
            f"    {unpack} = event\n"
            f"    if not ({' and '.join(f'({c})' for c in conds)}):\n"
            f"        _check_slow(event, limits)\n"
        )
    else:
        test = ""
    conv = _ENCODERS.get(cls)
    body = "b''" if not fields else "_conv(event)" if conv else 'b"\\0".join(event)'
    name = cls.__name__
    src = (
        f"def check_{name}(event, limits):\n{test}    return None\n"
        f"def encode_{name}(event, limits, prefix):\n{test}"
        f"    body = {body}\n"
        f'    return prefix + len(body).to_bytes(4, "big") + body\n'
    )
    namespace: dict[str, Any] = {"_check_slow": _check_slow, "_conv": conv}
    exec(compile(src, f"<trigear check {name}>", "exec"), namespace)
    return namespace[f"check_{name}"], namespace[f"encode_{name}"]


_KINDS: Final = {cls: _field_kinds(cls) for cls in EVENT_CLASSES.values()}
_GENERATED: Final = {cls: _make_checkers(cls) for cls in EVENT_CLASSES.values()}
_CHECKERS: Final = {cls: pair[0] for cls, pair in _GENERATED.items()}
#: Event class -> (validating encoder, ``\\0REQ`` prefix, ``\\0RES`` prefix).
_CHECKED_ENCODERS: Final = {
    cls: (pair[1], _ENCODE_TABLE[cls][0], _ENCODE_TABLE[cls][1]) for cls, pair in _GENERATED.items()
}


def check(event: Event, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise :class:`LocalProtocolError` if ``event`` cannot be sent as it is.

    Byte fields must be ``bytes`` (or bytearray/memoryview) and numeric fields ``int``
    (``bool`` for STATUS_RES's known and running); every argument but the last must be
    free of NUL bytes, and so must function names, uniques, handles and client ids
    wherever they stand; those must fit ``limits``, as must the whole body; numbers must
    be in ``0 .. 2**64 - 1``.
    """
    checker = _CHECKERS.get(type(event))
    if checker is None:
        if isinstance(event, AdminCommand):
            raise LocalProtocolError("admin lines are text; send AdminCommand.line + b'\\n'")
        raise LocalProtocolError(f"{type(event).__name__} is not a packet")
    checker(event, limits)


def encode(
    event: Event,
    role: Role | Literal["server", "client"],
    *,
    validate: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Encode ``event`` as ``role`` sends it (a server sends ``\\0RES``).

    With ``validate`` (the default) the event is checked against ``limits`` first (see
    :func:`check`) and :class:`LocalProtocolError` is raised before any byte is made.
    """
    if validate:
        entry = _CHECKED_ENCODERS.get(type(event))
        if entry is None:
            check(event, limits)  # raises the right LocalProtocolError
            raise AssertionError("unreachable")
        encoder, req, res = entry
        if role is _CLIENT:
            return encoder(event, limits, req)
        if role is _SERVER:
            return encoder(event, limits, res)
        return encoder(event, limits, res if Role(role) is _SERVER else req)
    if type(event) is AdminCommand:
        raise LocalProtocolError("admin lines are text; send AdminCommand.line + b'\\n'")
    if role is _SERVER or (role is not _CLIENT and Role(role) is _SERVER):
        return encode_response(event)
    return encode_request(event)


def encode_many(events: Iterable[Event], role: Role) -> bytes:
    """Encode several events into one buffer, unchecked (for batched writes)."""
    enc = encode_response if role is Role.SERVER else encode_request
    return b"".join([enc(e) for e in events])
