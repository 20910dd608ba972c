"""The server's limits (docs/robustness.md): each is hit, the peer over it sees what the
page says, and the server goes on serving everyone else."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from trigear.cli.serve import _config, build_parser
from trigear.protocol.packets import (
    CanDo,
    EchoReq,
    EchoRes,
    Error,
    GrabJob,
    JobAssign,
    JobCreated,
    NoJob,
    SubmitJob,
    SubmitJobBg,
    WorkComplete,
)
from trigear.server import Server, ServerConfig

from ..memory_peer import Peer
from .dispatcher_harness import Harness

if TYPE_CHECKING:
    from ..memory_peer import Connect

FULL = Error(b"QUEUE_ERROR", b"Server job queue is full")


async def _open(server: Server, ip: str) -> Peer:
    peer = Peer(server.connect_in_memory(ip))
    await trio.testing.wait_all_tasks_blocked()
    return peer


async def _served(peer: Peer) -> bool:
    await peer.send(EchoReq(b"?"))
    return await peer.recv() == EchoRes(b"?")


@pytest.mark.parametrize(
    "config",
    [ServerConfig(job_handle_prefix="t", max_connections=3, max_connections_per_address=2)],
)
async def test_connections_over_the_limits_are_closed_at_once(server: Server) -> None:
    a1 = await _open(server, "10.0.0.1")
    a2 = await _open(server, "10.0.0.1")
    a3 = await _open(server, "10.0.0.1")  # a third from one address
    assert await a3.closed()
    b1 = await _open(server, "10.0.0.2")
    c1 = await _open(server, "10.0.0.3")  # a fourth in all
    assert await c1.closed()
    assert server.statistics().connections_refused == 2
    for p in (a1, a2, b1):
        assert await _served(p)
    await a1.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    again = await _open(server, "10.0.0.1")
    assert await _served(again)


def test_functions_beyond_the_per_connection_limit_are_not_registered() -> None:
    h = Harness(ServerConfig(job_handle_prefix="t", max_functions_per_connection=3))
    w = h.peer(b"a", b"b", b"c", b"d")
    assert list(w.abilities) == [b"a", b"b", b"c"]
    assert h.recv(w) == []  # CAN_DO has no answer: nothing unasked-for is sent
    c = h.peer()
    h.send(c, SubmitJobBg(b"d", b"", b"x"))
    assert h.send(w, GrabJob()) == [NoJob()]
    other = h.peer(b"d")
    assert h.grab(other)
    assert h.d.stats.limit_refusals == 1


def test_submits_beyond_the_servers_job_limit_get_queue_error() -> None:
    h = Harness(ServerConfig(job_handle_prefix="t", max_jobs=2))
    c = h.peer()
    assert h.send(c, SubmitJobBg(b"f", b"u1", b"")) == [JobCreated(b"H:t:1")]
    assert h.send(c, SubmitJob(b"g", b"", b"")) == [JobCreated(b"H:t:2")]
    assert h.send(c, SubmitJobBg(b"f", b"", b"")) == [FULL]
    # Joining a live job makes no new one: still taken.
    assert h.send(c, SubmitJobBg(b"f", b"u1", b"")) == [JobCreated(b"H:t:1")]
    w = h.peer(b"f")
    h.grab(w)
    h.send(w, WorkComplete(b"H:t:1", b""))
    assert h.send(c, SubmitJobBg(b"f", b"", b"")) == [JobCreated(b"H:t:3")]
    assert h.d.stats.limit_refusals == 1


def test_submits_beyond_the_servers_byte_limit_get_queue_error() -> None:
    h = Harness(ServerConfig(job_handle_prefix="t", max_job_bytes=1000))
    c = h.peer()
    assert h.send(c, SubmitJobBg(b"f", b"", b"x" * 600)) == [JobCreated(b"H:t:1")]
    assert h.send(c, SubmitJobBg(b"f", b"", b"x" * 600)) == [FULL]
    assert h.send(c, SubmitJobBg(b"f", b"", b"x" * 400)) == [JobCreated(b"H:t:2")]
    w = h.peer(b"f")
    (ev,) = h.send(w, GrabJob())
    assert isinstance(ev, JobAssign)
    h.send(w, WorkComplete(ev.handle, b""))
    assert h.d.scheduler.job_bytes == 400
    assert h.send(c, SubmitJobBg(b"f", b"", b"x" * 600)) == [JobCreated(b"H:t:3")]


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", max_jobs=1)])
async def test_a_full_server_still_serves_the_jobs_it_has(connect: Connect) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"one"))
    handle = await c.created()
    other = await connect()
    await other.send(SubmitJob(b"f", b"", b"two"))
    assert await other.recv() == FULL
    w = await connect()
    await w.send(CanDo(b"f"), GrabJob())
    assigned = await w.recv()
    assert isinstance(assigned, JobAssign)
    await w.send(WorkComplete(handle, b"done"))
    assert await c.recv() == WorkComplete(handle, b"done")


def test_the_flags_reach_the_config() -> None:
    args = build_parser().parse_args(
        [
            "--max-connections=10",
            "--max-connections-per-address=5",
            "--max-functions-per-connection=7",
            "--max-jobs=100",
            "--max-idle-functions=9",
            "--max-job-bytes=1M",
            "--max-output=2M",
            "--max-output-total=8M",
            "--stall-timeout=3",
            "--min-upload-rate=64K",
            "--keepalive-idle=5",
            "--keepalive-interval=2",
            "--keepalive-count=3",
        ]
    )
    config = _config(args)
    assert (config.max_connections, config.max_connections_per_address) == (10, 5)
    assert config.max_functions_per_connection == 7
    assert config.max_idle_functions == 9
    assert (config.max_jobs, config.max_job_bytes) == (100, 1024 * 1024)
    assert (config.max_output, config.max_output_total) == (2 * 1024**2, 8 * 1024**2)
    assert (config.stall_timeout, config.min_upload_rate) == (3.0, 64 * 1024)
    assert (config.keepalive.idle, config.keepalive.interval, config.keepalive.count) == (5, 2, 3)
    assert _config(build_parser().parse_args([])) == ServerConfig(
        job_handle_prefix=config.job_handle_prefix
    )
