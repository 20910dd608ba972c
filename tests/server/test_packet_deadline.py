"""The whole-packet deadline (spec section 5, S20) and compact buffering of partial
packets: a peer that trickles a packet a byte at a time is closed as surely as one that
stops, however short each pause, and what it sent costs about a byte per byte."""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING

import pytest
import trio

from trigear.protocol import Decoder, Role
from trigear.protocol.packets import EchoReq, EchoRes
from trigear.server import ServerConfig

if TYPE_CHECKING:
    from trio.testing import MockClock

    from ..memory_peer import Connect

HEADER_16 = b"\0REQ\0\0\0\x10\0\0\0\x10"  # ECHO_REQ with a 16-byte body


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", stall_timeout=5)])
async def test_a_trickling_packet_is_closed_at_its_deadline_not_reset_per_byte(
    autojump_clock: MockClock, connect: Connect
) -> None:
    idle = await connect()
    slow = await connect()
    started = trio.current_time()
    sent = 0
    with trio.move_on_after(60):
        # One byte every 2 s: each wait is well within the 5 s timeout.
        for byte in HEADER_16 + b"x" * 16:
            try:
                await slow.send_raw(bytes([byte]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            sent += 1
            await trio.sleep(2)
    assert await slow.closed()
    assert trio.current_time() - started < 10
    assert sent < 5
    # Everyone else is served.
    await idle.send(EchoReq(b"x"))
    assert await idle.recv() == EchoRes(b"x")


@pytest.mark.parametrize(
    "config",
    [ServerConfig(job_handle_prefix="t", stall_timeout=5, min_upload_rate=1024 * 1024)],
)
async def test_a_large_packet_gets_time_for_its_size(
    autojump_clock: MockClock, connect: Connect
) -> None:
    """2 MiB at 1 MiB/s on top of 5 s: 7 s in all.  Sent in 6 s it is read; in 9 s it
    is not."""
    body = b"y" * (2 * 1024 * 1024)
    header = b"\0REQ\0\0\0\x10" + len(body).to_bytes(4, "big")
    ok = await connect()
    await ok.send_raw(header + body[:1024])
    for i in range(2):
        await trio.sleep(3)
        await ok.send_raw(body[1024 + i * 1024 * 1024 : 1024 + (i + 1) * 1024 * 1024])
    await ok.send_raw(body[1024 + 2 * 1024 * 1024 :])
    assert await ok.recv() == EchoRes(body)
    late = await connect()
    await late.send_raw(header + body[:1024])
    with trio.move_on_after(20):
        for i in range(3):
            await trio.sleep(3)
            try:
                await late.send_raw(body[1024 + i * 700_000 : 1024 + (i + 1) * 700_000])
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
    assert await late.closed()


def test_a_packet_fed_a_byte_at_a_time_costs_about_a_byte_per_byte() -> None:
    """Each read of a partial packet used to be kept as its own ``bytes`` object
    (about 40 bytes of overhead per read)."""
    dec = Decoder(Role.SERVER)
    dec.receive_data(b"\0REQ\0\0\0\x10\0\x01\0\0")  # a 64 KiB body declared
    assert dec.receive_events() == []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(20_000):
            dec.receive_data(b"z")
            assert dec.receive_events() == []
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2 * 20_000, grown
    dec.receive_data(b"z" * (65536 - 20_000))
    (event,) = dec.receive_events()
    assert event == EchoReq(b"z" * 65536)
    assert dec.buffered == 0


def test_progress_counts_finished_and_rejected_packets() -> None:
    dec = Decoder(Role.SERVER)
    assert dec.progress == 0
    dec.receive_data(b"\0REQ\0\0\0\x10\0\0\0\x01a\0REQ")
    dec.receive_events()
    assert dec.progress == 1
    assert dec.mid_packet
    assert dec.expected >= 12
    dec.receive_data(b"\0\0\0\x10\0\0\0\x05")
    dec.receive_events()
    assert dec.expected == 12 + 5
