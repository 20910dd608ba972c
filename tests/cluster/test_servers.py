"""Servers on one store, in one process: the cluster task at work.

The chaos test runs real processes; here two :class:`~trigear.server.Server` objects
share a schema, so the server's side (heartbeats, adoption into a running dispatcher,
fencing and joining again) is seen from inside.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio

import trigear
from trigear.server import Server, ServerConfig

from .cluster_helpers import member, query

if TYPE_CHECKING:
    from collections.abc import Callable

    from trigear.store import PostgresStore

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


async def start(nursery: trio.Nursery, store: PostgresStore) -> tuple[Server, str]:
    assert store.member is not None
    server = Server(ServerConfig(job_handle_prefix=store.member.name), store)
    await nursery.start(server.serve_tcp, 0)
    port = server.listeners[0].socket.getsockname()[1]
    return server, f"127.0.0.1:{port}"


async def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    with trio.fail_after(seconds):
        while True:
            if condition():
                return
            await trio.sleep(0.05)


async def test_a_stopped_servers_jobs_run_on_another(pg_url: str) -> None:
    ran: list[tuple[bytes, bytes]] = []
    async with trio.open_nursery() as nursery:
        a, a_addr = await start(nursery, member(pg_url, "a"))
        b, b_addr = await start(nursery, member(pg_url, "b", grace=0.3, reconnect_grace=0))
        async with trigear.open_client(a_addr) as client:
            handles = [
                await client.submit_background("f", b"%d" % i, unique=f"u{i}") for i in range(5)
            ]
        assert all(h.startswith(b"H:a:") for h in handles)
        a.shutdown()  # graceful: no worker, so its jobs stay in the store
        assert b.cluster is not None
        await until(lambda: b.cluster is not None and b.cluster.adopted_jobs == 5)

        worker = trigear.Worker(b_addr)

        @worker.function("f")
        async def f(job: trigear.Job) -> bytes:
            ran.append((job.handle, job.data))
            if len(ran) == 5:
                worker.stop()
            return b""

        with trio.fail_after(30):
            await worker.run()
        assert b.cluster.adoptions == 1
        b.shutdown()
    assert ran == [(h, b"%d" % i) for i, h in enumerate(handles)]  # handles and order kept
    assert query(pg_url, "SELECT count(*) FROM trigear_jobs") == [(0,)]


async def test_a_fenced_server_drops_its_jobs_and_joins_again(pg_url: str) -> None:
    async with trio.open_nursery() as nursery:
        a, a_addr = await start(nursery, member(pg_url, "a"))
        async with trigear.open_client(a_addr) as client:
            first = await client.submit_background("f", b"x")
            assert first in a.dispatcher.jobs
            # Another server takes its rows over (as an adopter does).
            query(
                pg_url,
                "UPDATE trigear_servers SET epoch = epoch + 1, up = false WHERE name = 'a'",
            )
            query(pg_url, "UPDATE trigear_jobs SET owner = 'other'")
            await until(lambda: first not in a.dispatcher.jobs)
            assert a.cluster is not None
            assert a.cluster.fenced == 1
            # Joined again under a new epoch: it serves and stores as before.
            second = await client.submit_background("f", b"y")
        assert query(pg_url, "SELECT owner FROM trigear_jobs WHERE handle = %s", second) == [("a",)]
        assert query(pg_url, "SELECT epoch, up FROM trigear_servers") == [(3, True)]
        a.shutdown()
