"""Fixtures for the durability tests (S19): a Server on a real durable store, restartable
on the same storage, and peers on in-memory connections.

PostgreSQL tests use the server at 127.0.0.1:5432 (trust auth, user postgres, database
test), each test in a schema of its own, dropped afterwards.  Outage tests run a
throwaway cluster of their own on another port (see ``pg_cluster``).

Most tests run on trio's real clock: the stores commit on an OS thread, and pytest-trio's
``autojump_clock`` would treat a task waiting for that thread as idle and jump the clock
mid-commit.  Tests that need virtual time use ``slow_autojump_clock``, which only jumps
after a real pause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from trigear.server import ServerConfig

from ..peers import Cluster, open_cluster
from .durable_helpers import Gate, GatedPostgresStore, GatedSqliteStore, Running, StoreFactory

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from trigear.store import Store

POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["sqlite", POSTGRES])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def make_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, gate: Gate
) -> StoreFactory:
    """A factory of gated stores on one storage: each call is a reopen."""
    if kind == "sqlite":
        path = tmp_path / "jobs.db"

        def sqlite() -> Store:
            store = GatedSqliteStore(path, busy_timeout=0.5)
            store.gate = gate
            return store

        return sqlite
    url: str = request.getfixturevalue("pg_url")

    def postgres() -> Store:
        store = GatedPostgresStore(url, lock_wait=2)
        store.gate = gate
        return store

    return postgres


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(job_handle_prefix="dur")


@pytest.fixture
async def running(nursery: trio.Nursery, make_store: StoreFactory, config: ServerConfig) -> Running:
    r = Running(nursery, make_store, config)
    await r.start()
    return r


@pytest.fixture
def slow_autojump_clock() -> trio.testing.MockClock:
    """Virtual time that jumps only after 0.3 s of real idleness (see the module doc)."""
    return trio.testing.MockClock(autojump_threshold=0.3)


# --- a throwaway PostgreSQL cluster -------------------------------------------------------------


@pytest.fixture
def pg_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, which it may stop and start; stopped afterwards."""
    with open_cluster() as cluster:
        yield cluster
