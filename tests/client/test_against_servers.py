"""The client and worker against real servers: C gearmand, the Perl server, trigear.

Each test runs once per server (the ``server`` fixture); gearmand and Perl runs carry
the ``interop`` mark.  Where a server lacks a feature, the test shows what the caller
gets instead (a :class:`trigear.ServerError`), so the matrix in docs/client.md is checked.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TYPE_CHECKING

import anyio
import pytest

import trigear
from trigear import Priority

from .client_helpers import serving, until

if TYPE_CHECKING:
    from ..server_processes import ServerProcess


def rev_worker(server: ServerProcess) -> trigear.Worker:
    worker = trigear.Worker(server.address, client_id="tester")

    @worker.function("rev")
    async def rev(job: trigear.Job) -> bytes:
        await job.send_status(1, 2)
        await job.send_data(b"partial")
        await job.send_warning(b"careful")
        return bytes(reversed(job.data))

    @worker.function("boom")
    async def boom(job: trigear.Job) -> bytes:
        raise ValueError("bad " + job.data.decode())

    @worker.function("fail")
    async def fail(job: trigear.Job) -> bytes:
        raise trigear.JobFailed()

    @worker.function("thread")
    def in_thread(job: trigear.Job) -> str:
        return threading.current_thread().name + ":" + job.data.decode()

    return worker


@pytest.mark.anyio
async def test_foreground_background_echo(server: ServerProcess) -> None:
    worker = rev_worker(server)
    ran = anyio.Event()

    @worker.function("bg")
    async def bg(job: trigear.Job) -> None:
        ran.set()

    with anyio.fail_after(20):
        async with serving(worker), trigear.open_client(server.address) as client:
            assert await client.submit("rev", b"hello") == b"olleh"
            assert await client.submit("rev", "héllo") == "héllo".encode()[::-1]
            assert await client.submit(b"rev", b"") == b""
            big = bytes(range(256)) * 4096
            assert await client.submit("rev", big) == big[::-1]
            handle = await client.submit_background("bg", b"x")
            assert handle.startswith(b"H:")
            await ran.wait()
            assert await client.echo(b"ping\0pong") == b"ping\0pong"
            result = await client.submit("thread", "t")
            assert result.endswith(b":t")
            assert result != threading.current_thread().name.encode()


async def test_progress_stream(server: ServerProcess) -> None:
    with anyio.fail_after(20):
        async with serving(rev_worker(server)), trigear.open_client(server.address) as client:
            async with client.submit_stream("rev", b"abc") as job:
                assert job.handle.startswith(b"H:")
                updates = [u async for u in job]
            assert job.result == b"cba"
            if server.legacy:
                # The Perl server has no WORK_DATA/WORK_WARNING; the worker skips them.
                assert updates == [trigear.StatusUpdate(1, 2)]
            else:
                assert updates == [
                    trigear.StatusUpdate(1, 2),
                    trigear.DataUpdate(b"partial"),
                    trigear.WarningUpdate(b"careful"),
                ]


@pytest.mark.anyio
async def test_failures_and_exceptions_end_the_job_and_the_worker_goes_on(
    server: ServerProcess,
) -> None:
    with anyio.fail_after(20):
        async with serving(rev_worker(server)), trigear.open_client(server.address) as client:
            for i in range(3):
                with pytest.raises(trigear.JobException) as exc:
                    await client.submit("boom", f"input {i}")
                assert exc.value.data == f"ValueError: bad input {i}".encode()
                with pytest.raises(trigear.JobFailed) as failed:
                    await client.submit("fail", b"")
                assert not isinstance(failed.value, trigear.JobException)
                async with client.submit_stream("boom", b"s") as job:
                    with pytest.raises(trigear.JobException):
                        async for _ in job:
                            pass
                assert await client.submit("rev", b"ok") == b"ko"
            await anyio.sleep(0.2)
            assert client.statistics().jobs == 0


async def test_priorities(server: ServerProcess) -> None:
    order: list[bytes] = []
    worker = trigear.Worker(server.address)

    @worker.function("p")
    async def p(job: trigear.Job) -> None:
        order.append(job.data)

    with anyio.fail_after(20):
        async with trigear.open_client(server.address) as client:
            if server.legacy:
                # The Perl server knows SUBMIT_JOB, SUBMIT_JOB_BG and SUBMIT_JOB_HIGH only.
                for prio in (Priority.LOW, Priority.HIGH):
                    with pytest.raises(trigear.ServerError):
                        await client.submit_background("p", b"", priority=prio)
                with pytest.raises(trigear.ServerError):
                    await client.submit("p", b"", priority=Priority.LOW)
                await client.submit_background("p", b"normal")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(
                        functools.partial(client.submit, "p", b"high", priority=Priority.HIGH)
                    )
                    await anyio.sleep(0.3)
                    async with serving(worker, concurrency=1):
                        await until(lambda: len(order) >= 2)
                assert order == [b"high", b"normal"]
                return
            for prio in (Priority.LOW, Priority.NORMAL, Priority.HIGH):
                await client.submit_background("p", prio.name.encode(), priority=prio)
            async with serving(worker, concurrency=1):
                await until(lambda: len(order) >= 3)
            assert order == [b"HIGH", b"NORMAL", b"LOW"]
            order.clear()
            async with anyio.create_task_group() as tg:
                for prio in (Priority.LOW, Priority.HIGH):
                    tg.start_soon(functools.partial(client.submit, "p", prio.name, priority=prio))
                await anyio.sleep(0.3)
                async with serving(worker, concurrency=1):
                    await until(lambda: len(order) >= 2)
            assert order == [b"HIGH", b"LOW"]


async def test_uniques_coalesce(server: ServerProcess) -> None:
    worker = trigear.Worker(server.address)
    runs: list[bytes] = []
    release = anyio.Event()

    @worker.function("slow")
    async def slow(job: trigear.Job) -> bytes:
        runs.append(job.data)
        await release.wait()
        return b"result of " + job.data

    results: list[bytes] = []
    with anyio.fail_after(20):
        async with serving(worker), trigear.open_client(server.address) as client:

            async def one(data: bytes) -> None:
                results.append(await client.submit("slow", data, unique="k1"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, b"first")
                await until(lambda: bool(runs))
                tg.start_soon(one, b"second")
                await anyio.sleep(0.3)
                release.set()
    assert runs == [b"first"]
    assert results == [b"result of first"] * 2


async def test_two_submits_of_one_unique_on_one_client(server: ServerProcess) -> None:
    """Concurrent calls with one unique share one connection and one job; the server
    sends each packet once per submit (S2) and each call gets exactly its own copy of
    every update and of the result."""
    worker = trigear.Worker(server.address)
    runs: list[bytes] = []
    release = anyio.Event()

    @worker.function("shared")
    async def shared(job: trigear.Job) -> bytes:
        runs.append(job.data)
        await release.wait()
        await job.send_data(b"d")
        await job.send_status(1, 2)
        await job.send_warning(b"w")
        await job.send_data(b"d")
        return b"result of " + job.data

    streams: dict[str, list[trigear.Update]] = {}
    results: dict[str, bytes] = {}
    with anyio.fail_after(20):
        async with serving(worker), trigear.open_client(server.address) as client:

            async def read(name: str, data: bytes) -> None:
                streams[name] = []
                async with client.submit_stream("shared", data, unique="one") as job:
                    async for update in job:
                        streams[name].append(update)
                results[name] = job.result

            async def call(name: str, data: bytes) -> None:
                results[name] = await client.submit("shared", data, unique="one")

            async with anyio.create_task_group() as tg:
                tg.start_soon(read, "a", b"first")
                await until(lambda: bool(runs))
                tg.start_soon(read, "b", b"second")
                tg.start_soon(call, "c", b"third")
                await until(lambda: client.statistics().jobs == 3)
                release.set()
            assert client.statistics() == trigear.ClientStatistics(
                connections=1, connections_opened=1, pending=0, jobs=0
            )
    assert runs == [b"first"]
    assert results == dict.fromkeys("abc", b"result of first")
    if server.legacy:
        # The Perl server has no WORK_DATA/WORK_WARNING; the worker skips them.
        want: list[trigear.Update] = [trigear.StatusUpdate(1, 2)]
    else:
        data = trigear.DataUpdate(b"d")
        want = [data, trigear.StatusUpdate(1, 2), trigear.WarningUpdate(b"w"), data]
    assert streams == {"a": want, "b": want}


async def test_status(server: ServerProcess) -> None:
    worker = trigear.Worker(server.address)
    started = anyio.Event()
    release = anyio.Event()

    @worker.function("st")
    async def st(job: trigear.Job) -> None:
        await job.send_status(3, 7)
        started.set()
        await release.wait()

    with anyio.fail_after(20):
        async with serving(worker), trigear.open_client(server.address) as client:
            handle = await client.submit_background("st", b"", unique="st-1")
            await started.wait()
            await anyio.sleep(0.1)
            assert await client.get_status(handle) == trigear.JobStatus(True, True, 3, 7)
            if server.legacy:
                with pytest.raises(trigear.ServerError):
                    await client.get_status_unique("st-1")
            else:
                status = await client.get_status_unique("st-1")
                assert (status.known, status.running, status.numerator) == (True, True, 3)
            release.set()
            await anyio.sleep(0.2)
            assert await client.get_status(handle) == trigear.JobStatus(False, False, 0, 0)
            assert await client.get_status(b"H:nope:1") == trigear.JobStatus(False, False, 0, 0)


async def test_epoch(server: ServerProcess) -> None:
    worker = trigear.Worker(server.address)
    ran: list[float] = []

    @worker.function("later")
    async def later(job: trigear.Job) -> None:
        ran.append(time.time())

    with anyio.fail_after(20):
        async with serving(worker), trigear.open_client(server.address) as client:
            if server.legacy:
                with pytest.raises(trigear.ServerError):
                    await client.submit_background("later", b"", run_at=time.time())
                return
            # A time already past runs at once everywhere that has SUBMIT_JOB_EPOCH.
            await client.submit_background("later", b"", run_at=time.time() - 1)
            await until(lambda: bool(ran))
            if server.kind == "trigear":
                # trigear runs it on a timer (gearmand 1.1.20 has none: S15).
                at = time.time() + 1.5
                await client.submit_background("later", b"", run_at=at)
                await until(lambda: len(ran) >= 2)
                assert ran[1] >= at - 1.0  # whole seconds on the wire
            with pytest.raises(ValueError, match="normal priority"):
                await client.submit_background("later", run_at=1, priority=Priority.HIGH)
