"""Fixtures for the interop tests: a real trigear process and a fresh gearmand.

Each test gets its own server process on a free port, except where a module asks for
the module-wide pair (``module_servers``): the language tests share one gearmand and one
trigear and keep apart by function name.  A trigear that printed a Traceback or did not
exit 0 on SIGTERM (S21) fails the test (or the module's last test): the server must
survive anything a peer sends.
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


def stop_and_check_trigear(started: list[ServerProc]) -> None:
    """Stop trigear servers; fail if one printed a Traceback or did not exit 0 (S21)."""
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
def start_trigear_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``python -m trigear -p FREEPORT [ARGS]``; stopped and checked afterwards."""
    started: list[ServerProc] = []

    def start(*args: str) -> ServerProc:
        server = start_trigear(tmp_path, *args)
        started.append(server)
        return server

    yield start
    stop_and_check_trigear(started)


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


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProc]]:
    """One gearmand and one trigear for a whole module, started when first asked for."""
    tmp = tmp_path_factory.mktemp("servers")
    started: dict[str, ServerProc] = {}

    class Servers(dict[str, ServerProc]):
        def __missing__(self, kind: str) -> ServerProc:
            if kind == "gearmand":
                server = start_gearmand(tmp, require_binary(GEARMAND))
            elif kind == "trigear":
                server = start_trigear(tmp)
            else:
                raise KeyError(kind)
            started[kind] = self[kind] = server
            return server

    yield Servers()
    if "gearmand" in started:
        stop(started["gearmand"].proc)
    stop_and_check_trigear([s for k, s in started.items() if k == "trigear"])
