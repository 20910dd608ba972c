"""Golden bytes: the worked example of spec section 2 (from gearmand's PROTOCOL)."""

from __future__ import annotations

from typing import Any

import pytest

from trigear.protocol import (
    CanDo,
    Decoder,
    JobAssign,
    JobCreated,
    Noop,
    Role,
    SubmitJob,
    WorkComplete,
    encode,
)

CASES: list[tuple[Any, Role, bytes]] = [
    (CanDo(b"reverse"), Role.CLIENT, bytes.fromhex("00524551 00000001 00000007") + b"reverse"),
    (
        SubmitJob(b"reverse", b"", b"test"),
        Role.CLIENT,
        bytes.fromhex("00524551 00000007 0000000d") + b"reverse\0\0test",
    ),
    (JobCreated(b"H:lap:1"), Role.SERVER, bytes.fromhex("00524553 00000008 00000007") + b"H:lap:1"),
    (Noop(), Role.SERVER, bytes.fromhex("00524553 00000006 00000000")),
    (
        JobAssign(b"H:lap:1", b"reverse", b"test"),
        Role.SERVER,
        bytes.fromhex("00524553 0000000b 00000014") + b"H:lap:1\0reverse\0test",
    ),
    (
        WorkComplete(b"H:lap:1", b"tset"),
        Role.CLIENT,
        bytes.fromhex("00524551 0000000d 0000000c") + b"H:lap:1\0tset",
    ),
    (
        WorkComplete(b"H:lap:1", b"tset"),
        Role.SERVER,
        bytes.fromhex("00524553 0000000d 0000000c") + b"H:lap:1\0tset",
    ),
]


@pytest.mark.parametrize(("event", "sender", "wire"), CASES, ids=lambda v: repr(v)[:30])
def test_worked_example(event: Any, sender: Role, wire: bytes) -> None:
    assert encode(event, sender) == wire
    receiver = Role.SERVER if sender is Role.CLIENT else Role.CLIENT
    dec = Decoder(receiver)
    dec.receive_data(wire)
    assert dec.receive_events() == [event]


def test_worked_example_as_one_conversation() -> None:
    """The whole exchange, each side's stream decoded a byte at a time."""
    to_server = b"".join(w for _, s, w in CASES if s is Role.CLIENT)
    to_client = b"".join(w for _, s, w in CASES if s is Role.SERVER)
    for role, wire in ((Role.SERVER, to_server), (Role.CLIENT, to_client)):
        dec = Decoder(role)
        got = []
        for i in range(len(wire)):
            dec.receive_data(wire[i : i + 1])
            got.extend(dec.receive_events())
        sender = Role.CLIENT if role is Role.SERVER else Role.SERVER
        assert got == [e for e, s, _ in CASES if s is sender]
