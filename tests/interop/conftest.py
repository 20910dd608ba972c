"""Fixtures for the interop tests: a real trigear process and a fresh gearmand.

Each test gets its own server process on a free port.  The trigear fixture fails the
test when the server printed a Traceback or did not exit 0 on SIGTERM (S21): the server
must survive anything a peer sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from ..peers import require_binary
from .interop_helpers import GEARMAND, ServerProc, start_gearmand, start_trigear, stop

if TYPE_CHECKING:
    from pathlib import Path

StartServer = Callable[..., ServerProc]


@pytest.fixture
def start_trigear_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``python -m trigear -p FREEPORT [ARGS]``; stopped and checked afterwards."""
    started: list[ServerProc] = []

    def start(*args: str) -> ServerProc:
        server = start_trigear(tmp_path, *args)
        started.append(server)
        return server

    yield start
    problems = []
    for server in started:
        rc = stop(server.proc)
        out = server.output()
        if "Traceback" in out:
            problems.append(f"trigear on port {server.port} printed a Traceback:\n{out}")
        elif rc != 0:
            problems.append(f"trigear on port {server.port} exited {rc} on SIGTERM:\n{out}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def trigear(start_trigear_server: StartServer) -> ServerProc:
    return start_trigear_server()


@pytest.fixture
def start_gearmand_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start a fresh ``/usr/sbin/gearmand`` (the C server) on a free port."""
    binary = require_binary(GEARMAND)
    started: list[ServerProc] = []

    def start(*args: str) -> ServerProc:
        server = start_gearmand(tmp_path, binary, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        stop(server.proc)


@pytest.fixture
def gearmand(start_gearmand_server: StartServer) -> ServerProc:
    return start_gearmand_server()


@pytest.fixture
def cli_tools() -> None:
    """The ``gearman`` and ``gearadmin`` programs (gearman-tools)."""
    require_binary("gearman")
    require_binary("gearadmin")
