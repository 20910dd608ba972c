"""``check`` and ``encode(validate=True)`` refuse, with LocalProtocolError and before any
byte is produced, what the protocol cannot carry: NUL inside a non-final argument (or in a
name), fields over the limits of spec section 5, negative or oversized numbers, wrong
types."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trigear.protocol import (
    AdminCommand,
    CanDo,
    CanDoTimeout,
    EchoReq,
    Error,
    GetStatus,
    JobAssignAll,
    Limits,
    LocalProtocolError,
    Noop,
    Role,
    SetClientId,
    StatusRes,
    StatusResUnique,
    SubmitJob,
    SubmitJobEpoch,
    SubmitJobSched,
    WorkFail,
    WorkStatus,
    check,
    encode,
    encode_many,
    encode_request,
    encode_response,
)

BAD: list[tuple[Any, str]] = [
    # NUL inside a non-final argument
    (SubmitJob(b"rev\0erse", b"", b""), "function must not contain a NUL"),
    (SubmitJob(b"f", b"u\0", b""), "unique must not contain a NUL"),
    (JobAssignAll(b"H:1", b"f", b"u", b"re\0d", b""), "reducer must not contain a NUL"),
    (WorkStatus(b"H:1", b"1\0", b"2"), "numerator must not contain a NUL"),
    (Error(b"CODE\0", b"text"), "code must not contain a NUL"),
    (SubmitJobSched(b"f", b"", b"1", b"\0", b"1", b"1", b"1", b""), "hour must not contain"),
    # ...and in a name even when it is the last argument (it is not last elsewhere)
    (CanDo(b"f\0"), "function must not contain a NUL"),
    (WorkFail(b"H:1\0"), "handle must not contain a NUL"),
    (GetStatus(b"\0"), "handle must not contain a NUL"),
    (SetClientId(b"a\0b"), "client_id must not contain a NUL"),
    # over the limits
    (SubmitJob(b"f", b"u" * 65, b""), "unique is over 64 bytes"),
    (CanDo(b"f" * 513), "function is over 512 bytes"),
    (GetStatus(b"H" * 65), "handle is over 64 bytes"),
    (SetClientId(b"c" * 129), "client_id is over 128 bytes"),
    # numbers
    (CanDoTimeout(b"f", -1), "timeout must not be negative"),
    (SubmitJobEpoch(b"f", b"", -1, b""), "epoch must not be negative"),
    (SubmitJobEpoch(b"f", b"", 2**64, b""), "does not fit 64 bits"),
    (StatusRes(b"H:1", True, False, -3, 4), "numerator must not be negative"),
    (StatusResUnique(b"u", True, False, 3, 4, -1), "client_count must not be negative"),
    (StatusRes(b"H:1", 2, False, 0, 0), "known must be a bool"),
    # types
    (SubmitJob("f", b"", b""), "function must be bytes, not str"),  # type: ignore[arg-type]
    (SubmitJob(b"f", b"", None), "data must be bytes, not NoneType"),  # type: ignore[arg-type]
    (CanDo(5), "function must be bytes, not int"),  # type: ignore[arg-type]
    (CanDoTimeout(b"f", b"5"), "timeout must be an int"),  # type: ignore[arg-type]
    (SubmitJobEpoch(b"f", b"", 1.5, b""), "epoch must be an int"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("event", "message"), BAD, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("role", list(Role))
def test_refused_before_encoding(event: Any, message: str, role: Role) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        check(event)
    with pytest.raises(LocalProtocolError, match=message):
        encode(event, role)
    with pytest.raises(LocalProtocolError, match=message):
        encode(event, role.value)  # type: ignore[arg-type]


def test_limits_are_the_callers() -> None:
    small = Limits(max_unique=4, max_function=3, max_body=10)
    check(SubmitJob(b"fff", b"uuuu", b""), small)
    with pytest.raises(LocalProtocolError, match="unique is over 4"):
        check(SubmitJob(b"f", b"uuuuu", b""), small)
    with pytest.raises(LocalProtocolError, match="function is over 3"):
        encode(CanDo(b"ffff"), Role.CLIENT, limits=small)
    check(EchoReq(b"x" * 10), small)
    with pytest.raises(LocalProtocolError, match="body of 11 bytes is over the limit of 10"):
        check(EchoReq(b"x" * 11), small)
    with pytest.raises(LocalProtocolError, match="body"):
        encode(SubmitJob(b"f", b"u", b"x" * 7), Role.CLIENT, limits=small)
    # Numbers count as their decimal length: 1 + 1 + 8 = 10 fits exactly.
    check(CanDoTimeout(b"f", 10**7), small)
    with pytest.raises(LocalProtocolError, match="body of 11"):
        check(CanDoTimeout(b"f", 10**8), small)


def test_admin_command_and_non_events_are_not_packets() -> None:
    with pytest.raises(LocalProtocolError, match="admin lines are text"):
        check(AdminCommand(b"status"))
    with pytest.raises(LocalProtocolError, match="admin lines are text"):
        encode(AdminCommand(b"status"), Role.CLIENT)
    with pytest.raises(LocalProtocolError, match="admin lines are text"):
        encode(AdminCommand(b"status"), Role.CLIENT, validate=False)
    with pytest.raises(LocalProtocolError, match="tuple is not a packet"):
        check((b"f",))  # type: ignore[arg-type]


def test_accepted_variants() -> None:
    """Bytes-like fields and 0/1 ints for bools pass, and encode like their bytes."""
    check(SubmitJob(bytearray(b"f"), memoryview(b"u"), bytearray(b"\0d\0")))
    check(StatusRes(b"H:1", 1, 0, True, 0))
    check(Noop())
    assert encode(SubmitJob(bytearray(b"f"), memoryview(b"u"), b"\0"), Role.CLIENT) == (
        encode_request(SubmitJob(b"f", b"u", b"\0"))
    )
    assert encode(CanDoTimeout(memoryview(b"f"), True), "client") == encode_request(
        CanDoTimeout(b"f", 1)
    )


def test_validate_false_skips_the_checks() -> None:
    event = SubmitJob(b"f", b"u" * 100, b"")
    assert encode(event, Role.CLIENT, validate=False) == encode_request(event)
    assert encode(event, "server", validate=False) == encode_response(event)


def test_encode_many_is_the_concatenation() -> None:
    events = [CanDo(b"a"), SubmitJob(b"f", b"", b"\0"), Noop()]
    assert encode_many(events, Role.CLIENT) == b"".join(map(encode_request, events))
    assert encode_many(events, Role.SERVER) == b"".join(map(encode_response, events))
    assert encode_many([], Role.SERVER) == b""


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="worker"):
        encode(Noop(), "worker")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    function=st.binary(max_size=520),
    unique=st.binary(max_size=70),
    data=st.binary(max_size=20),
)
def test_fast_and_slow_checks_agree(function: bytes, unique: bytes, data: bytes) -> None:
    """The generated fast check and the generic one accept exactly the same events."""
    event = SubmitJob(function, unique, data)
    ok = b"\0" not in function + unique and len(function) <= 512 and len(unique) <= 64
    try:
        check(event)
    except LocalProtocolError:
        assert not ok
    else:
        assert ok
    # bytearray fields always take the generic path
    slow = SubmitJob(bytearray(function), bytearray(unique), data)
    try:
        check(slow)
    except LocalProtocolError:
        assert not ok
    else:
        assert ok
