"""A valid stream decodes to the same events however it is cut: whole, a byte at a time,
split at every point, or split at random; read with receive_events or next_event.

The server side mixes admin text lines in (spec section 1: gearmand decides per packet by
the first byte), ended by ``\\n`` or ``\\r\\n``.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trigear.protocol import (
    NEED_DATA,
    AdminCommand,
    CanDo,
    Decoder,
    EchoReq,
    GrabJobAll,
    Limits,
    PreSleep,
    Role,
    SetClientId,
    SubmitJob,
    SubmitJobEpoch,
    WorkComplete,
    encode_request,
    encode_response,
)

from .protocol_strategies import client_events, server_events

LIMITS = Limits()
#: Most a decoder may hold between calls, with nothing being fed (module docstring).
AT_REST = max(12 + LIMITS.max_body, LIMITS.max_admin_line + 2)


def to_wire(events: list[Any], role: Role, crlf: list[bool] | None = None) -> bytes:
    out = []
    for i, e in enumerate(events):
        if isinstance(e, AdminCommand):
            out.append(e.line + (b"\r\n" if crlf and crlf[i % len(crlf)] else b"\n"))
        elif role is Role.SERVER:
            out.append(encode_request(e))
        else:
            out.append(encode_response(e))
    return b"".join(out)


def decode_chunks(role: Role, chunks: list[bytes], one_at_a_time: bool = False) -> list[Any]:
    dec = Decoder(role)
    got: list[Any] = []
    for chunk in chunks:
        dec.receive_data(chunk)
        if one_at_a_time:
            while (event := dec.next_event()) is not NEED_DATA:
                got.append(event)
        else:
            got.extend(dec.receive_events())
        assert dec.buffered < AT_REST
    assert dec.buffered == 0
    assert not dec.mid_packet
    assert dec.receive_events() == []
    return got


def split_at(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted({min(max(c, 0), len(wire)) for c in cuts}), len(wire)]
    return [wire[a:b] for a, b in itertools.pairwise(points)]


SMALL_SERVER_STREAM = [
    CanDo(b"reverse"),
    AdminCommand(b"status"),
    SubmitJob(b"reverse", b"", b"\0te\0st\0"),
    PreSleep(),
    AdminCommand(b""),
    SubmitJobEpoch(b"f", b"u", 1700000000, b""),
    WorkComplete(b"H:lap:1", b"tset"),
    AdminCommand(b"show unique jobs"),
    GrabJobAll(),
    SetClientId(b"me"),
    EchoReq(b""),
]


def test_small_stream_split_at_every_point() -> None:
    for crlf in ([False], [True], [True, False]):
        wire = to_wire(SMALL_SERVER_STREAM, Role.SERVER, crlf)
        assert decode_chunks(Role.SERVER, [wire]) == SMALL_SERVER_STREAM
        bytewise = [wire[i : i + 1] for i in range(len(wire))]
        assert decode_chunks(Role.SERVER, bytewise) == SMALL_SERVER_STREAM
        assert decode_chunks(Role.SERVER, bytewise, one_at_a_time=True) == SMALL_SERVER_STREAM
        for i in range(len(wire) + 1):
            for one in (False, True):
                got = decode_chunks(Role.SERVER, [wire[:i], wire[i:]], one)
                assert got == SMALL_SERVER_STREAM, i


def test_small_stream_split_at_every_pair_of_points() -> None:
    events = SMALL_SERVER_STREAM[:5]
    wire = to_wire(events, Role.SERVER)
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            assert decode_chunks(Role.SERVER, [wire[:i], wire[i:j], wire[j:]]) == events


STREAM_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@STREAM_SETTINGS
@given(
    events=st.lists(server_events(), max_size=12),
    crlf=st.lists(st.booleans(), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 4000), max_size=10),
    one_at_a_time=st.booleans(),
)
def test_server_stream_random_splits(
    events: list[Any], crlf: list[bool], cuts: list[int], one_at_a_time: bool
) -> None:
    wire = to_wire(events, Role.SERVER, crlf)
    assert decode_chunks(Role.SERVER, [wire]) == events
    assert decode_chunks(Role.SERVER, split_at(wire, cuts), one_at_a_time) == events


@STREAM_SETTINGS
@given(
    events=st.lists(client_events(), max_size=12),
    cuts=st.lists(st.integers(0, 4000), max_size=10),
    one_at_a_time=st.booleans(),
)
def test_client_stream_random_splits(
    events: list[Any], cuts: list[int], one_at_a_time: bool
) -> None:
    wire = to_wire(events, Role.CLIENT)
    assert decode_chunks(Role.CLIENT, [wire]) == events
    assert decode_chunks(Role.CLIENT, split_at(wire, cuts), one_at_a_time) == events


def decode_lagging(role: Role, events: list[Any], cuts: list[int]) -> list[Any]:
    """Feed the cut wire form of ``events`` and take only one event after each feed, so
    later bytes arrive while whole packets are still buffered (a reader that falls
    behind).  Every call must return an event whenever a whole one is buffered."""
    ends = list(itertools.accumulate(len(to_wire([e], role)) for e in events))
    dec = Decoder(role)
    got: list[Any] = []
    fed = 0
    for chunk in split_at(to_wire(events, role), cuts) + [b""] * len(events):
        dec.receive_data(chunk)
        fed += len(chunk)
        event = dec.next_event()
        if len(got) < bisect.bisect_right(ends, fed):
            assert event is not NEED_DATA, (len(got), fed)
            got.append(event)
        else:
            assert event is NEED_DATA
    assert dec.buffered == 0
    return got


def test_lagging_reader_gets_a_packet_that_completes_behind_a_buffered_one() -> None:
    # The second packet's header is cut after 5 bytes while the first is being taken;
    # its remaining 7 bytes come after.  The decoder must see that they complete it.
    events = [SubmitJob(b"f", b"u", b"x" * 100), PreSleep(), CanDo(b"g")]
    first = len(encode_request(events[0]))
    assert decode_lagging(Role.SERVER, events, [50, first + 5, first + 12]) == events


@STREAM_SETTINGS
@given(
    events=st.lists(server_events(), max_size=12),
    cuts=st.lists(st.integers(0, 4000), max_size=12),
)
def test_lagging_reader_random_splits(events: list[Any], cuts: list[int]) -> None:
    assert decode_lagging(Role.SERVER, events, cuts) == events


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(server_events(data_max=30), max_size=6))
def test_server_stream_byte_at_a_time(events: list[Any]) -> None:
    wire = to_wire(events, Role.SERVER)
    chunks = [wire[i : i + 1] for i in range(len(wire))]
    assert decode_chunks(Role.SERVER, chunks) == events
    assert decode_chunks(Role.SERVER, chunks, one_at_a_time=True) == events


def test_large_body_in_many_chunks() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, NULs included
    events = [SubmitJob(b"f", b"u", payload), CanDo(b"g")]
    wire = to_wire(events, Role.SERVER)
    chunks = [wire[i : i + 1000] for i in range(0, len(wire), 1000)]
    assert decode_chunks(Role.SERVER, chunks) == events


def test_long_admin_line_a_byte_at_a_time_stays_linear() -> None:
    line = b"x" * LIMITS.max_admin_line
    wire = line + b"\r\n" + encode_request(CanDo(b"f"))
    chunks = [wire[i : i + 1] for i in range(len(wire))]
    assert decode_chunks(Role.SERVER, chunks) == [AdminCommand(line), CanDo(b"f")]
