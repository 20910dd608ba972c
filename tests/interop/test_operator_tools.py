"""``trigear submit``, ``trigear work`` and ``trigear admin`` against the real gearmand, and
side by side with gearmand's own tools (``gearman``, ``gearman -w``, ``gearadmin``)."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

import trigear

from ..cli.cli_helpers import TRIGEAR, on_terminal, plain_env, running, trigear_cli
from .interop_helpers import (
    HOST,
    ServerProc,
    cli_worker,
    gearadmin,
    gearman,
    sort_listing,
    wait_workers,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("cli_tools")]


def address(server: ServerProc) -> str:
    return f"{HOST}:{server.port}"


@contextmanager
def trigear_work(server: ServerProc, *args: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [*TRIGEAR, "work", "-s", address(server), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=plain_env(),
    )
    try:
        yield
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err


def test_trigear_submit_to_a_gearman_w_worker(gearmand: ServerProc, tmp_path: Path) -> None:
    with cli_worker(tmp_path, gearmand.port, "-f", "up", "--", "tr", "a-z", "A-Z"):
        wait_workers(gearmand.port, "up", 1)
        p = trigear_cli("submit", "-s", address(gearmand), "-f", "up", "abc", "def")
        assert (p.returncode, p.stdout, p.stderr) == (0, b"ABCDEF", b"")
        p = trigear_cli("submit", "-s", address(gearmand), "-n", "-f", "up", stdin=b"one\ntwo\n")
        assert (p.returncode, p.stdout) == (0, b"ONE\nTWO\n")


def test_gearman_submits_to_trigear_work(gearmand: ServerProc) -> None:
    with trigear_work(gearmand, "-f", "up", "-c", "2", "--", "tr", "a-z", "A-Z"):
        wait_workers(gearmand.port, "up", 1)
        r = gearman(gearmand.port, "-f", "up", "hello")
        assert (r.rc, r.stdout) == (0, b"HELLO")
        # And trigear's own client sees a failing command's stderr as the exception.
    with trigear_work(gearmand, "-f", "bad", "--", "sh", "-c", "echo nope >&2; exit 4"):
        wait_workers(gearmand.port, "bad", 1)
        p = trigear_cli("submit", "-s", address(gearmand), "-f", "bad", "x")
        assert p.returncode == 1
        assert p.stderr.endswith(b"raised: ChildProcessError: nope (exit status 4)\n")


def test_background_and_priorities_agree_with_gearadmin(gearmand: ServerProc) -> None:
    base = ("submit", "-s", address(gearmand), "-b")
    for flags in (["-I"], ["-I"], ["-L"], []):
        p = trigear_cli(*base, *flags, "-f", "q", "x")
        assert p.returncode == 0
        assert p.stdout.startswith(b"H:")
    assert (
        sort_listing(gearadmin(gearmand.port, "--priority-status").stdout) == b"q\t2\t1\t1\t0\n.\n"
    )
    out = json.loads(
        trigear_cli("admin", "-s", address(gearmand), "--json", "prioritystatus").stdout
    )
    assert out[0]["prioritystatus"] == [
        {"function": "q", "high": 2, "normal": 1, "low": 1, "workers": 0}
    ]


def test_admin_against_gearmand_reads_what_gearadmin_reads(gearmand: ServerProc) -> None:
    server = address(gearmand)
    with trigear_work(gearmand, "--id", "w-1", "-f", "f1", "-f", "f2", "--", "cat"):
        wait_workers(gearmand.port, "f2", 1)
        handle = trigear_cli("submit", "-s", server, "-b", "-u", "u-1", "-f", "later", "x").stdout
        status = json.loads(trigear_cli("admin", "-s", server, "--json", "status").stdout)[0]
        want = {}
        for line in gearadmin(gearmand.port, "--status").stdout.decode().splitlines()[:-1]:
            name, total, running_, workers = line.split("\t")
            want[name] = (int(total), int(running_), int(workers))
        got = {r["function"]: (r["total"], r["running"], r["workers"]) for r in status["status"]}
        assert got == want
        workers = json.loads(trigear_cli("admin", "-s", server, "--json", "workers").stdout)
        ours = [w for w in workers[0]["workers"] if w["client_id"] == "w-1"]
        assert [sorted(w["functions"]) for w in ours] == [["f1", "f2"]]
        jobs = json.loads(trigear_cli("admin", "-s", server, "--json", "show-jobs").stdout)
        assert [j["handle"] for j in jobs[0]["show_jobs"]] == [handle.decode().strip()]
        uniques = trigear_cli("admin", "-s", server, "show", "unique", "jobs").stdout
        assert "u-1" in uniques.decode()
        p = trigear_cli("admin", "-s", server, "getpid")
        assert p.stdout == f"{gearmand.pid}\n".encode()
        version = gearadmin(gearmand.port, "--server-version").stdout
        assert trigear_cli("admin", "-s", server, "version").stdout == version
        p = trigear_cli("admin", "-s", server, "cancel-job", "H:nosuch:1")
        assert p.returncode == 1
        assert b"ERR UNKNOWN_JOB" in p.stderr
        for cmd in (
            ["create-function", "made"],
            ["maxqueue", "made", "3"],
            ["drop-function", "made"],
        ):
            p = trigear_cli("admin", "-s", server, *cmd)
            assert (p.returncode, p.stdout) == (0, b"OK\n"), cmd


def test_admin_shutdown_is_trigears_own(gearmand: ServerProc) -> None:
    """gearmand 1.1.20 has no ``shutdown`` command: the ERR is shown, exit status 1."""
    p = trigear_cli("admin", "-s", address(gearmand), "shutdown")
    assert p.returncode == 1
    assert (
        p.stderr
        == (
            f"trigear admin: {address(gearmand)}: "
            "ERR UNKNOWN_COMMAND Unknown server commandshutdown\n"
        ).encode()
    )
    assert gearmand.proc.poll() is None


def test_progress_bar_against_gearmand(gearmand: ServerProc) -> None:
    worker = trigear.Worker(address(gearmand))

    @worker.function("slow")
    async def slow(job: trigear.Job) -> bytes:
        import anyio

        await job.send_status(1, 3)
        await anyio.sleep(1.0)
        await job.send_status(2, 3)
        await anyio.sleep(1.0)
        return b"done"

    submit = ("submit", "-s", address(gearmand), "-f", "slow", "x")
    with running(worker), on_terminal(*submit) as term:
        term.wait_for(lambda s: "1/3" in s and "33%" in s, what="1/3")
        term.wait_for(lambda s: "2/3" in s and "67%" in s, what="2/3")
        assert term.finish() == 0
        assert "done" in term.text
        assert "2/3" not in term.text


def test_top_against_gearmand(gearmand: ServerProc) -> None:
    trigear_cli("submit", "-s", address(gearmand), "-b", "-f", "waiting", "x")
    with on_terminal("admin", "-s", address(gearmand), "top", "-i", "0.3") as term:
        term.wait_for(lambda s: " waiting " in s and "jobs (1)" in s, what="gearmand's queue")
        term.send(b"q")
        assert term.finish() == 0
