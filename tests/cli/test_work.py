"""``trigear work`` through its real entry point against a real trigear server: commands
run per job, failures, concurrency, the graceful drain on SIGINT/SIGTERM (S21's
counterpart on the worker side), and user mistakes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from ..interop.interop_helpers import status_rows, wait_until, wait_workers
from ..peers import free_port
from .cli_helpers import TRIGEAR, plain_env, trigear_cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ..server_processes import ServerProcess

#: A command that says it started (a file $RELEASE.started.PID), waits until the file
#: named by $RELEASE exists, then echoes its input.
WAIT_THEN_CAT = [
    "sh",
    "-c",
    'touch "$RELEASE.started.$$"; while [ ! -e "$RELEASE" ]; do sleep 0.02; done; cat',
]


def started(release: Path, n: int = 1) -> None:
    """Wait until ``n`` commands run (not only assigned: their worker got the job)."""
    wait_until(lambda: len(list(release.parent.glob(release.name + ".started.*"))) == n)


@pytest.fixture
def server(make_server: Any) -> ServerProcess:
    started: ServerProcess = make_server("trigear")
    return started


@contextmanager
def work(
    server: ServerProcess, *args: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``trigear work -s SERVER ARGS`` in its own session (as a shell runs a job)."""
    proc = subprocess.Popen(
        [*TRIGEAR, "work", "-s", server.address, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=plain_env(**(env or {})),
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=20)


def submit(server: ServerProcess, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*TRIGEAR, "submit", "-s", server.address, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=plain_env(),
    )


def test_the_command_runs_per_job_payload_in_result_out(server: ServerProcess) -> None:
    with work(server, "-f", "upper", "--", "tr", "a-z", "A-Z"):
        wait_workers(server.port, "upper", 1)
        p = trigear_cli("submit", "-s", server.address, "-f", "upper", "hello", "world")
        assert (p.returncode, p.stdout, p.stderr) == (0, b"HELLOWORLD", b"")
        data = bytes(range(256))
        p = trigear_cli("submit", "-s", server.address, "-f", "upper", stdin=data)
        assert p.stdout == data.translate(
            bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        )


def test_the_command_sees_the_job_in_its_environment(server: ServerProcess) -> None:
    script = 'printf "%s|%s|%s" "$TRIGEAR_FUNCTION" "$TRIGEAR_UNIQUE" "$TRIGEAR_HANDLE"'
    with work(server, "-f", "one", "-f", "two", "--", "sh", "-c", script):
        wait_workers(server.port, "two", 1)
        p = trigear_cli("submit", "-s", server.address, "-f", "two", "-u", "the-unique", "x")
        function, unique, handle = p.stdout.decode().split("|")
        assert (function, unique) == ("two", "the-unique")
        assert handle.startswith("H:")


def test_a_non_zero_exit_fails_the_job_with_its_stderr(server: ServerProcess) -> None:
    script = "echo 'cannot convert: bad header' >&2; exit 3"
    with work(server, "-f", "convert", "--", "sh", "-c", script):
        wait_workers(server.port, "convert", 1)
        p = trigear_cli("submit", "-s", server.address, "-f", "convert", "x")
        assert p.returncode == 1
        assert p.stderr.decode().endswith(
            "raised: ChildProcessError: cannot convert: bad header (exit status 3)\n"
        )
        # The worker goes on serving.
        p = trigear_cli("submit", "-s", server.address, "-f", "convert", "y")
        assert p.returncode == 1


def test_concurrency_runs_n_commands_at_once(server: ServerProcess, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with work(server, "-c", "3", "-f", "slow", "--", *WAIT_THEN_CAT, env={"RELEASE": str(release)}):
        wait_workers(server.port, "slow", 1)
        clients = [submit(server, "-f", "slow", f"job{i}") for i in range(4)]
        try:
            started(release, 3)
            wait_until(lambda: status_rows(server.port).get("slow") == [4, 3, 1], what="4th")
            release.touch()
            outputs = sorted(c.communicate(timeout=30)[0] for c in clients)
            assert outputs == [b"job0", b"job1", b"job2", b"job3"]
        finally:
            for c in clients:
                c.kill()
                c.communicate()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_drains_running_jobs_then_exits_0(
    server: ServerProcess, tmp_path: Path, signum: signal.Signals
) -> None:
    """Sent to the whole process group, as Ctrl-C at a terminal is: the running command
    (in its own session) is not hit, finishes, and its result reaches the client."""
    release = tmp_path / "release"
    with work(server, "-f", "slow", "--", *WAIT_THEN_CAT, env={"RELEASE": str(release)}) as w:
        wait_workers(server.port, "slow", 1)
        client = submit(server, "-f", "slow", "precious")
        started(release)
        os.killpg(w.pid, signum)
        time.sleep(0.5)
        assert w.poll() is None, w.communicate()  # still draining
        # A new job is not taken while draining.
        late = submit(server, "-f", "slow", "late")
        wait_until(lambda: status_rows(server.port).get("slow", [0])[0] == 2, what="queued")
        release.touch()
        out, _ = client.communicate(timeout=30)
        assert (client.returncode, out) == (0, b"precious")
        assert w.wait(timeout=20) == 0
        _, err = w.communicate(timeout=10)
        assert f"{signum.name}: draining (1 job(s) running)" in err.decode()
        assert b"Traceback" not in err
        assert status_rows(server.port).get("slow") == [1, 0, 0]  # 'late' waits for a worker
        late.kill()
        late.communicate()


def test_a_second_signal_stops_at_once_and_the_job_is_requeued(
    server: ServerProcess, tmp_path: Path
) -> None:
    release = tmp_path / "never"
    with work(server, "-f", "slow", "--", *WAIT_THEN_CAT, env={"RELEASE": str(release)}) as w:
        wait_workers(server.port, "slow", 1)
        client = submit(server, "-f", "slow", "x")
        started(release)
        w.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=20) == 0
        # S9: the job goes back to the queue; no worker is left for it.
        wait_until(lambda: status_rows(server.port).get("slow") == [1, 0, 0], what="requeued")
        client.kill()
        client.communicate()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "x"], "no command: give it after '--'"),
        (["--", "cat"], "the following arguments are required: -f/--function"),
        (["-f", "x", "--", "no-such-command-anywhere"], "command not found"),
        (["-f", "x", "-c", "0", "--", "cat"], "-c/--concurrency: '0' is not a whole number"),
        (["-f", "x", "-s", "h:99999", "--", "cat"], "-s: bad port"),
        (["-f", "", "--", "cat"], "must not be empty"),
        (["-f", "x", "-s", f"127.0.0.1:{free_port()}", "--", "cat"], "no server available"),
        (["-f", "x", "-s", "no-such-host.invalid", "--", "cat"], "no server available"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str], message: str) -> None:
    p = trigear_cli("work", *args)
    assert p.returncode == 2, p
    assert message in p.stderr.decode()
    assert p.stderr.count(b"\n") == 1
    assert b"Traceback" not in p.stderr
