"""Events are typed tuples: equality and hashing include the packet type."""

from __future__ import annotations

from typing import Any

import pytest

from trigear.protocol import (
    EVENT_CLASSES,
    AdminCommand,
    CanDo,
    CantDo,
    EchoReq,
    EchoRes,
    GrabJob,
    NoJob,
    Noop,
    OptionReq,
    OptionRes,
    PacketType,
    Priority,
    SubmitJob,
    SubmitJobBg,
    WorkComplete,
    WorkData,
    WorkException,
    WorkWarning,
    packet_type,
)

TWINS: list[tuple[Any, Any]] = [
    (WorkData(b"H:1", b"x"), WorkWarning(b"H:1", b"x")),
    (WorkComplete(b"H:1", b"x"), WorkException(b"H:1", b"x")),
    (CanDo(b"f"), CantDo(b"f")),
    (EchoReq(b"x"), EchoRes(b"x")),
    (OptionReq(b"exceptions"), OptionRes(b"exceptions")),
    (SubmitJob(b"f", b"u", b"d"), SubmitJobBg(b"f", b"u", b"d")),
    (Noop(), NoJob()),
    (GrabJob(), Noop()),
    (AdminCommand(b"x"), CanDo(b"x")),
]


@pytest.mark.parametrize(("a", "b"), TWINS, ids=lambda v: type(v).__name__)
def test_equal_fields_different_classes_are_unequal(a: Any, b: Any) -> None:
    assert tuple(a) == tuple(b)
    assert a != b
    assert b != a
    assert not a == b  # noqa: SIM201
    assert a == type(a)(*a)
    assert a == type(a)(*a)
    assert a != tuple(a)  # a plain tuple is not an event
    assert len({a, b}) == 2
    assert {a: 1, b: 2}[type(a)(*a)] == 1


def test_hash_is_stable_and_follows_equality() -> None:
    events = [cls(*([b""] * len(cls._fields))) for cls in EVENT_CLASSES.values()]
    assert len(set(events)) == len(events)
    for e in events:
        assert hash(e) == hash(type(e)(*e))


def test_packet_type_and_priority() -> None:
    assert packet_type(SubmitJob(b"", b"", b"")) is PacketType.SUBMIT_JOB
    assert all(
        packet_type(cls(*([b""] * len(cls._fields)))) is t for t, cls in EVENT_CLASSES.items()
    )
    with pytest.raises(KeyError):
        packet_type(AdminCommand(b""))
    assert PacketType.UNUSED == 5
    assert PacketType.UNUSED not in EVENT_CLASSES
    assert Priority.HIGH < Priority.NORMAL < Priority.LOW
