"""Whatever the bytes, a decoder yields events or raises RemoteProtocolError -- nothing
else -- and holds a bounded amount of data (spec S20, section 5).  After an error with
``close`` false it goes on with the next packet; after ``close`` true it keeps raising.

This is h11's fuzz rule, run synchronously with small limits so that every limit is
within reach of random data.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trigear.protocol import (
    NEED_DATA,
    CanDo,
    Decoder,
    Noop,
    RemoteProtocolError,
    Role,
    encode_request,
    encode_response,
)

from .protocol_strategies import SMALL

#: Most a decoder holds after parsing: one partial packet or one partial admin line.
AT_REST = max(12 + SMALL.max_body, SMALL.max_admin_line + 2)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed(role: Role, chunks: list[bytes], one_at_a_time: bool = False) -> list[Any]:
    """Feed chunks, checking the fuzz properties; return the events seen."""
    dec = Decoder(role, SMALL)
    got: list[Any] = []
    closed: RemoteProtocolError | None = None
    for chunk in chunks:
        dec.receive_data(chunk)
        assert dec.buffered <= AT_REST + len(chunk)
        while True:
            try:
                if one_at_a_time:
                    event = dec.next_event()
                    if event is NEED_DATA:
                        break
                    got.append(event)
                    continue
                events = dec.receive_events()
            except RemoteProtocolError as exc:
                assert isinstance(exc.error_text, bytes)  # noqa: PT017 - checked per input
                assert exc.code is None or isinstance(exc.code, bytes)  # noqa: PT017
                if exc.close:
                    closed = exc
                    break
                continue  # in sync: the next call goes on
            got.extend(events)
            if not events:
                break
        assert dec.buffered < AT_REST
        if closed is not None:
            break
    if closed is not None:
        # A closed decoder keeps refusing, and buffers nothing more.
        for _ in range(2):
            dec.receive_data(encode_request(CanDo(b"f")) + encode_response(Noop()))
            assert dec.buffered == 0
            try:
                dec.receive_events()
            except RemoteProtocolError as exc:
                assert exc.close  # noqa: PT017
            else:
                raise AssertionError("a closed decoder returned events")
    return got


magics = st.sampled_from([b"\0REQ", b"\0RES", b"\0RE", b"\0REX", b"\0\0\0\0", b"RES\0"])
types = st.one_of(st.integers(0, 45), st.sampled_from([2**32 - 1, 2**31, 256]))


@st.composite
def headed_packets(draw: st.DrawFn) -> bytes:
    """Random bodies behind plausible headers, with honest or lying lengths."""
    magic = draw(magics)
    ptype = draw(types)
    body = draw(st.binary(max_size=80))
    size = draw(st.one_of(st.just(len(body)), st.integers(0, 100), st.just(2**32 - 1)))
    head = magic + ptype.to_bytes(4, "big") + size.to_bytes(4, "big")
    return head[: draw(st.sampled_from([12, 12, 12, 12, 3, 8]))] + body


cuts = st.lists(st.integers(1, 64), max_size=20)


def split(wire: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for n in sizes:
        out.append(wire[pos : pos + n])
        pos += n
    out.append(wire[pos:])
    return [c for c in out if c] or [b""]


@FUZZ
@given(data=st.binary(max_size=400), sizes=cuts, role=st.sampled_from(Role), one=st.booleans())
def test_random_bytes(data: bytes, sizes: list[int], role: Role, one: bool) -> None:
    feed(role, split(data, sizes), one)


@FUZZ
@given(
    packets=st.lists(headed_packets(), max_size=8),
    lines=st.lists(st.binary(max_size=50), max_size=3),
    sizes=cuts,
    role=st.sampled_from(Role),
    one=st.booleans(),
)
def test_random_bytes_behind_valid_headers(
    packets: list[bytes], lines: list[bytes], sizes: list[int], role: Role, one: bool
) -> None:
    wire = b"".join(packets) + b"\n".join(lines)
    feed(role, split(wire, sizes), one)


@FUZZ
@given(
    good=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\0", b"")), max_size=5),
    bad=st.lists(headed_packets(), max_size=4),
    sizes=cuts,
)
def test_in_sync_errors_never_lose_the_next_packet(
    good: list[bytes], bad: list[bytes], sizes: list[int]
) -> None:
    """Between well-delimited bad packets, every good packet still arrives.

    Only bad packets the decoder can delimit are used: \\0RES with an honest length
    within the limit, or \\0REQ of a type a server must refuse.
    """
    wire = []
    expected = []
    for i, fn in enumerate(good):
        if i < len(bad):
            b = bad[i]
            body = b[12:]
            if len(b) >= 12 and len(body) <= SMALL.max_body:
                ptype = int.from_bytes(b[4:8], "big")
                refused = ptype not in (1, 2, 3, 4, 7, 9, 12, 13, 14, 15, 16, 18, 21, 22)
                refused = refused and ptype not in range(23, 42)
                magic = b"\0REQ" if refused else b"\0RES"
                wire.append(magic + b[4:8] + len(body).to_bytes(4, "big") + body)
        wire.append(encode_request(CanDo(fn)))
        expected.append(CanDo(fn))
    got = feed(Role.SERVER, split(b"".join(wire), sizes))
    assert got == expected
