"""A store that fails for real (S19): SQLite out of space (SQLITE_FULL through
``max_page_count``), PostgreSQL stopped mid-run.  Background submits then get
``ERROR QUEUE_ERROR``, never a JOB_CREATED for a job that is not stored; foreground
traffic flows on; once the store is back, background submits are stored and
acknowledged again, with no restart."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import trio

from trigear.protocol.packets import (
    CanDo,
    Error,
    GrabJobUniq,
    JobAssignUniq,
    JobCreated,
    NoJob,
    SubmitJob,
    SubmitJobBg,
    SubmitJobHighBg,
    WorkComplete,
    WorkFail,
)
from trigear.server import ServerConfig
from trigear.store import PostgresStore

from .durable_helpers import FullSqliteStore, Running

if TYPE_CHECKING:
    from pathlib import Path

    from ..memory_peer import Peer
    from ..peers import Cluster

STORE_FAILED = Error(b"QUEUE_ERROR", b"Job could not be stored")
BIG = b"x" * 200_000  # needs dozens of fresh pages


async def grab(w: Peer) -> JobAssignUniq:
    await w.send(GrabJobUniq())
    ev = await w.recv()
    assert isinstance(ev, JobAssignUniq), ev
    return ev


async def foreground_round_trip(c: Peer, w: Peer, data: bytes) -> None:
    await c.send(SubmitJob(b"fg", b"", data))
    ev = await c.recv()
    assert isinstance(ev, JobCreated), ev
    job = await grab(w)
    assert job.data == data
    await w.send(WorkComplete(job.handle, b"r"))
    assert await c.recv() == WorkComplete(job.handle, b"r")


async def outage_and_recovery(running: Running, fail: object, recover: object) -> None:
    """The common script; ``fail``/``recover`` are async callables that break and repair
    the store."""
    acked: dict[bytes, bytes] = {}  # handle -> payload of every acknowledged job
    c = await running.connect()
    fg_client = await running.connect()
    fg_worker = await running.connect()
    await fg_worker.send(CanDo(b"fg"))
    bg_worker = await running.connect()
    await bg_worker.send(CanDo(b"done-early"))

    await c.send(SubmitJobBg(b"bg", b"", b"before"), SubmitJobBg(b"done-early", b"", b"e"))
    for data in (b"before", b"e"):
        ev = await c.recv()
        assert isinstance(ev, JobCreated), ev
        acked[ev.handle] = data
    running_job = await grab(bg_worker)

    await fail()  # type: ignore[operator]
    failures0 = running.srv.statistics().store_failures
    # Every background submit is refused, on every connection, coalescing or not.
    refused = 0
    others = [await running.connect() for _ in range(3)]
    for i, peer in enumerate([c, *others]):
        await peer.send(
            SubmitJobBg(b"bg", b"", BIG),
            SubmitJobHighBg(b"bg", b"same", BIG),
            SubmitJobBg(b"bg", b"same", b"%d" % i),
        )
    for peer in [c, *others]:
        for _ in range(3):
            assert await peer.recv() == STORE_FAILED
            refused += 1
    # A job that ends meanwhile: its removal waits for the store, the worker goes on.
    await bg_worker.send(WorkComplete(running_job.handle, b""))
    del acked[running_job.handle]
    # Foreground traffic flows.
    for i in range(5):
        await foreground_round_trip(fg_client, fg_worker, b"fg %d" % i)
    # Nothing refused ever became a runnable job.
    w = await running.connect()
    await w.send(CanDo(b"bg"), GrabJobUniq())
    job = await w.recv()
    assert isinstance(job, JobAssignUniq), job
    assert job.data == b"before", job
    await w.send(GrabJobUniq())
    assert isinstance(await w.recv(), NoJob)
    await w.aclose()  # "before" goes back to the queue (S9)
    await trio.sleep(0.5)
    failures = running.srv.statistics().store_failures - failures0
    assert refused == 12
    assert failures >= 1
    # Retrying the carried removal while the store is down must not spin.
    assert failures < 50, f"{failures} failed commits in about a second"

    await recover()  # type: ignore[operator]
    with trio.fail_after(20):
        while True:
            await c.send(SubmitJobBg(b"bg", b"", b"after"))
            ev = await c.recv()
            if isinstance(ev, JobCreated):
                acked[ev.handle] = b"after"
                break
            assert ev == STORE_FAILED
            await trio.sleep(0.2)
    await c.send(SubmitJobBg(b"bg", b"same", BIG))
    ev = await c.recv()
    assert isinstance(ev, JobCreated), ev
    acked[ev.handle] = BIG
    await foreground_round_trip(fg_client, fg_worker, b"fg after")

    # The store holds exactly the acknowledged jobs that have not ended, and a restart
    # replays them and nothing else.
    stored = await running.settled()
    assert {j.handle: j.data for j in stored} == acked
    await running.restart()
    assert {j.handle: j.data for j in await running.stored()} == acked


async def test_sqlite_disk_full(nursery: trio.Nursery, tmp_path: Path) -> None:
    stores: list[FullSqliteStore] = []

    def make() -> FullSqliteStore:
        stores.append(FullSqliteStore(tmp_path / "jobs.db"))
        return stores[-1]

    running = Running(nursery, make, ServerConfig(job_handle_prefix="dur"))
    await running.start()

    async def fail() -> None:
        stores[-1].spare_pages = 1

    async def recover() -> None:
        stores[-1].spare_pages = None

    await outage_and_recovery(running, fail, recover)
    await running.stop()


@pytest.mark.postgres
async def test_postgres_stopped_mid_run(
    nursery: trio.Nursery, pg_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, "trigear")

    def make() -> PostgresStore:
        return PostgresStore(pg_cluster.url, connect_timeout=2, lock_wait=2)

    running = Running(nursery, make, ServerConfig(job_handle_prefix="dur"))
    await running.start()

    async def fail() -> None:
        await trio.to_thread.run_sync(pg_cluster.stop, "fast")

    async def recover() -> None:
        await trio.to_thread.run_sync(pg_cluster.start)

    await outage_and_recovery(running, fail, recover)
    await running.stop()


async def test_a_foreground_joiner_of_a_job_that_fails_to_store(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A foreground submit that coalesces with a background job still being written gets
    JOB_CREATED (it is a foreground job: it waits on its connection), and WORK_FAIL when
    the write fails; the background submitter gets QUEUE_ERROR and nothing is stored."""
    store = FullSqliteStore(tmp_path / "jobs.db")
    running = Running(nursery, lambda: store, ServerConfig(job_handle_prefix="dur"))
    await running.start()
    store.spare_pages = 1
    c = await running.connect()
    await c.send(SubmitJobBg(b"f", b"u", BIG), SubmitJob(b"f", b"u", b"x"))
    assert await c.recv() == STORE_FAILED
    created = await c.recv()
    assert isinstance(created, JobCreated), created
    assert await c.recv() == WorkFail(created.handle)
    assert await running.settled() == []
    await running.stop()
