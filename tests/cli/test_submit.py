"""``trigear submit`` through its real entry point against a real trigear server, with a
worker of the library; its progress bar on a pseudo-terminal."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import pytest

import trigear
from trigear.client.placement import Placement, parse_addresses

from ..interop.interop_helpers import admin
from ..peers import free_port
from .cli_helpers import on_terminal, running, trigear_cli

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..server_processes import ServerProcess


class Steps:
    """Lets a test move a worker function on, one step at a time."""

    def __init__(self) -> None:
        self.events = [threading.Event() for _ in range(8)]

    async def wait(self, i: int) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.events[i].wait, abandon_on_cancel=True)


def make_worker(server: ServerProcess, steps: Steps) -> trigear.Worker:
    worker = trigear.Worker(server.address)

    @worker.function("rev")
    async def rev(job: trigear.Job) -> bytes:
        if job.data == b"bad":
            raise ValueError("cannot do bad")
        return bytes(reversed(job.data))

    @worker.function("chunks")
    async def chunks(job: trigear.Job) -> bytes:
        await job.send_data(b"first\n")
        await job.send_data(b"second\n")
        await job.send_warning(b"mind the gap")
        return b"last\n"

    @worker.function("fail")
    async def fail(job: trigear.Job) -> bytes:
        raise trigear.JobFailed()

    @worker.function("progress")
    async def progress(job: trigear.Job) -> bytes:
        for i in range(1, 4):
            await job.send_status(i, 4)
            await steps.wait(i - 1)
        return b"finished " + job.data

    return worker


@pytest.fixture
def server(make_server: Any) -> ServerProcess:
    started: ServerProcess = make_server("trigear")
    return started


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
def worker(server: ServerProcess, steps: Steps) -> Iterator[None]:
    with running(make_worker(server, steps)):
        yield
    for e in steps.events:
        e.set()


@pytest.mark.usefixtures("worker")
def test_each_argument_is_a_job_and_output_streams(server: ServerProcess) -> None:
    p = trigear_cli("submit", "-s", server.address, "-f", "rev", "abc", "def")
    assert (p.returncode, p.stdout, p.stderr) == (0, b"cbafed", b"")
    p = trigear_cli("submit", "-s", server.address, "-f", "chunks")
    assert p.returncode == 0
    assert p.stdout == b"first\nsecond\nlast\n"
    assert b"warning from job H:" in p.stderr
    assert b"mind the gap" in p.stderr


@pytest.mark.usefixtures("worker")
def test_standard_input_is_one_job_byte_for_byte(server: ServerProcess) -> None:
    data = b"\x00\xff\xfe binary \n\r\n end"
    p = trigear_cli("submit", "-s", server.address, "-f", "rev", stdin=data)
    assert (p.returncode, p.stdout) == (0, bytes(reversed(data)))


@pytest.mark.usefixtures("worker")
def test_lines_mode_one_job_per_line_failures_reported_and_the_rest_run(
    server: ServerProcess,
) -> None:
    p = trigear_cli("submit", "-s", server.address, "-n", "-f", "rev", stdin=b"one\nbad\n\nthree\n")
    assert p.returncode == 1
    # One output line per input line, the failed one empty.
    assert p.stdout == b"eno\n\n\neerht\n"
    assert len(p.stderr.splitlines()) == 1
    line = p.stderr.decode().strip()
    assert line.startswith("trigear submit: line 2: job H:")
    assert line.endswith("raised: ValueError: cannot do bad")


@pytest.mark.usefixtures("worker")
def test_a_failing_job_exits_1_with_one_line(server: ServerProcess) -> None:
    p = trigear_cli("submit", "-s", server.address, "-f", "fail", "x")
    assert p.returncode == 1
    assert p.stdout == b""
    assert p.stderr.decode().startswith("trigear submit: job H:")
    assert p.stderr.decode().endswith(" failed\n")


def test_background_priorities_and_unique(server: ServerProcess) -> None:
    """No worker: the jobs stay queued where ``prioritystatus`` shows them (S1, S3)."""
    base = ("submit", "-s", server.address, "-b")
    high = trigear_cli(*base, "-I", "-f", "q", "h1", "h2")
    low = trigear_cli(*base, "-L", "-f", "q", "l1")
    normal = trigear_cli(*base, "-f", "q", "n1")
    for p, n in ((high, 2), (low, 1), (normal, 1)):
        assert p.returncode == 0, p.stderr
        handles = p.stdout.decode().split()
        assert len(handles) == n
        assert all(h.startswith("H:") for h in handles)
    assert admin(server.port, b"prioritystatus") == b"q\t2\t1\t1\t0\n.\n"
    # The same unique coalesces: the same handle twice (S2).
    a = trigear_cli(*base, "-u", "same", "-f", "q", "x")
    b = trigear_cli(*base, "-u", "same", "-f", "q", "y")
    assert a.stdout == b.stdout
    assert admin(server.port, b"show unique jobs").count(b"same\n") == 1


def test_several_servers_a_unique_goes_where_the_client_places_it(make_server: Any) -> None:
    one, two = make_server("trigear"), make_server("trigear")
    servers = [one.address, two.address]
    placement = Placement(parse_addresses(servers))
    for unique in ("alpha", "beta", "gamma", "delta"):
        p = trigear_cli(
            "submit", "-b", "-s", servers[0], "-s", servers[1], "-u", unique, "-f", "q", "x"
        )
        assert p.returncode == 0, p.stderr
        chosen = placement.order(unique.encode(), b"x")[0]
        target = one if str(chosen) == one.address else two
        other = two if target is one else one
        assert unique.encode() + b"\n" in admin(target.port, b"show unique jobs")
        assert unique.encode() + b"\n" not in admin(other.port, b"show unique jobs")


def test_timeout_gives_up_with_status_1(server: ServerProcess) -> None:
    p = trigear_cli("submit", "-s", server.address, "--timeout", "0.3", "-f", "nobody", "x")
    assert p.returncode == 1
    assert p.stderr == b"trigear submit: no result after 0.3 s (the job may still run)\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x"], "the following arguments are required: -f/--function"),
        (["-f", "rev", "--bogus"], "unrecognized arguments: --bogus"),
        (["-f", "rev", "-I", "-L", "x"], "not allowed with argument"),
        (["-f", "rev", "-s", "host:notaport", "x"], "-s: bad port"),
        (["-f", "rev", "-s", "a:1", "-s", "a:1", "x"], "duplicate server address"),
        (["-f", "rev", "--timeout", "-1", "x"], "must be more than 0"),
        (["-f", "rev", "-u", "", "x"], "must not be empty"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str], message: str) -> None:
    p = trigear_cli("submit", *args)
    assert p.returncode == 2
    assert message in p.stderr.decode()
    assert p.stderr.count(b"\n") == 1
    assert b"Traceback" not in p.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "no-such-host.invalid"])
def test_an_unknown_server_exits_2_with_one_line(host: str) -> None:
    p = trigear_cli("submit", "-s", f"{host}:{free_port()}", "-f", "rev", "x")
    assert p.returncode == 2
    assert p.stderr.startswith(b"trigear submit: no server available:")
    assert p.stderr.count(b"\n") == 1
    assert b"Traceback" not in p.stderr


@pytest.mark.usefixtures("worker")
def test_no_progress_bar_when_standard_error_is_not_a_terminal(server: ServerProcess) -> None:
    p = trigear_cli("submit", "-s", server.address, "-f", "rev", "plain")
    assert (p.stdout, p.stderr) == (b"nialp", b"")


# --- on a terminal --------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
def test_the_progress_bar_follows_work_status(server: ServerProcess, steps: Steps) -> None:
    with on_terminal("submit", "-s", server.address, "-f", "progress", "payload") as term:
        screen = term.wait_for(lambda s: "1/4" in s and "25%" in s, what="1/4")
        assert "progress H:" in screen
        assert "━" in screen  # the bar itself
        steps.events[0].set()
        term.wait_for(lambda s: "2/4" in s and "50%" in s, what="2/4")
        steps.events[1].set()
        term.wait_for(lambda s: "3/4" in s and "75%" in s, what="3/4")
        steps.events[2].set()
        assert term.finish() == 0
        # The bar is gone; the output stays.
        assert "finished payload" in term.text
        assert "3/4" not in term.text
        assert "━" not in term.text


@pytest.mark.usefixtures("worker")
def test_lines_mode_counts_the_lines_done(server: ServerProcess, steps: Steps) -> None:
    import subprocess

    stdin = subprocess.PIPE
    with on_terminal("submit", "-s", server.address, "-n", "-f", "progress", stdin=stdin) as term:
        assert term.proc.stdin is not None
        term.proc.stdin.write(b"a\nb\nc\n")
        term.proc.stdin.close()
        term.wait_for(lambda s: "jobs done" in s and "0/3" in s and "1/4" in s, what="0/3")
        for e in steps.events[:3]:
            e.set()
        term.wait_for(lambda s: "finished a" in s, what="the first output")
        assert term.finish() == 0
        lines = [line for line in term.text.splitlines() if line]
        assert lines == ["finished a", "finished b", "finished c"]


@pytest.mark.usefixtures("worker")
def test_with_output_piped_the_bar_still_shows_on_the_terminal(
    server: ServerProcess, steps: Steps
) -> None:
    with on_terminal(
        "submit", "-s", server.address, "-f", "progress", "p", stdout_pipe=True
    ) as term:
        term.wait_for(lambda s: "1/4" in s, what="1/4")
        for e in steps.events[:3]:
            e.set()
        assert term.finish() == 0
        assert term.proc.stdout is not None
        assert term.proc.stdout.read() == b"finished p"
        assert "finished" not in term.text
