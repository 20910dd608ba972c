"""Cancelling calls at every stage against real servers, and several servers coming and
going under a running client and worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import trigear

from .client_helpers import serving, until

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..server_processes import ServerProcess


#: A client that was cancelled at some stage and recovered: one connection, opened once
#: (an answer matched to the wrong call closes the connection, and the next call quietly
#: opens another: only ``connections_opened`` tells), nothing waiting, nothing followed.
SETTLED = trigear.ClientStatistics(connections=1, connections_opened=1, pending=0, jobs=0)


async def cancel_once_queued(client: trigear.Client, call: Callable[[], Awaitable[Any]]) -> bool:
    """Run ``call`` and cancel it once its request is queued, before its answer is read.
    False if the answer was read first (the call finished)."""
    before = client.statistics().pending
    finished = False

    async def run() -> None:
        nonlocal finished
        await call()
        finished = True

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            while client.statistics().pending == before and not finished:
                await anyio.lowlevel.checkpoint()
            scope.cancel()
    return not finished


@pytest.mark.anyio
async def test_cancel_at_every_stage_then_keep_going(server: ServerProcess) -> None:
    worker = trigear.Worker(server.address)
    gate: dict[bytes, anyio.Event] = {}
    started: dict[bytes, anyio.Event] = {}

    @worker.function("echo")
    async def echo(job: trigear.Job) -> bytes:
        if job.data in gate:
            started[job.data].set()
            await job.send_status(1, 2)
            await gate[job.data].wait()
        return job.data

    async def check_usable(client: trigear.Client, tag: str) -> None:
        for i in range(3):
            data = f"{tag}-{i}".encode()
            assert await client.submit("echo", data) == data
        assert await client.echo(tag) == tag.encode()
        assert client.statistics() == SETTLED, tag

    async def stream(client: trigear.Client, data: bytes) -> None:
        async with client.submit_stream("echo", data) as job:
            async for _ in job:
                pass

    with anyio.fail_after(60):
        async with serving(worker, 8), trigear.open_client(server.address) as client:
            await check_usable(client, "first")

            # Before send: a cancelled scope sends nothing at all.
            with anyio.CancelScope() as scope:
                scope.cancel()
                await client.submit("echo", b"never")
            await check_usable(client, "before")

            # Queued, its answer not read yet: the abandoned FIFO entry takes the answer.
            calls: list[Callable[[], Awaitable[Any]]] = [
                lambda: client.submit("echo", b"queued"),
                lambda: client.submit_background("echo", b"queued-bg"),
                lambda: client.echo(b"queued-echo"),
                lambda: client.get_status(b"H:queued:1"),
                lambda: stream(client, b"queued-s"),
            ]
            for call in calls:
                hits = 0
                for i in range(5):
                    hits += await cancel_once_queued(client, call)
                    # The next call right away, while the abandoned answer is in flight.
                    assert await client.echo(b"next") == b"next"
                    await check_usable(client, f"queued {i}")
                assert hits > 0

            # Anywhere in flight: sweep deadlines from "at once" to "after the result".
            for delay in [0, 1e-6, 1e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 2e-2]:
                with anyio.move_on_after(delay):
                    await client.submit("echo", b"swept")
                with anyio.move_on_after(delay):
                    await client.submit_background("echo", b"swept-bg")
                with anyio.move_on_after(delay):
                    await client.echo(b"e")
                with anyio.move_on_after(delay):
                    await stream(client, b"swept-s")
                await check_usable(client, f"swept {delay}")

            # After JOB_CREATED, and mid-stream: the worker holds the job meanwhile.
            for tag in (b"held", b"streamed"):
                gate[tag] = anyio.Event()
                started[tag] = anyio.Event()
                with anyio.CancelScope() as scope:
                    if tag == b"held":

                        async def cancel_when_started(
                            tag: bytes = tag, scope: anyio.CancelScope = scope
                        ) -> None:
                            await started[tag].wait()
                            await anyio.sleep(0.05)
                            scope.cancel()

                        async with anyio.create_task_group() as tg:
                            tg.start_soon(cancel_when_started)
                            await client.submit("echo", tag)
                    else:
                        async with client.submit_stream("echo", tag) as job:
                            async for update in job:
                                assert update == trigear.StatusUpdate(1, 2)
                                scope.cancel()
                                await anyio.sleep(1)
                assert scope.cancelled_caught
                # Unregistered at once, though the job still runs.
                assert client.statistics() == SETTLED
                gate[tag].set()  # its WORK_COMPLETE arrives now and is dropped
                await check_usable(client, tag.decode())


@pytest.mark.interop
@pytest.mark.anyio
async def test_servers_stop_and_restart_mid_run(make_server: Any) -> None:
    a: ServerProcess = make_server("gearmand")
    b: ServerProcess = make_server("gearmand")
    worker = trigear.Worker(a.address, b.address)
    done: set[bytes] = set()

    @worker.function("job")
    async def job(j: trigear.Job) -> bytes:
        done.add(j.data)
        return j.data

    accepted: dict[bytes, str] = {}  # data -> server that accepted it
    lost: list[bytes] = []

    async def submit_many(client: trigear.Client, prefix: str, n: int) -> None:
        for i in range(n):
            data = f"{prefix}-{i}".encode()
            try:
                assert await client.submit("job", data, unique=data) == data
                accepted[data] = "fg"
            except trigear.ConnectionLost:
                lost.append(data)  # its server died after taking it
            handle = await client.submit_background("job", data + b"-bg")
            assert handle.startswith(b"H:")
            accepted[data + b"-bg"] = str(client._handles[handle])
            await anyio.sleep(0.002)

    with anyio.fail_after(60):
        async with serving(worker, 8), trigear.open_client(a.address, b.address) as client:
            await submit_many(client, "warm", 40)
            assert {str(x) for x in client._handles.values()} == {a.address, b.address}
            async with anyio.create_task_group() as tg:
                tg.start_soon(submit_many, client, "during", 200)
                await anyio.sleep(0.1)
                a.stop()
            assert worker.statistics().connections == 1
            # Every job the surviving server accepted has run.
            on_b = {d for d, where in accepted.items() if where in ("fg", b.address)}
            await until(lambda: on_b <= done)
            a.start()
            await until(lambda: worker.statistics().connections == 2)
            # The client retries the restarted server once its reconnect back-off (up to
            # seconds, with jitter) has run out; jobs placed before then fail over to b.
            backoff_a = next(v for k, v in client._backoff.items() if str(k) == a.address)
            await until(lambda: not backoff_a.is_down(anyio.current_time()))
            accepted.clear()
            await submit_many(client, "after", 40)
            assert a.address in {str(x) for x in list(client._handles.values())[-40:]}
            await until(lambda: set(accepted) <= done)
    assert len(lost) <= 8
