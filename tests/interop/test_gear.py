"""python ``gear`` (the OpenStack Gearman library) against trigear.

Each test also runs against gearmand, so an expectation that fails on both is a test
bug, not a server bug.  gear runs its own I/O threads; every wait here is bounded.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import gear
import pytest

from .interop_helpers import HOST, ServerProc, gearadmin, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = [
    pytest.mark.interop,
    # gear calls threading's deprecated camelCase names (notifyAll, ...).
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gear"),
]

WAIT = 10.0


@pytest.fixture(params=["trigear", "gearmand"])
def server(request: pytest.FixtureRequest) -> ServerProc:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def client(server: ServerProc) -> Iterator[gear.Client]:
    c = gear.Client("interop-client")
    c.addServer(HOST, server.port)
    c.waitForServer(WAIT)
    yield c
    c.shutdown()


@pytest.fixture
def make_worker(server: ServerProc) -> Iterator[Callable[..., gear.Worker]]:
    workers: list[gear.Worker] = []

    def make(*functions: str) -> gear.Worker:
        w = gear.Worker("interop-worker")
        workers.append(w)
        w.addServer(HOST, server.port)
        w.waitForServer(WAIT)
        for f in functions:
            w.registerFunction(f)
        return w

    yield make
    for w in workers:
        w.shutdown()


def get_job(worker: gear.Worker, timeout: float = WAIT) -> Any:
    """``worker.getJob()``, interrupted after ``timeout`` seconds."""
    timer = threading.Timer(timeout, worker.stopWaitingForJobs)
    timer.start()
    try:
        return worker.getJob()
    except gear.InterruptedError:
        raise AssertionError(f"no job within {timeout}s") from None
    finally:
        timer.cancel()
        timer.join()


def wait_complete(job: gear.Job) -> None:
    wait_until(lambda: job.complete, WAIT, f"job {job.name} to complete")


def admin(client: gear.Client, request: gear.AdminRequest) -> bytes:
    client.active_connections[0].sendAdminRequest(request, timeout=WAIT)
    return request.response  # type: ignore[no-any-return]


def test_foreground_round_trip(client: gear.Client, make_worker: Any) -> None:
    worker = make_worker("reverse")
    job = gear.Job("reverse", b"hello\0world", unique="u-fg")
    client.submitJob(job, timeout=WAIT)
    assert job.handle
    assert job.handle.startswith(b"H:")
    wj = get_job(worker)
    assert (wj.name, wj.arguments, wj.unique, wj.handle) == (
        "reverse",
        b"hello\0world",
        b"u-fg",
        job.handle,
    )
    wj.sendWorkStatus(1, 3)
    wj.sendWorkData(b"part")
    wj.sendWorkWarning(b"careful")
    wj.sendWorkComplete(b"dlrow\0olleh")
    wait_complete(job)
    assert job.data == [b"part", b"careful", b"dlrow\0olleh"]
    assert (job.numerator, job.denominator) == (b"1", b"3")
    assert job.warning
    assert not job.failure
    assert job.exception is None


def test_fail_and_exception(client: gear.Client, make_worker: Any) -> None:
    worker = make_worker("f")
    assert client.setOption("exceptions", timeout=WAIT)
    failing, raising = gear.Job("f", b"1"), gear.Job("f", b"2")
    client.submitJob(failing, timeout=WAIT)
    client.submitJob(raising, timeout=WAIT)
    get_job(worker).sendWorkFail()
    get_job(worker).sendWorkException(b"boom\0trace")
    wait_complete(failing)
    wait_complete(raising)
    assert failing.failure
    assert failing.exception is None
    assert raising.failure
    assert raising.exception == b"boom\0trace"


def test_exception_without_option_is_a_fail(client: gear.Client, make_worker: Any) -> None:
    worker = make_worker("f")
    job = gear.Job("f", b"x")
    client.submitJob(job, timeout=WAIT)
    get_job(worker).sendWorkException(b"boom")
    wait_complete(job)
    assert job.failure
    assert job.exception is None


def test_priorities_and_background(client: gear.Client, make_worker: Any) -> None:
    """Background jobs at each priority run HIGH, NORMAL, LOW; a repeated unique
    coalesces into the first job."""
    jobs = [
        (gear.PRECEDENCE_LOW, gear.Job("p", b"low", unique="ul")),
        (gear.PRECEDENCE_NORMAL, gear.Job("p", b"normal", unique="un")),
        (gear.PRECEDENCE_HIGH, gear.Job("p", b"high", unique="uh")),
        (gear.PRECEDENCE_HIGH, gear.Job("p", b"again", unique="un")),
    ]
    for prec, job in jobs:
        client.submitJob(job, background=True, precedence=prec, timeout=WAIT)
    assert jobs[3][1].handle == jobs[1][1].handle
    assert len({j.handle for _, j in jobs}) == 3
    worker = make_worker("p")
    got = []
    for _ in range(3):
        wj = get_job(worker)
        got.append((wj.arguments, wj.unique))
        wj.sendWorkComplete()
    assert got == [(b"high", b"uh"), (b"normal", b"un"), (b"low", b"ul")]


def test_foreground_priorities(client: gear.Client, make_worker: Any) -> None:
    jobs = [
        gear.Job("fp", b"low"),
        gear.Job("fp", b"normal"),
        gear.Job("fp", b"high"),
    ]
    for prec, job in zip(
        (gear.PRECEDENCE_LOW, gear.PRECEDENCE_NORMAL, gear.PRECEDENCE_HIGH), jobs, strict=True
    ):
        client.submitJob(job, precedence=prec, timeout=WAIT)
    worker = make_worker("fp")
    order = []
    for _ in range(3):
        wj = get_job(worker)
        order.append(wj.arguments)
        wj.sendWorkComplete(wj.arguments.upper())
    assert order == [b"high", b"normal", b"low"]
    for job in jobs:
        wait_complete(job)
        assert job.data == [job.arguments.upper()]


def test_coalesced_foreground_clients(
    server: ServerProc, client: gear.Client, make_worker: Any
) -> None:
    other = gear.Client("interop-client-2")
    other.addServer(HOST, server.port)
    other.waitForServer(WAIT)
    try:
        a, b = gear.Job("co", b"first", unique="same"), gear.Job("co", b"second", unique="same")
        client.submitJob(a, timeout=WAIT)
        other.submitJob(b, timeout=WAIT)
        assert a.handle == b.handle
        wj = get_job(make_worker("co"))
        assert wj.arguments == b"first"
        wj.sendWorkData(b"d")
        wj.sendWorkComplete(b"r")
        wait_complete(a)
        wait_complete(b)
        assert a.data == b.data == [b"d", b"r"]
    finally:
        other.shutdown()


def test_admin_requests(server: ServerProc, client: gear.Client, make_worker: Any) -> None:
    """gear's admin requests get complete, parseable replies."""
    make_worker("adm")
    wait_until(lambda: b"adm\t0\t0\t1" in gearadmin(server.port, "--status").stdout, WAIT)
    bg = gear.Job("queued", b"x", unique="uq")
    client.submitJob(bg, background=True, timeout=WAIT)
    status = admin(client, gear.StatusAdminRequest())
    assert sorted(status.split(b"\n")) == sorted([b"adm\t0\t0\t1", b"queued\t1\t0\t0", b".", b""])
    jobs = admin(client, gear.ShowJobsAdminRequest())
    assert jobs == bg.handle + b"\t0\t0\t1\n.\n"
    assert admin(client, gear.ShowUniqueJobsAdminRequest()) == b"uq\n.\n"
    workers = admin(client, gear.WorkersAdminRequest())
    lines = workers.split(b"\n")
    assert lines[-2:] == [b".", b""]
    assert any(line.endswith(b"interop-worker : adm") for line in lines), workers
    assert any(line.endswith(b" - :") for line in lines), workers  # the client itself
    version = admin(client, gear.VersionAdminRequest())
    assert version.startswith(b"OK ")
    assert version.endswith(b"\n")
    assert admin(client, gear.CancelJobAdminRequest(bg.handle)) == b"OK\r\n"
    unknown = gear.CancelJobAdminRequest(b"H:nosuch:1")
    assert admin(client, unknown) == b"ERR UNKNOWN_JOB\r\n"
    # The connection is still in step: another request gets its own reply.
    assert admin(client, gear.VersionAdminRequest()) == version


def test_many_jobs_through_one_worker(client: gear.Client, make_worker: Any) -> None:
    worker = make_worker("many")
    jobs = [gear.Job("many", b"%d" % i) for i in range(50)]
    for job in jobs:
        client.submitJob(job, timeout=WAIT)
    done = threading.Event()

    def work() -> None:
        for _ in range(len(jobs)):
            wj = get_job(worker)
            wj.sendWorkComplete(wj.arguments * 2)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    t.join(WAIT * 2)
    assert done.is_set()
    deadline = time.monotonic() + WAIT
    for job in jobs:
        wait_until(lambda job=job: job.complete, max(deadline - time.monotonic(), 0.1))
        assert job.data == [job.arguments * 2]
