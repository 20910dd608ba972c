"""The blocking client, called from plain threads (no event loop in the test), against a
real trigear server: the calls, streaming, errors, timeouts, many threads, close."""

from __future__ import annotations

import functools
import os
import threading
import time
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

import trigear
from trigear import BlockingClient, DataUpdate, Priority, StatusUpdate, WarningUpdate

from ..peers import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..server_processes import ServerProcess


@contextmanager
def running(worker: trigear.Worker, concurrency: int = 8) -> Iterator[None]:
    """Run ``worker`` on its own loop thread for the block's duration."""
    with anyio.from_thread.start_blocking_portal("trio") as portal:
        future, _ = portal.start_task(functools.partial(worker.run, concurrency=concurrency))
        try:
            yield
        finally:
            future.cancel()


def make_worker(server: ServerProcess, release: threading.Event | None = None) -> trigear.Worker:
    worker = trigear.Worker(server.address)

    @worker.function("rev")
    async def rev(job: trigear.Job) -> bytes:
        return bytes(reversed(job.data))

    @worker.function("steps")
    async def steps(job: trigear.Job) -> bytes:
        await job.send_status(1, 2)
        await job.send_data(b"half")
        await job.send_warning(b"careful")
        await job.send_status(2, 2)
        return b"done:" + job.data

    @worker.function("boom")
    async def boom(job: trigear.Job) -> bytes:
        raise ValueError("bad " + job.data.decode())

    @worker.function("fail")
    async def fail(job: trigear.Job) -> bytes:
        raise trigear.JobFailed()

    @worker.function("stall")
    async def stall(job: trigear.Job) -> bytes:
        await job.send_data(b"started")
        if release is None:
            await anyio.sleep_forever()
        else:
            await anyio.to_thread.run_sync(release.wait, abandon_on_cancel=True)
        return b"released"

    return worker


@pytest.fixture
def trigear_server(make_server: Any) -> ServerProcess:
    server: ServerProcess = make_server("trigear")
    return server


def test_the_calls_from_a_plain_thread(trigear_server: ServerProcess) -> None:
    assert not _loop_running_here()
    with running(make_worker(trigear_server)), BlockingClient(trigear_server.address) as client:
        assert client.submit("rev", "hello", timeout=10) == b"olleh"
        assert client.submit("rev", b"abc", unique="k", priority=Priority.HIGH) == b"cba"
        assert client.echo(b"ping", timeout=10) == b"ping"
        handle = client.submit_background("nobody", b"x", unique="bg-1", timeout=10)
        status = client.get_status(handle, timeout=10)
        assert (status.known, status.running) == (True, False)
        by_unique = client.get_status_unique("bg-1", timeout=10)
        assert by_unique.known
        assert client.servers == (trigear.client.placement.parse_address(trigear_server.address),)


def _loop_running_here() -> bool:
    try:
        anyio.get_current_task()
    except RuntimeError:
        return False
    return True


def test_streaming_is_an_iterator(trigear_server: ServerProcess) -> None:
    with running(make_worker(trigear_server)), BlockingClient(trigear_server.address) as client:
        with client.submit_stream("steps", "x", timeout=10) as job:
            assert job.handle.startswith(b"H:")
            updates = list(job)
            assert job.done
            assert job.result == b"done:x"
        assert updates == [
            StatusUpdate(1, 2),
            DataUpdate(b"half"),
            WarningUpdate(b"careful"),
            StatusUpdate(2, 2),
        ]
        with client.submit_stream("steps", "y") as job:
            assert job.wait() == b"done:y"


def test_job_failures_raise_in_the_calling_thread(trigear_server: ServerProcess) -> None:
    with running(make_worker(trigear_server)), BlockingClient(trigear_server.address) as client:
        with pytest.raises(trigear.JobException) as exc:
            client.submit("boom", "this", timeout=10)
        assert exc.value.data == b"ValueError: bad this"
        with pytest.raises(trigear.JobFailed):
            client.submit("fail", timeout=10)
        with pytest.raises(trigear.JobException), client.submit_stream("boom", "it") as job:
            for _ in job:
                pass
        # Still usable after each.
        assert client.submit("rev", "ok", timeout=10) == b"ko"


def test_a_timeout_raises_timeout_error_and_leaves_the_client_usable(
    trigear_server: ServerProcess,
) -> None:
    with BlockingClient(trigear_server.address) as client:
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            client.submit("nobody-serves-this", b"x", timeout=0.3)
        took = time.monotonic() - began
        assert 0.25 < took < 5
        assert client.echo(b"still here", timeout=10) == b"still here"
        # The abandoned job is no longer followed.
        assert client.statistics().jobs == 0


def test_a_stream_timeout_bounds_the_whole_job(trigear_server: ServerProcess) -> None:
    release = threading.Event()
    worker = make_worker(trigear_server, release)
    with running(worker), BlockingClient(trigear_server.address) as client:
        with client.submit_stream("stall", timeout=1.0) as job:
            assert next(job) == DataUpdate(b"started")
            began = time.monotonic()
            with pytest.raises(TimeoutError):
                next(job)
            assert time.monotonic() - began < 5
        release.set()
        assert client.submit("rev", "after", timeout=10) == b"retfa"


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_a_bad_timeout_is_a_value_error(trigear_server: ServerProcess, bad: float) -> None:
    with (
        BlockingClient(trigear_server.address) as client,
        pytest.raises(ValueError, match="timeout"),
    ):
        client.echo(b"x", timeout=bad)


def test_many_threads_share_one_client(trigear_server: ServerProcess) -> None:
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []
    with running(make_worker(trigear_server)), BlockingClient(trigear_server.address) as client:

        def caller(n: int) -> None:
            try:
                results[n] = [client.submit("rev", f"{n}-{i}", timeout=30) for i in range(25)]
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        for n in range(8):
            assert results[n] == [f"{n}-{i}"[::-1].encode() for i in range(25)]
        assert client.statistics().connections == 1


def test_close_fails_calls_in_flight_and_refuses_later_ones(trigear_server: ServerProcess) -> None:
    before = set(threading.enumerate())
    client = BlockingClient(trigear_server.address)
    assert client.echo(b"up", timeout=10) == b"up"
    caught: list[BaseException] = []

    def waiting() -> None:
        try:
            client.submit("nobody-serves-this", b"x")  # would wait for ever
        except BaseException as exc:  # reported below
            caught.append(exc)

    t = threading.Thread(target=waiting)
    t.start()
    deadline = time.monotonic() + 10
    while client.statistics().jobs == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    client.close()
    t.join(10)
    assert [type(e) for e in caught] == [trigear.ConnectionLost]
    assert client.closed
    with pytest.raises(anyio.ClosedResourceError):
        client.echo(b"x")
    client.close()  # idempotent
    # The loop thread is gone.
    assert set(threading.enumerate()) <= before


def test_no_server_is_no_server_available() -> None:
    with (
        BlockingClient(f"127.0.0.1:{free_port()}") as client,
        pytest.raises(trigear.NoServerAvailable),
    ):
        client.echo(b"x", timeout=10)


def test_a_bad_address_fails_at_construction_and_leaves_no_thread() -> None:
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="bad port"):
        BlockingClient("127.0.0.1:notaport")
    assert set(threading.enumerate()) <= before


def test_a_client_made_before_fork_refuses_in_the_child(trigear_server: ServerProcess) -> None:
    with BlockingClient(trigear_server.address) as client:
        assert client.echo(b"parent", timeout=10) == b"parent"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: report by exit status only
            try:
                client.echo(b"child", timeout=1)
            except RuntimeError as exc:
                os._exit(0 if "fork" in str(exc) else 3)
            except BaseException:
                os._exit(4)
            os._exit(5)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert client.echo(b"parent again", timeout=10) == b"parent again"
