"""Fixtures for the store suite: one factory per store kind, and PostgreSQL helpers.

PostgreSQL tests use the server at 127.0.0.1:5432 (trust auth, user postgres, database
test), each test in a schema of its own, dropped afterwards.  The outage tests run a
throwaway cluster of their own on another port and never touch that server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from trigear.store import MemoryStore

from ..peers import Cluster, open_cluster

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .store_helpers import StoreFactory


def _factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if kind == "memory":
        return MemoryStore
    if kind == "sqlite":
        from trigear.store import SqliteStore

        path = tmp_path / "jobs.db"
        return lambda: SqliteStore(path, busy_timeout=0.2)
    from trigear.store import PostgresStore

    url: str = request.getfixturevalue("pg_url")
    return lambda: PostgresStore(url, lock_wait=0.2)


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Return a factory; every store it makes uses the same storage (a reopen)."""
    return _factory(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", POSTGRES])
def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Like make_store, for the durable kinds only."""
    return _factory(request.param, request, tmp_path)


# -- a throwaway PostgreSQL cluster -----------------------------------------------------------


@pytest.fixture
def pg_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, which it may stop and start; stopped afterwards."""
    with open_cluster("-c fsync=off") as cluster:
        yield cluster
