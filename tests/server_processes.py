"""Real Gearman servers in subprocesses, on free ports: fixtures for the client and worker
tests (registered by the root conftest as a plugin).

``server`` is parametrized over the three servers the library must work against: C
gearmand (``/usr/sbin/gearmand``), the Perl Gearman::Server (``/usr/bin/gearmand``) and
trigear's own (``python -m trigear``).  The first two are real external peers, so their
parameters carry the ``interop`` mark; trigear's runs in the plain test session.

Async tests marked ``anyio`` run under both backends; pytest-trio's trio mode would also
claim them, so its mark is taken off those.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

import pytest

from .peers import free_port, require_binary

if TYPE_CHECKING:
    from collections.abc import Iterator

C_GEARMAND = "/usr/sbin/gearmand"
PERL_GEARMAND = "/usr/bin/gearmand"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class ServerProcess:
    """A Gearman server in a subprocess, stoppable and restartable on the same port."""

    def __init__(self, kind: str, port: int | None = None) -> None:
        self.kind = kind
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"trigear-{kind}-", suffix=".log")  # noqa: SIM115

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # What each server supports (verified by the interop tests themselves).
    @property
    def legacy(self) -> bool:
        """The Perl server: no GRAB_JOB_UNIQ, WORK_DATA/WARNING, GET_STATUS_UNIQUE, EPOCH."""
        return self.kind == "perl"

    def argv(self) -> list[str]:
        p = str(self.port)
        if self.kind == "gearmand":
            return [require_binary(C_GEARMAND), "-p", p, "-L", "127.0.0.1", "-l", self.log.name]
        if self.kind == "perl":
            return [require_binary(PERL_GEARMAND), "-p", p, "-L", "127.0.0.1"]
        return [sys.executable, "-m", "trigear", "-p", p, "-L", "127.0.0.1", "-l", self.log.name]

    def start(self) -> None:
        try:
            argv = self.argv()
        except BaseException:  # a missing peer's skip: the log file goes with it
            self.log.close()
            raise
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ}
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{argv} did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()


SERVER_KINDS = [
    pytest.param("gearmand", marks=pytest.mark.interop),
    pytest.param("perl", marks=pytest.mark.interop),
    "trigear",
]


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    proc = ServerProcess(str(request.param))
    proc.start()
    yield proc
    proc.close()


@pytest.fixture
def gearmand() -> Iterator[ServerProcess]:
    """A C gearmand (tests using it are marked ``interop``)."""
    proc = ServerProcess("gearmand")
    proc.start()
    yield proc
    proc.close()


@pytest.fixture
def make_server() -> Iterator[type[ServerProcess] | object]:
    """A factory ``make_server(kind)`` of started servers, all stopped at teardown."""
    made: list[ServerProcess] = []

    def make(kind: str) -> ServerProcess:
        proc = ServerProcess(kind)
        made.append(proc)
        proc.start()
        return proc

    yield make
    for proc in made:
        proc.close()
