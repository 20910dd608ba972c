"""The Trio layer over real sockets: accept loops, the socket reader, statistics()."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import resource
import socket
from typing import TYPE_CHECKING

import pytest
import trio

from trigear.protocol.packets import EchoReq, EchoRes, SubmitJob
from trigear.server import Server, ServerConfig, ServerStatistics, ServerStats

from ..memory_peer import Peer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio.testing import MockClock

    from ..memory_peer import Connect


async def _serving(nursery: trio.Nursery, config: ServerConfig | None = None) -> Server:
    server = Server(config or ServerConfig(job_handle_prefix="t"))
    await nursery.start(server.serve_tcp, 0, ["127.0.0.1"])
    return server


def _port(server: Server) -> int:
    return int(server.listeners[0].socket.getsockname()[1])


@contextlib.contextmanager
def _no_new_descriptors() -> Iterator[None]:
    """While inside, the process cannot open a file or socket (EMFILE): the soft limit
    on descriptors is lowered to the lowest free descriptor number."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_accept_out_of_descriptors_pauses_and_keeps_serving(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _serving(nursery)
    with trio.fail_after(10):
        client = trio.socket.socket()
        with _no_new_descriptors():
            # The handshake completes in the kernel; the server's accept() cannot get a
            # descriptor for it.
            await client.connect(("127.0.0.1", _port(server)))
            await trio.sleep(0.35)
            with pytest.raises(OSError, match="Too many open files"):
                socket.socket()
        failures = [r for r in caplog.records if "accept failed" in r.getMessage()]
        # It waited between tries (0.1 s) rather than spinning on the error, and said so
        # once, not once per try (rate-limited to a line every 10 s).
        assert 2 <= server.statistics().accept_failures <= 5
        assert len(failures) == 1
        assert all(r.levelno == logging.WARNING for r in failures)
        peer = Peer(trio.SocketStream(client))
        await peer.send(EchoReq(b"still here"))
        assert await peer.recv() == EchoRes(b"still here")
        assert not server.shutting_down
        await peer.stream.aclose()


async def test_any_other_accept_error_ends_serve_with_that_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    server = Server(ServerConfig(job_handle_prefix="t"))
    raised: list[OSError] = []

    async def serve(task_status: trio.TaskStatus[Server]) -> None:
        try:
            await server.serve([listener], task_status=task_status)
        except OSError as exc:  # the error itself, not wrapped in an exception group
            raised.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            peer = Peer(server.connect_in_memory())
            await peer.send(EchoReq(b"before"))
            assert await peer.recv() == EchoRes(b"before")
            # The kernel now fails accept() on this socket with EINVAL.
            listener.socket.shutdown(socket.SHUT_RDWR)
    assert [e.errno for e in raised] == [errno.EINVAL]
    assert "accept failed, serving stops" in caplog.text
    assert server.shutting_down


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", stall_timeout=0.3)])
async def test_a_tcp_peer_stalled_mid_packet_is_closed_an_idle_one_kept(
    nursery: trio.Nursery, config: ServerConfig
) -> None:
    """The socket reader shares the in-memory reader's stall rule."""
    server = await _serving(nursery, config)
    with trio.fail_after(10):
        idle = Peer(await trio.open_tcp_stream("127.0.0.1", _port(server)))
        stalled = Peer(await trio.open_tcp_stream("127.0.0.1", _port(server)))
        await stalled.send_raw(b"\0REQ\0\0\0\x10")
        assert await stalled.closed()
        await trio.sleep(0.6)
        await idle.send(EchoReq(b"x"))
        assert await idle.recv() == EchoRes(b"x")
        # The timeout is a deadline for the whole packet, not reset per byte: a packet
        # trickling in a byte at a time, each well within the timeout, is closed.
        for byte in b"\0REQ\0\0\0\x10\0\0\0\x04slow":
            try:
                await idle.send_raw(bytes([byte]))
            except trio.BrokenResourceError:
                break
            await trio.sleep(0.1)
        assert await idle.closed()
        # One that arrives within it, in two parts, is read.
        ok = Peer(await trio.open_tcp_stream("127.0.0.1", _port(server)))
        await ok.send_raw(b"\0REQ\0\0\0\x10\0\0")
        await trio.sleep(0.1)
        await ok.send_raw(b"\0\x04fast")
        assert await ok.recv() == EchoRes(b"fast")
        for p in (idle, stalled, ok):
            await p.stream.aclose()


async def test_statistics_is_a_snapshot(
    autojump_clock: MockClock, server: Server, connect: Connect
) -> None:
    before = server.statistics()
    assert isinstance(before, ServerStatistics)
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"x"))
    await c.created()
    after = server.statistics()
    assert before.jobs_submitted == 0
    assert after.jobs_submitted == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.jobs_submitted = 5  # type: ignore[misc]
    assert server.statistics() == after


def test_the_snapshot_has_every_counter() -> None:
    names = [f.name for f in dataclasses.fields(ServerStats)]
    assert [f.name for f in dataclasses.fields(ServerStatistics)] == names
    live = ServerStats(*range(1, len(names) + 1))
    assert dataclasses.astuple(live.snapshot()) == dataclasses.astuple(live)
