"""Differential tests: one scripted session with gearmand's own CLIs (``gearman``,
``gearadmin``), run against a fresh gearmand and a fresh trigear; what the tools print
must be the same.

Only what must differ is normalised, each with its reason (docs/interop.md has the table):

* job handles: S17 (trigear's numbers never repeat across restarts, gearmand's start at 1)
  -> replaced by their rank, which is the same on both;
* the UUID the ``gearman`` CLI makes up as the unique of every job without ``-u``;
* the server's pid (``--getpid``) and the descriptor numbers in ``--workers``;
* the line order of hash-ordered listings (``--status``, ``--priority-status``,
  ``--workers``, ``--show-jobs``, ``--show-unique-jobs``): sorted;
* ``--server-version``: trigear reports its own version;
* ``--cancel-job``: gearmand only flags the job (it stays in ``show jobs`` with
  ignore=1 and a second cancel says OK); trigear removes it.  These steps are checked
  against each server's own expected output, not normalised away.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from trigear import __version__

from .interop_helpers import (
    CliWorker,
    Run,
    ServerProc,
    cli_worker,
    gearadmin,
    gearman,
    handle_numbers,
    norm_handles,
    norm_uuids,
    sort_listing,
    wait_connections,
    wait_until,
    wait_workers,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("cli_tools")]

Norm = Callable[[bytes], bytes]
StartServer = Callable[..., ServerProc]


def _fds(blob: bytes) -> bytes:
    """``workers`` lines start with the connection's descriptor number."""
    return re.sub(rb"(?m)^\d+ ", b"<fd> ", blob)


@dataclass
class Transcript:
    """The steps of one session against one server: (label, run, normaliser)."""

    server: ServerProc
    tmp: Path
    steps: list[tuple[str, Run, Norm | None]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def admin(self, *args: str, norm: Norm | None = None) -> Run:
        r = gearadmin(self.port, *args)
        self.steps.append(("gearadmin " + " ".join(args), r, norm))
        return r

    def listing(self, *args: str) -> Run:
        return self.admin(*args, norm=sort_listing)

    def client(self, *args: str, stdin: bytes = b"") -> Run:
        r = gearman(self.port, *args, stdin=stdin)
        self.steps.append((f"gearman {' '.join(args)} <<< {stdin!r}", r, None))
        return r

    def worker_done(self, label: str, w: CliWorker) -> None:
        r = w.finish()
        self.steps.append((f"worker {label}", r, None))

    def record(self, label: str, r: Run, norm: Norm | None = None) -> None:
        self.steps.append((label, r, norm))

    def normalised(self) -> list[tuple[str, bytes, bytes, int]]:
        ranks = handle_numbers([b for _, r, _ in self.steps for b in (r.stdout, r.stderr)])
        pid = str(self.server.pid).encode()
        out = []
        for label, r, norm in self.steps:
            stdout, stderr = r.stdout, r.stderr
            if label.endswith("--getpid"):
                assert stdout == pid + b"\n", (self.server.kind, stdout)
                stdout = b"<pid>\n"
            stdout = norm_uuids(norm_handles(stdout, ranks))
            stderr = norm_uuids(norm_handles(stderr, ranks))
            if norm is not None:
                stdout = norm(stdout)
            out.append((label, stdout, stderr, r.rc))
        return out


Session = Callable[[Transcript], None]


def differential(session: Session, gearmand: ServerProc, trigear: ServerProc) -> None:
    """Run ``session`` against both servers and compare the normalised transcripts."""
    results = []
    for server in (gearmand, trigear):
        t = Transcript(server, server.log.parent)
        session(t)
        results.append(t.normalised())
    want, got = results
    assert [s[0] for s in got] == [s[0] for s in want]
    diffs = [
        f"step {w[0]!r}:\n  trigear  {g[1:]!r}\n  gearmand {w[1:]!r}"
        for w, g in zip(want, got, strict=True)
        if g != w
    ]
    assert not diffs, "trigear's output differs from gearmand's:\n" + "\n".join(diffs)


# --- sessions ---------------------------------------------------------------------------


def admin_session(t: Transcript) -> None:
    """Every gearadmin command, on an empty server, with functions made by
    ``--create-function`` and background submits, and around a worker."""
    t.admin()  # no flag: usage, rc 1
    t.admin("--help")
    t.listing("--status")
    t.listing("--priority-status")
    t.listing("--show-jobs")
    t.listing("--show-unique-jobs")
    t.admin("--workers", norm=lambda b: sort_listing(_fds(b)))
    t.admin("--getpid")
    t.admin("--create-function", "made")
    t.admin("--create-function", "made")  # again: still OK
    t.listing("--status")
    t.admin("--drop-function", "made")
    t.admin("--drop-function", "made")  # now: function not found
    t.admin("--drop-function", "nosuch")
    t.listing("--status")
    # Background jobs at every priority, with and without -u, for a function no
    # worker can do.
    t.client("-b", "-f", "later", "-u", "u1", "normal")
    t.client("-b", "-I", "-f", "later", "-u", "u2", "high")
    t.client("-b", "-L", "-f", "later", "-u", "u3", "low")
    t.client("-b", "-f", "later", "-u", "u1", "coalesced")  # same unique: same job
    t.client("-b", "-f", "other", "no unique given")
    t.client("-b", "-s", "-f", "other")
    wait_connections(t.port, 0)
    t.listing("--status")
    t.listing("--priority-status")
    t.listing("--show-jobs")
    t.listing("--show-unique-jobs")
    t.admin("--workers", norm=lambda b: sort_listing(_fds(b)))
    t.admin("--cancel-job", "H:nosuchhost:1")
    t.admin("--drop-function", "nosuch")
    # A worker makes drop-function refuse.
    with cli_worker(t.tmp, t.port, "-f", "busy", "--", "cat"):
        wait_workers(t.port, "busy", 1)
        t.listing("--status")
        t.admin("--workers", norm=lambda b: sort_listing(_fds(b)))
        t.admin("--drop-function", "busy")
    wait_workers(t.port, "busy", 0)
    wait_connections(t.port, 0)
    t.listing("--status")
    t.admin("--drop-function", "busy")
    t.listing("--status")


def client_session(t: Transcript) -> None:
    """The gearman CLI as client, with gearman CLI workers."""
    with (
        cli_worker(t.tmp, t.port, "-f", "wc", "--", "wc", "-c"),
        cli_worker(t.tmp, t.port, "-f", "rev", "--", "rev"),
        cli_worker(t.tmp, t.port, "-f", "up", "--", "tr", "a-z", "A-Z"),
    ):
        for f in ("wc", "rev", "up"):
            wait_workers(t.port, f, 1)
        wait_connections(t.port, 3)
        t.listing("--status")
        t.listing("--priority-status")
        t.admin("--workers", norm=lambda b: sort_listing(_fds(b)))
        t.client("-f", "wc", "hello")
        t.client("-f", "wc", stdin=b"from stdin\n")
        t.client("-f", "rev", stdin=b"hello world\n")
        t.client("-f", "up", stdin=b"shout\n")
        t.client("-s", "-f", "wc")
        t.client("-n", "-f", "wc", stdin=b"a\nbb\nccc\n")
        t.client("-N", "-f", "wc", stdin=b"a\nbb\nccc\n")
        t.client("-n", "-f", "rev", stdin=b"abc\ndef\n")
        t.client("-P", "-f", "up", "prefixed")
        t.client("-P", "-n", "-f", "wc", stdin=b"one\ntwo\n")
        t.client("-I", "-f", "up", "high")
        t.client("-L", "-f", "up", "low")
        t.client("-u", "myunique", "-f", "rev", "unique")
        t.client("-u", "myunique", "-f", "rev", "unique again")
        t.client("-I", "-u", "hu", "-f", "wc", "high unique")
        t.client("-f", "up", "-f", "up", "twice")
        t.client("-b", "-f", "up", "background")
        t.client("-b", "-I", "-f", "wc", "background high")
        t.client("-b", "-L", "-f", "rev", "background low")
        wait_until(lambda: gearadmin(t.port, "--show-jobs").stdout == b".\n", 10, "bg jobs")
        wait_connections(t.port, 3)
        t.listing("--status")
        t.listing("--priority-status")
        t.listing("--show-jobs")
        t.listing("--show-unique-jobs")
    wait_connections(t.port, 0)
    t.listing("--status")
    t.admin("--workers", norm=lambda b: sort_listing(_fds(b)))


def worker_session(t: Transcript) -> None:
    """The gearman CLI as worker: ``-c N`` runs N jobs and exits; ``-n`` sends a
    WORK_DATA per output line; queued jobs run when a worker comes."""
    t.client("-b", "-f", "queued", "-u", "q1", "first")
    t.client("-b", "-I", "-f", "queued", "-u", "q2", "second")
    t.client("-b", "-L", "-f", "queued", "-u", "q3", "third")
    wait_connections(t.port, 0)
    t.listing("--status")
    t.listing("--priority-status")
    t.listing("--show-jobs")
    t.listing("--show-unique-jobs")
    # The worker appends each payload to a file: the order shows the priorities.
    order = t.tmp / f"order-{t.server.kind}"
    record = f"cat >> {order}; echo >> {order}"
    with cli_worker(t.tmp, t.port, "-c", "3", "-f", "queued", "--", "sh", "-c", record) as w:
        t.worker_done("-c 3 -f queued -- sh -c 'cat >> order'", w)
    t.record("run order", Run(order.read_bytes(), b"", 0))
    wait_connections(t.port, 0)
    t.listing("--status")
    t.listing("--priority-status")
    t.listing("--show-jobs")
    with cli_worker(t.tmp, t.port, "-c", "2", "-f", "count", "--", "wc", "-l") as w:
        wait_workers(t.port, "count", 1)
        t.client("-f", "count", stdin=b"1\n2\n3\n")
        t.client("-f", "count", "-s")
        t.worker_done("-c 2 -f count -- wc -l", w)
    with cli_worker(t.tmp, t.port, "-c", "1", "-n", "-f", "lines", "--", "cat") as w:
        wait_workers(t.port, "lines", 1)
        t.client("-f", "lines", stdin=b"x\ny\nz\n")
        t.worker_done("-c 1 -n -f lines -- cat", w)
    with cli_worker(t.tmp, t.port, "-c", "1", "-f", "fails", "--", "false") as w:
        wait_workers(t.port, "fails", 1)
        t.client("-f", "fails", "data")
        t.worker_done("-c 1 -f fails -- false", w)
    wait_connections(t.port, 0)
    t.listing("--status")


def test_gearadmin_commands(gearmand: ServerProc, trigear: ServerProc) -> None:
    differential(admin_session, gearmand, trigear)


def test_gearman_cli_as_client(gearmand: ServerProc, trigear: ServerProc) -> None:
    differential(client_session, gearmand, trigear)


def test_gearman_cli_as_worker(gearmand: ServerProc, trigear: ServerProc) -> None:
    differential(worker_session, gearmand, trigear)


# --- commands whose output differs on purpose ------------------------------------------


@pytest.mark.parametrize("level", ["ERROR", "WARNING", "INFO", "DEBUG"])
def test_server_verbose(
    start_gearmand_server: StartServer, start_trigear_server: StartServer, level: str
) -> None:
    """``--server-verbose`` prints the level the server runs at (gearmand ``--verbose``,
    trigear ``--log-level``)."""
    g = start_gearmand_server(f"--verbose={level}")
    t = start_trigear_server("--log-level", level)
    assert gearadmin(t.port, "--server-verbose") == gearadmin(g.port, "--server-verbose")


def test_server_verbose_default(gearmand: ServerProc, trigear: ServerProc) -> None:
    """A documented difference (docs/server.md): gearmand runs at ERROR by default,
    trigear at INFO, because its startup line is logged at INFO.  Same shape otherwise."""
    assert gearadmin(gearmand.port, "--server-verbose") == Run(b"ERROR\n", b"", 0)
    assert gearadmin(trigear.port, "--server-verbose") == Run(b"INFO\n", b"", 0)


def test_server_version(gearmand: ServerProc, trigear: ServerProc) -> None:
    """trigear reports its own version; the shape (bare version line, rc 0) is the same."""
    g = gearadmin(gearmand.port, "--server-version")
    t = gearadmin(trigear.port, "--server-version")
    assert (g.rc, g.stderr) == (0, b"")
    assert re.fullmatch(rb"[0-9][^\s]*\n", g.stdout), g
    assert t == Run(f"trigear-{__version__}\n".encode(), b"", 0)


def test_cancel_job(gearmand: ServerProc, trigear: ServerProc) -> None:
    """``--cancel-job`` prints ``OK`` on both; gearmand then keeps the job flagged
    (ignore=1, a second cancel is OK again), trigear has removed it (a second cancel is
    ``Error: UNKNOWN_JOB``)."""
    seen = {}
    for server in (gearmand, trigear):
        gearman(server.port, "-b", "-f", "cx", "-u", "c1", "one")
        gearman(server.port, "-b", "-f", "cx", "-u", "c2", "two")
        jobs = gearadmin(server.port, "--show-jobs").stdout
        handles = sorted(re.findall(rb"H:[^\t]+", jobs), key=lambda h: int(h.split(b":")[-1]))
        assert len(handles) == 2, jobs
        first = handles[0].decode()
        seen[server.kind] = (
            gearadmin(server.port, "--cancel-job", first),
            gearadmin(server.port, "--show-jobs").stdout,
            gearadmin(server.port, "--show-unique-jobs").stdout,
            gearadmin(server.port, "--cancel-job", first),
            gearadmin(server.port, "--cancel-job", first + "0"),
            handles,
        )
    ok = Run(b"OK\n", b"", 0)
    unknown = Run(b"", b"Error: UNKNOWN_JOB\r\n", 0)
    g_cancel, g_jobs, g_uniques, g_again, g_unknown, g_handles = seen["gearmand"]
    assert (g_cancel, g_again, g_unknown) == (ok, ok, unknown)
    assert sort_listing(g_jobs) == sort_listing(
        b"%s\t0\t1\t0\n%s\t0\t0\t1\n.\n" % (g_handles[0], g_handles[1])
    )
    assert sort_listing(g_uniques) == b"c1\nc2\n.\n"
    t_cancel, t_jobs, t_uniques, t_again, t_unknown, t_handles = seen["trigear"]
    assert (t_cancel, t_again, t_unknown) == (ok, unknown, unknown)
    assert t_jobs == b"%s\t0\t0\t1\n.\n" % t_handles[1]
    assert t_uniques == b"c2\n.\n"


def test_abandoned_foreground_job(gearmand: ServerProc, trigear: ServerProc) -> None:
    """Differs on purpose (S12): a foreground client that gives up (``-t``) leaves its
    queued job behind in gearmand, flagged ignore=1 and still counted in ``status``;
    trigear drops a queued job nobody waits for.  What the client prints is the same."""
    runs = {}
    for server in (gearmand, trigear):
        r = gearman(server.port, "-t", "300", "-f", "nowork", "data")
        wait_connections(server.port, 0)
        status = gearadmin(server.port, "--status").stdout
        jobs = gearadmin(server.port, "--show-jobs").stdout
        runs[server.kind] = (r, status, re.sub(rb"H:[^\t]+", b"H", jobs))
    (g_run, g_status, g_jobs), (t_run, t_status, t_jobs) = runs["gearmand"], runs["trigear"]
    timeout = rb"gearman: gearman_client_run_tasks : gearman_wait\(GEARMAN_TIMEOUT\) timeout"
    for r in (g_run, t_run):
        assert (r.stdout, r.rc) == (b"", 0)
        assert re.match(timeout, r.stderr), r.stderr
    assert (g_status, g_jobs) == (b"nowork\t1\t0\t0\n.\n", b"H\t0\t1\t0\n.\n")
    assert (t_status, t_jobs) == (b"nowork\t0\t0\t0\n.\n", b".\n")
