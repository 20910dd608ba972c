"""Cluster-wide coalescing (S2 across servers): one live background job per unique.

A partial unique index on (function, unique) makes a background submit whose unique is
live on another server sharing the store join that job's handle instead of creating a
second job.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import trio

import trigear
from trigear.protocol.packets import JobCreated, SubmitJob, SubmitJobBg, WorkFail
from trigear.server.config import ServerConfig

from ..peers import free_port
from ..server.dispatcher_harness import Harness
from .cluster_helpers import job, member, owners, query

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.postgres


async def test_a_live_unique_on_another_member_is_joined(pg_url: str) -> None:
    a, b = member(pg_url, "a"), member(pg_url, "b")
    try:
        await a.load()
        await b.load()
        assert await a.commit_joining([job("a", 1, unique=b"order-7")], [], [], 1) == {}
        joined = await b.commit_joining(
            [job("b", 1, unique=b"order-7"), job("b", 2, unique=b"order-8"), job("b", 3)],
            [],
            [],
            3,
        )
        assert joined == {b"H:b:1": b"H:a:1"}
        assert owners(pg_url) == {b"H:a:1": "a", b"H:b:2": "b", b"H:b:3": "b"}
        # Empty and "-" uniques never coalesce in the store (S2: "-" keys by payload).
        dash = [job("a", 5, unique=b"-"), job("b", 6, unique=b"-")]
        assert await a.commit_joining(dash[:1], [], [], 5) == {}
        assert await b.commit_joining(dash[1:], [], [], 6) == {}
        # Once the job ends, its unique is free again; an end and a new job with the
        # same unique in one batch do not collide.
        fresh = job("a", 9, unique=b"order-7")
        assert await a.commit_joining([fresh], [b"H:a:1"], [], 9) == {}
        assert owners(pg_url)[b"H:a:9"] == "a"
        assert b"H:a:1" not in owners(pg_url)
        # Re-adding one's own handle rewrites it (the Store rule), joined with nothing.
        again = job("a", 9, unique=b"order-7", attempts=3)
        assert await a.commit_joining([again], [], [], 9) == {}
        assert query(pg_url, "SELECT attempts FROM trigear_jobs WHERE handle = %s", b"H:a:9") == [
            (3,)
        ]
    finally:
        await a.aclose()
        await b.aclose()


def test_the_dispatcher_answers_with_the_live_jobs_handle() -> None:
    h = Harness(ServerConfig(job_handle_prefix="me"), durable=True)
    c, fg = h.peer(), h.peer()
    h.send(c, SubmitJobBg(b"f", b"u1", b"x"))
    assert h.send(fg, SubmitJob(b"f", b"u1", b"x")) == [JobCreated(b"H:me:1")]
    h.send(c, SubmitJobBg(b"f", b"u2", b"y"))
    batch = h.d.take_store_batch()
    assert batch is not None
    h.d.store_done(True, {b"H:me:1": b"H:other:5"})
    assert h.recv(c) == [JobCreated(b"H:other:5"), JobCreated(b"H:me:2")]
    assert h.recv(fg) == [WorkFail(b"H:me:1")]
    assert set(h.d.jobs) == {b"H:me:2"}
    assert h.d.stats.jobs_coalesced == 2  # the foreground join, and the store's
    assert h.d.take_store_batch() is None  # nothing to remove: it was never stored


def _server(url: str, name: str, port: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "trigear", "-p", str(port), "--store", url, "--name", name]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def two_servers(pg_url: str) -> Iterator[tuple[str, str]]:
    ports = free_port(), free_port()
    procs = [_server(pg_url, f"s{i}", port) for i, port in enumerate(ports)]
    try:
        yield f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(30) == 0


async def test_two_servers_give_one_handle_for_one_unique(two_servers: tuple[str, str]) -> None:
    first, second = two_servers
    with trio.fail_after(30):
        while True:
            try:
                async with trigear.open_client(first) as c1, trigear.open_client(second) as c2:
                    await c1.echo(b"up")
                    await c2.echo(b"up")
                    handle = await c1.submit_background("nobody-runs-it", b"x", unique="u-1")
                    assert await c2.submit_background("nobody-runs-it", b"x", unique="u-1") == (
                        handle
                    )
                    other = await c2.submit_background("nobody-runs-it", b"y", unique="u-2")
                    assert other.startswith(b"H:s1:")
                    assert handle.startswith(b"H:s0:")
                    # Its status is known where it lives (the client asks further).
                    async with trigear.open_client(second, first) as both:
                        assert (await both.get_status(handle)).known
                    return
            except trigear.NoServerAvailable:
                await trio.sleep(0.1)
