"""The worker against real servers (C gearmand, the Perl server, trigear): the concurrency
bound, and a cancelled run that the server requeues while a graceful stop finishes.

Each test runs once per server (the ``server`` fixture); gearmand and Perl runs carry the
``interop`` mark.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio

import trigear

from ..client.client_helpers import serving, until

if TYPE_CHECKING:
    from ..server_processes import ServerProcess


async def test_concurrency_bound(server: ServerProcess) -> None:
    worker = trigear.Worker(server.address)
    now = 0
    peak = 0

    @worker.function("c")
    async def c(job: trigear.Job) -> None:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await anyio.sleep(0.05)
        now -= 1

    with anyio.fail_after(30):
        async with (
            serving(worker, concurrency=3),
            trigear.open_client(server.address) as client,
            anyio.create_task_group() as tg,
        ):
            for i in range(12):
                tg.start_soon(client.submit, "c", str(i))
    assert peak == 3


async def test_cancelled_run_requeues_and_stop_finishes(server: ServerProcess) -> None:
    first = trigear.Worker(server.address)
    started = anyio.Event()

    @first.function("job")
    async def hang(job: trigear.Job) -> bytes:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError

    second = trigear.Worker(server.address)
    release = anyio.Event()

    @second.function("job")
    async def finish(job: trigear.Job) -> bytes:
        await release.wait()
        return b"done by second"

    with anyio.fail_after(20):
        async with trigear.open_client(server.address) as client, anyio.create_task_group() as tg:
            results: list[bytes] = []

            async def submit() -> None:
                try:
                    results.append(await client.submit("job", b""))
                except trigear.JobFailed:
                    # The Perl server fails, rather than requeues, what a lost worker held.
                    assert server.legacy
                    results.append(await client.submit("job", b""))

            tg.start_soon(submit)
            async with serving(first):
                await started.wait()
            # run() cancelled: the connection closed, the server requeues the job.
            async with anyio.create_task_group() as wtg:
                wtg.start_soon(functools.partial(second.run, concurrency=2))
                await until(lambda: second.statistics().running > 0)
                second.stop()  # graceful: the running job still finishes
                await anyio.sleep(0.1)
                release.set()
            # run() returned on its own after the job ended.
        assert results == [b"done by second"]


async def test_a_job_that_outlives_its_timeout_is_taken_back(server: ServerProcess) -> None:
    """CAN_DO_TIMEOUT (spec S11) against each server.  gearmand and trigear take the job
    back and queue it again (GET_STATUS: known, not running), so another worker runs it
    under the same handle, and the late result of the first run is refused while its
    worker goes on.  The Perl server fails the job instead (WORK_FAIL to the client).

    The worker that times out has concurrency=1: gearmand keeps one timer per connection
    and drops it when the connection sends PRE_SLEEP, which a worker with a free slot does
    while it holds a job (docs/worker.md).  The second worker starts once the job is
    queued again, since gearmand 1.1.20 may send the NOOP for a requeued job before the
    job is back in its queue, and a worker that was asleep then misses it."""
    timeout = 1.0
    runs: list[tuple[bytes, float]] = []
    release = anyio.Event()

    async def slow(job: trigear.Job) -> bytes:
        runs.append((job.handle, anyio.current_time()))
        if len(runs) > 1:
            return b"a later run"
        await release.wait()
        return b"late first run"

    holder = trigear.Worker(server.address)
    holder.register("slow", slow, timeout=timeout)
    backup = trigear.Worker(server.address)
    backup.register("slow", slow, timeout=timeout)
    results: list[bytes | trigear.JobFailed] = []

    with anyio.fail_after(30):
        async with (
            serving(holder, concurrency=1),
            trigear.open_client(server.address) as client,
            anyio.create_task_group() as tg,
        ):

            async def submit() -> None:
                try:
                    results.append(await client.submit("slow", b"x"))
                except trigear.JobFailed as exc:
                    results.append(exc)

            tg.start_soon(submit)
            await until(lambda: len(runs) == 1)
            handle, began = runs[0]
            status = await client.get_status(handle)
            while status.running:
                await anyio.sleep(0.05)
                status = await client.get_status(handle)
            assert anyio.current_time() - began >= timeout * 0.9
            if server.legacy:
                assert not status.known  # failed, not requeued
                await until(lambda: bool(results))
                assert isinstance(results[0], trigear.JobFailed)
                assert not isinstance(results[0], trigear.JobException)
            else:
                assert status.known  # queued again
            async with serving(backup, concurrency=1):
                await until(lambda: bool(results))
                await anyio.sleep(0.2)
                if server.legacy:
                    assert len(runs) == 1
                else:
                    assert results == [b"a later run"]
                    assert [h for h, _ in runs] == [handle, handle]  # the same job (S9)
                release.set()  # the first run ends now: its result is refused
                await until(lambda: holder.statistics().running == 0)
                assert await client.submit("slow", b"y") == b"a later run"
            # The refused result did not cost the holder its connection.
            stats = holder.statistics()
            assert (stats.connections, stats.connections_opened) == (1, 1)
