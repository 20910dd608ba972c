"""``trigear --name``: a server's name in a shared store, as an operator meets it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from ..peers import free_port

TRIGEAR = [sys.executable, "-m", "trigear"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TRIGEAR, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "s1"], "--name) needs a PostgreSQL store"),
        (["--name", "s1", "--store", "sqlite:/tmp/x.db"], "needs a PostgreSQL store"),
        (["--advertise", "127.0.0.1:1"], "--advertise goes with --name"),
        (["--name", "a:b", "--store", "postgresql://x/y"], "without ':'"),
        (
            ["--name", "a", "--job-handle-prefix", "b", "--store", "postgresql://x/y"],
            "leave out --job-handle-prefix",
        ),
        (
            ["--name", "a", "--advertise", "[::1", "--store", "postgresql://x/y"],
            "--advertise: not a server address",
        ),
    ],
)
def test_name_mistakes(args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.postgres
def test_a_second_server_with_a_taken_name_does_not_start(pg_url: str) -> None:
    port = free_port()
    first = subprocess.Popen(
        [*TRIGEAR, "-p", str(port), "--store", pg_url, "--name", "twin"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the first server did not start"
                assert first.poll() is None
                time.sleep(0.05)
        second = run("-p", str(free_port()), "--store", pg_url, "--name", "twin")
        assert second.returncode == 1
        assert "cannot start" in second.stderr
        assert "another trigear server named 'twin'" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.terminate()
        first.wait(30)
        assert first.stderr is not None
        first.stderr.close()
    assert first.returncode == 0
