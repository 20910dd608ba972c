"""Hypothesis strategies for protocol events, shared by the codec tests.

Field kinds are read from each event class's annotations here, independently of the
codec's own tables, so a mismatch between the two shows up as a failing round trip.
"""

from __future__ import annotations

import typing
from typing import Any

from hypothesis import strategies as st

from trigear.protocol import (
    CLIENT_TO_SERVER,
    EVENT_CLASSES,
    SERVER_TO_CLIENT,
    AdminCommand,
    Limits,
)

#: Small limits so that boundaries are reachable by generated data.
SMALL = Limits(
    max_body=64,
    max_unique=8,
    max_handle=8,
    max_function=16,
    max_client_id=8,
    max_admin_line=32,
)

#: Fields that name something: never a NUL, bounded by a limit (spec section 5).
LIMIT_OF = {
    "function": "max_function",
    "unique": "max_unique",
    "handle": "max_handle",
    "client_id": "max_client_id",
}

U64 = 2**64 - 1
DEFAULT = Limits()

SERVER_CLASSES = sorted((EVENT_CLASSES[t] for t in CLIENT_TO_SERVER), key=lambda c: c.__name__)
CLIENT_CLASSES = sorted((EVENT_CLASSES[t] for t in SERVER_TO_CLIENT), key=lambda c: c.__name__)


def no_nul(max_size: int, min_size: int = 0) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=min_size, max_size=max_size).map(lambda b: b.replace(b"\0", b"\1"))


def data_bytes(max_size: int = 80) -> st.SearchStrategy[bytes]:
    """Trailing opaque data: NULs are likely, including leading and trailing ones."""
    return st.one_of(
        st.binary(max_size=max_size),
        st.lists(st.sampled_from([b"\0", b"x", b"\0\0", b"\xff"]), max_size=12).map(b"".join),
    )


def field_strategy(
    cls: type[Any], name: str, final: bool, limits: Limits, data_max: int
) -> st.SearchStrategy[Any]:
    kind = typing.get_type_hints(cls)[name]
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.one_of(st.integers(0, U64), st.sampled_from([0, 1, 9, 10, U64]))
    assert kind is bytes, (cls, name, kind)
    limit = LIMIT_OF.get(name)
    if limit is not None:
        top = getattr(limits, limit)
        return st.one_of(no_nul(min(top, 40)), no_nul(top, min_size=top))
    if not final:
        return no_nul(30)
    return data_bytes(data_max)


def events_of(
    cls: type[Any], limits: Limits = DEFAULT, data_max: int = 80
) -> st.SearchStrategy[Any]:
    fields = cls._fields
    return st.tuples(
        *(
            field_strategy(cls, name, i == len(fields) - 1, limits, data_max)
            for i, name in enumerate(fields)
        )
    ).map(lambda args: cls(*args))


def admin_lines(max_size: int = 40) -> st.SearchStrategy[AdminCommand]:
    """A text line as the decoder reports it: no NUL first, no newline, no trailing CR."""
    return (
        st.binary(max_size=max_size)
        .map(lambda b: b.replace(b"\n", b" "))
        .filter(lambda b: not b.startswith(b"\0") and not b.endswith(b"\r"))
        .map(AdminCommand)
    )


def server_events(limits: Limits = DEFAULT, data_max: int = 80) -> st.SearchStrategy[Any]:
    """What a server's decoder may yield: any client/worker packet or an admin line."""
    return st.one_of(*(events_of(c, limits, data_max) for c in SERVER_CLASSES), admin_lines())


def client_events(limits: Limits = DEFAULT, data_max: int = 80) -> st.SearchStrategy[Any]:
    return st.one_of(*(events_of(c, limits, data_max) for c in CLIENT_CLASSES))
