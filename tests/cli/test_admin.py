"""``trigear admin`` through its real entry point against real trigear servers: every
admin command of spec section 3 as a table and as JSON, several servers, user mistakes,
and ``top`` on a pseudo-terminal."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from ..interop.interop_helpers import admin, wait_until, wait_workers
from ..peers import free_port
from .cli_helpers import TRIGEAR, on_terminal, plain_env, trigear_cli

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..server_processes import ServerProcess


@pytest.fixture
def server(make_server: Any) -> ServerProcess:
    started: ServerProcess = make_server("trigear")
    return started


@contextmanager
def worker(server: ServerProcess, name: str, *functions: str) -> Iterator[None]:
    """A ``trigear work`` process serving ``functions`` with ``cat``."""
    flags = [a for f in functions for a in ("-f", f)]
    proc = subprocess.Popen(
        [*TRIGEAR, "work", "-s", server.address, "--id", name, *flags, "--", "cat"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=plain_env(),
    )
    try:
        for f in functions:
            wait_workers(server.port, f, 1)
        yield
    finally:
        proc.terminate()
        proc.wait(20)


def adm(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[bytes]:
    return trigear_cli("admin", "-s", server.address, *args)


def queue(server: ServerProcess, function: str, *flags: str) -> list[str]:
    p = trigear_cli("submit", "-s", server.address, "-b", *flags, "-f", function, "x")
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().split()


def table(out: bytes) -> list[list[str]]:
    """A printed table's rows as cells (the header first, the rule dropped)."""
    lines = [line.split() for line in out.decode().splitlines() if line.strip()]
    return [cells for cells in lines if not set("".join(cells)) <= {"─"}]


def test_status_prioritystatus_and_workers(server: ServerProcess) -> None:
    with worker(server, "thumbs-1", "thumb", "resize"):
        queue(server, "mail", "-I")
        queue(server, "mail", "-L")
        queue(server, "mail")
        assert sorted(table(adm(server, "status").stdout)[1:]) == [
            ["mail", "3", "0", "0"],
            ["resize", "0", "0", "1"],
            ["thumb", "0", "0", "1"],
        ]
        assert table(adm(server, "status").stdout)[0] == [
            "function",
            "queued",
            "running",
            "workers",
        ]
        prio = table(adm(server, "prioritystatus").stdout)
        assert ["mail", "1", "1", "1", "0"] in prio
        assert table(adm(server, "priority-status").stdout) == prio
        rows = table(adm(server, "workers").stdout)
        assert rows[0] == ["fd", "ip", "client", "id", "functions"]
        ours = [r for r in rows if "thumbs-1" in r]
        assert len(ours) == 1
        assert sorted(ours[0][3:]) == ["resize", "thumb"]


def test_json_for_scripts(server: ServerProcess) -> None:
    with worker(server, "thumbs-1", "thumb"):
        handles = queue(server, "mail", "-u", "job-1")
        out = json.loads(adm(server, "--json", "status").stdout)
        assert out[0]["server"] == server.address
        rows = {r["function"]: r for r in out[0]["status"]}
        assert rows["mail"] == {
            "function": "mail",
            "total": 1,
            "running": 0,
            "workers": 0,
            "queued": 1,
        }
        workers = json.loads(adm(server, "--json", "workers").stdout)[0]["workers"]
        assert {"client_id": "thumbs-1", "functions": ["thumb"]}.items() <= next(
            w for w in workers if w["client_id"] == "thumbs-1"
        ).items()
        jobs = json.loads(adm(server, "--json", "show", "jobs").stdout)[0]["show_jobs"]
        assert [j["handle"] for j in jobs] == handles
        uniques = json.loads(adm(server, "--json", "show", "unique", "jobs").stdout)
        assert uniques == [{"server": server.address, "show_unique_jobs": ["job-1"]}]
        pid = json.loads(adm(server, "--json", "getpid").stdout)
        assert server.proc is not None
        assert pid == [{"server": server.address, "getpid": server.proc.pid}]


def test_jobs_cancel_functions_maxqueue(server: ServerProcess) -> None:
    (handle,) = queue(server, "mail", "-u", "u1")
    assert table(adm(server, "show-jobs").stdout)[1] == [handle, "0", "0", "1"]
    assert table(adm(server, "show-unique-jobs").stdout)[1:] == [["u1"]]
    p = adm(server, "cancel", "job", handle)
    assert (p.returncode, p.stdout) == (0, b"OK\n")
    assert admin(server.port, b"show jobs") == b".\n"
    p = adm(server, "cancel-job", handle)
    assert (p.returncode, p.stderr) == (
        1,
        f"trigear admin: {server.address}: ERR UNKNOWN_JOB\n".encode(),
    )
    assert adm(server, "create", "function", "made").stdout == b"OK\n"
    assert b"made\t0\t0\t0\n" in admin(server.port, b"status")
    assert adm(server, "maxqueue", "made", "1").returncode == 0
    assert queue(server, "made")
    p = trigear_cli("submit", "-s", server.address, "-b", "-f", "made", "y")
    assert p.returncode == 1
    assert b"QUEUE_ERROR" in p.stderr  # S18: the queue is full
    assert adm(server, "maxqueue", "made").returncode == 0  # unlimited again
    assert queue(server, "made")
    p = adm(server, "drop", "function", "made")
    assert p.returncode == 1
    assert b"ERR there are still connected workers or executing clients" in p.stderr


def test_version_verbose_getpid_shutdown(server: ServerProcess) -> None:
    from trigear import __version__

    assert adm(server, "version").stdout == f"trigear-{__version__}\n".encode()
    assert adm(server, "verbose").stdout == b"INFO\n"
    assert server.proc is not None
    assert adm(server, "getpid").stdout == f"{server.proc.pid}\n".encode()
    assert adm(server, "shutdown", "--graceful").stdout == b"OK\n"
    assert server.proc.wait(20) == 0


def test_several_servers_one_table_and_one_error_line(make_server: Any) -> None:
    one, two = make_server("trigear"), make_server("trigear")
    queue(one, "a")
    queue(two, "b")
    down = f"127.0.0.1:{free_port()}"
    p = trigear_cli("admin", "-s", one.address, "-s", two.address, "-s", down, "status")
    assert p.returncode == 1
    assert sorted(table(p.stdout)[1:]) == sorted(
        [[one.address, "a", "1", "0", "0"], [two.address, "b", "1", "0", "0"]]
    )
    assert p.stderr.decode().startswith(f"trigear admin: {down}: cannot connect")
    out = json.loads(
        trigear_cli("admin", "--json", "-s", one.address, "-s", down, "version").stdout
    )
    assert out[0]["version"].startswith("trigear-")
    assert out[1]["server"] == down
    assert "cannot connect" in out[1]["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["cancel-job"], "the following arguments are required: handle"),
        (["maxqueue", "f", "1", "2"], "maxqueue takes no size, one size, or three"),
        (["maxqueue", "f", "x"], "invalid int value"),
        (["--timeout", "0", "status"], "must be more than 0"),
        (["-s", "a:b:c:d:e]", "status"], "-s:"),
        (["cancel-job", "two words"], "cannot be sent in an admin command"),
        (["-s", f"127.0.0.1:{free_port()}", "status"], "cannot connect"),
        (["-s", "no-such-host.invalid", "version"], "cannot connect"),
        (["top"], "top needs a terminal"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str], message: str) -> None:
    p = trigear_cli("admin", *args)
    assert p.returncode == 2, p
    assert message in p.stderr.decode()
    assert p.stderr.count(b"\n") == 1
    assert b"Traceback" not in p.stderr


def test_the_worker_id_of_trigear_work_shows_in_workers(server: ServerProcess) -> None:
    with worker(server, "thumbnailer-1", "thumb"):
        p = adm(server, "--json", "workers")
        assert '"thumbnailer-1"' in p.stdout.decode()


# --- top -----------------------------------------------------------------------------------


@pytest.mark.parametrize("quit_key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_top_shows_queues_workers_and_jobs_live_until_quit(
    make_server: Any, quit_key: bytes
) -> None:
    server = make_server("trigear")
    down = f"127.0.0.1:{free_port()}"
    with (
        worker(server, "thumbs-1", "thumb"),
        on_terminal(
            "admin", "-s", server.address, "-s", down, "top", "-i", "0.2", cols=100, rows=40
        ) as term,
    ):
        term.wait_for(
            lambda s: (
                "thumbs-1" in s
                and f"{down}: cannot connect" in s
                and "trigear admin top  2 servers, every 0.2 s" in s
            ),
            what="the first full screen",
        )
        # A job queued now shows at the next refresh: queued at high priority, in jobs.
        (handle,) = queue(server, "mail", "-I")
        mail_row = "│ mail          1        0     0         0         0"
        term.wait_for(
            lambda s: handle in s and "jobs (1)" in s and mail_row in s, what="the new job"
        )
        # And goes when it is cancelled.
        assert adm(server, "cancel-job", handle).returncode == 0
        term.wait_for(lambda s: handle not in s and "jobs (0)" in s, what="the job gone")
        term.send(quit_key)
        assert term.finish() == 0
    # The terminal is given back: the alternate screen left, the cursor shown again.
    assert term.raw.endswith(b"\x1b[?1049l") or b"\x1b[?1049l" in term.raw[-64:]
    assert b"\x1b[?25h" in term.raw[-64:]
    assert b"Traceback" not in term.raw


def test_top_rides_through_a_server_restart(make_server: Any) -> None:
    server = make_server("trigear")
    with on_terminal("admin", "-s", server.address, "top", "-i", "0.2") as term:
        term.wait_for(lambda s: "queues" in s, what="the first screen")
        server.stop()
        term.wait_for(lambda s: "cannot connect" in s, what="the server down")
        server.start()
        queue(server, "after")
        term.wait_for(lambda s: " after " in s, what="the server back")
        term.send(b"q")
        assert term.finish() == 0


def test_top_can_be_stopped_with_sigterm(server: ServerProcess) -> None:
    with on_terminal("admin", "-s", server.address, "top") as term:
        term.wait_for(lambda s: "queues" in s, what="the first screen")
        term.proc.terminate()
        assert term.finish() == 0
        wait_until(lambda: term.proc.poll() is not None)
