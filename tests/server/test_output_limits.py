"""Output limits (spec section 5): a peer's unread output is counted as it is made, so
one that stops reading is cut at its limit without the server making more for it; and
all peers' unread output together has a budget, beyond which the biggest non-readers go."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

import trigear.server.dispatcher as dispatcher_module
from trigear.protocol.packets import EchoReq, EchoRes
from trigear.server import Server, ServerConfig
from trigear.server.ratelog import RateLimitedLog

from ..memory_peer import Peer

if TYPE_CHECKING:
    from ..memory_peer import Connect


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", max_output=100_000)])
async def test_output_is_checked_as_it_is_made(
    server: Server, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1000 pipelined ``status`` lines with 2000 functions (about 20 KB each): the peer
    is cut after a handful of answers, not after making all of them."""
    answers = 0
    answer = dispatcher_module.answer

    def counting(*args: Any) -> bytes:
        nonlocal answers
        answers += 1
        return answer(*args)

    monkeypatch.setattr(dispatcher_module, "answer", counting)
    admin = await connect()
    for i in range(2000):
        await admin.send_raw(b"create function function-%d\n" % i)
        assert (await admin.stream.receive_some(100)).startswith(b"OK")
    answers = 0
    hog = await connect()
    await hog.send_raw(b"status\n" * 1000)
    assert await hog.closed()
    assert answers <= 10, answers
    assert server.statistics().output_cuts == 1
    other = await connect()
    await other.send(EchoReq(b"still served"))
    assert await other.recv() == EchoRes(b"still served")


async def _non_reader(port: int, nbytes: int) -> trio.SocketStream:
    """A connection that asks for ``nbytes`` of echoes and reads none of them."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    chunk = 50_000
    packet = b"\0REQ\0\0\0\x10" + chunk.to_bytes(4, "big") + b"e" * chunk
    await stream.send_all(packet * (nbytes // chunk))
    return stream


async def test_the_biggest_non_readers_are_cut_beyond_the_servers_budget(
    nursery: trio.Nursery,
) -> None:
    config = ServerConfig(job_handle_prefix="t", max_output=3_000_000, max_output_total=5_000_000)
    server = Server(config)
    await nursery.start(server.serve_tcp, 0, ["127.0.0.1"])
    port = server.listeners[0].socket.getsockname()[1]
    with trio.fail_after(30):
        streams = [await _non_reader(port, 1_500_000) for _ in range(3)]
        streams.append(await _non_reader(port, 2_500_000))
        while server.statistics().output_cuts == 0:  # noqa: ASYNC110 - server state
            await trio.sleep(0.01)
        await trio.sleep(0.2)
        # The biggest went, and enough of the others stayed to fit the budget.
        assert server.dispatcher.output.unread <= config.max_output_total
        assert len(server.dispatcher.peers) >= 2
        ok = Peer(await trio.open_tcp_stream("127.0.0.1", port))
        await ok.send(EchoReq(b"x"))
        assert await ok.recv() == EchoRes(b"x")
        await ok.stream.aclose()
    for s in streams:
        await s.aclose()


def test_rate_limited_log_says_how_many_lines_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.ratelog"), period=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.ratelog"):
        assert log("failed: %s", "a")
        for _ in range(99):
            now[0] += 0.1
            assert not log("failed: %s", "b")
        now[0] = 10.5
        assert log("failed: %s", "c")
    assert [r.getMessage() for r in caplog.records] == [
        "failed: a",
        "failed: c (and 99 more like it in the last 10 s, not logged)",
    ]
