"""Encode then decode gives back an equal event, for every packet type in each direction
it travels (spec section 2), with NULs inside the trailing data, empty arguments, and the
numeric fields as ints and bools."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trigear.protocol import (
    CLIENT_TO_SERVER,
    DEFAULT_LIMITS,
    EVENT_CLASSES,
    NEED_DATA,
    SERVER_TO_CLIENT,
    Decoder,
    Limits,
    Role,
    check,
    encode,
    encode_request,
    encode_response,
    packet_type,
)

from .protocol_strategies import CLIENT_CLASSES, SERVER_CLASSES, SMALL, events_of

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_one(role: Role, wire: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    dec = Decoder(role, limits)
    dec.receive_data(wire)
    events = dec.receive_events()
    assert len(events) == 1, events
    assert dec.buffered == 0
    assert not dec.mid_packet
    assert dec.next_event() is NEED_DATA
    return events[0]


def test_every_packet_type_has_a_direction() -> None:
    # Type 5 has no class; every other type travels at least one way.
    assert set(EVENT_CLASSES) == CLIENT_TO_SERVER | SERVER_TO_CLIENT
    assert len(EVENT_CLASSES) == 41


@pytest.mark.parametrize("cls", SERVER_CLASSES, ids=lambda c: c.__name__)
@SETTINGS
@given(data=st.data())
def test_request_round_trip(cls: type[Any], data: st.DataObject) -> None:
    """What a client or worker sends (``\\0REQ``), a server decodes unchanged."""
    event = data.draw(events_of(cls))
    check(event)
    wire = encode(event, Role.CLIENT)
    assert wire == encode_request(event)
    assert wire[:4] == b"\0REQ"
    assert int.from_bytes(wire[4:8], "big") == packet_type(event)
    assert int.from_bytes(wire[8:12], "big") == len(wire) - 12
    got = decode_one(Role.SERVER, wire)
    assert got == event
    assert type(got) is cls
    assert encode_request(got) == wire


@pytest.mark.parametrize("cls", CLIENT_CLASSES, ids=lambda c: c.__name__)
@SETTINGS
@given(data=st.data())
def test_response_round_trip(cls: type[Any], data: st.DataObject) -> None:
    """What the server sends (``\\0RES``), a client or worker decodes unchanged."""
    event = data.draw(events_of(cls))
    wire = encode(event, "server")
    assert wire == encode_response(event)
    assert wire[:4] == b"\0RES"
    got = decode_one(Role.CLIENT, wire)
    assert got == event
    assert type(got) is cls
    assert encode_response(got) == wire


@pytest.mark.parametrize("cls", SERVER_CLASSES + CLIENT_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_round_trip_at_the_limits(cls: type[Any], data: st.DataObject) -> None:
    """Fields exactly at small limits pass both ``check`` and the decoder's limits."""
    event = data.draw(events_of(cls, SMALL, data_max=20))
    body = len(encode_request(event)) - 12
    if body > SMALL.max_body:
        return  # the body limit, tested on its own
    check(event, SMALL)
    role = Role.SERVER if cls in SERVER_CLASSES else Role.CLIENT
    wire = encode(event, Role.CLIENT if role is Role.SERVER else Role.SERVER, limits=SMALL)
    assert decode_one(role, wire, SMALL) == event


@pytest.mark.parametrize("cls", SERVER_CLASSES + CLIENT_CLASSES, ids=lambda c: c.__name__)
def test_empty_arguments(cls: type[Any]) -> None:
    """Every byte argument empty (numbers zero): a body of bare separators."""
    zero = {bytes: b"", int: 0, bool: False}
    hints = typing.get_type_hints(cls)
    args = [zero[hints[name]] for name in cls._fields]
    event = cls(*args)
    role = Role.SERVER if cls in SERVER_CLASSES else Role.CLIENT
    wire = encode_request(event) if role is Role.SERVER else encode_response(event)
    assert decode_one(role, wire) == event


def test_bools_and_ints_encode_as_decimal() -> None:
    from trigear.protocol import CanDoTimeout, StatusRes, StatusResUnique, SubmitJobEpoch

    assert (
        encode_response(StatusRes(b"H:1", True, False, 3, 10))[12:] == b"H:1\x001\x000\x003\x0010"
    )
    assert encode_response(StatusResUnique(b"u", False, True, 0, 0, 7))[12:] == (
        b"u\x000\x001\x000\x000\x007"
    )
    assert encode_request(CanDoTimeout(b"f", 1500))[12:] == b"f\x001500"
    big = SubmitJobEpoch(b"f", b"", 2**64 - 1, b"\0")
    assert encode_request(big)[12:] == b"f\0\x0018446744073709551615\0\0"
    assert decode_one(Role.SERVER, encode_request(big)) == big
    # Decoded bools are bools, not ints that happen to be equal.
    got = decode_one(Role.CLIENT, encode_response(StatusRes(b"h", True, False, 1, 2)))
    assert got.known is True
    assert got.running is False
