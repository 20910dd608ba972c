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
