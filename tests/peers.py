"""Real peers the tests need, shared by every test directory.

Real peers (gearmand, the gearman CLI, the Perl server, PostgreSQL) are skipped when absent
on a developer's machine, and a failure when ``TRIGEAR_REQUIRE_PEERS=1`` (set by .ci/run,
which installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: The machine's PostgreSQL server (trust auth), for tests that need a real one.
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


def missing(reason: str) -> None:
    """Skip for a missing peer, or fail where peers are required."""
    if os.environ.get("TRIGEAR_REQUIRE_PEERS") == "1":
        pytest.fail(f"required peer missing: {reason}")
    pytest.skip(reason)


def require_binary(path_or_name: str) -> str:
    """Return the full path of a peer program, or skip (fail in CI) when it is missing."""
    found = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if found and os.access(found, os.X_OK):
        return found
    missing(f"{path_or_name} is not installed")
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- a throwaway PostgreSQL cluster --------------------------------------------------------


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary directory, on its own port, which a test may
    stop and start (the machine's own server on 5432 is never touched)."""

    datadir: Path
    port: int
    pg_ctl: str
    run_as: Sequence[str]
    #: Extra server options (``-c fsync=off`` where durability is not what is tested).
    options: str = ""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.run_as, self.pg_ctl, "-D", str(self.datadir), "-w", "-t", "30", *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} {self.options}"
        self._ctl("-o", options.strip(), "-l", str(self.datadir / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")


@contextlib.contextmanager
def open_cluster(options: str = "") -> Iterator[Cluster]:
    """initdb a cluster into a temporary directory, start it, stop and delete it after."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        raise AssertionError("unreachable")
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            missing("running as root without a postgres user and runuser")
        run_as = [str(runuser), "-u", "postgres", "--"]
    top = Path(tempfile.mkdtemp(prefix="trigear-pg-"))
    datadir = top / "data"
    if run_as:
        shutil.chown(top, "postgres")
    subprocess.run(
        [*run_as, initdb, "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
    )
    cluster = Cluster(datadir, free_port(), pg_ctl, run_as, options)
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop("immediate")
        shutil.rmtree(top, ignore_errors=True)
