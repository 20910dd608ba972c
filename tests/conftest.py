"""Fixtures every test directory may use.  Helpers for real peers: ``tests/peers.py``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from .peers import PG_ADMIN, missing

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Real Gearman servers in subprocesses (``server``, ``gearmand``, ``make_server``), and
#: per-test timeouts that name a hung test and show where its tasks wait.
pytest_plugins = ["tests.server_processes", "tests.timeouts"]


@pytest.fixture(scope="session")
def pg_available() -> None:
    """The machine's PostgreSQL on 127.0.0.1:5432, or a skip (a failure in CI)."""
    try:
        import psycopg
    except ImportError:
        missing("psycopg is not installed")
        return
    try:
        psycopg.connect(PG_ADMIN).close()
    except psycopg.Error as exc:
        missing(f"no PostgreSQL at 127.0.0.1:5432 (user postgres, database test): {exc}")


@pytest.fixture
def pg_url(pg_available: None) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped (with its tables) afterwards."""
    import psycopg

    schema = f"trigear_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
