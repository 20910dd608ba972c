"""``--store`` values: what open_store accepts and the messages for what it does not."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import pytest

from trigear.store import MemoryStore, PostgresStore, SqliteStore, open_store

if TYPE_CHECKING:
    from pathlib import Path


async def test_memory() -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    assert isinstance(open_store("MEMORY"), MemoryStore)


async def test_sqlite_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_store(f"sqlite:{tmp_path}/q.db")
    assert isinstance(absolute, SqliteStore)
    assert absolute.path == str(tmp_path / "q.db")
    assert absolute.description == f"sqlite:{tmp_path}/q.db"

    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:sub/q.db")
    assert isinstance(relative, SqliteStore)
    assert relative.path == str(tmp_path / "sub" / "q.db")

    monkeypatch.setenv("HOME", str(tmp_path))
    home = open_store("sqlite:~/h.db")
    assert isinstance(home, SqliteStore)
    assert home.path == str(tmp_path / "h.db")
    for store in (absolute, relative, home):
        await store.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:", "needs a file path"),
        ("sqlite::memory:", "use memory instead"),
        ("", "unknown store"),
        ("mysql://localhost/q", "unknown store"),
        ("redis://localhost", "unknown store"),
        ("/var/lib/q.db", "unknown store"),
        ("postgresql:dbname=x", "is a URL"),
        ("memory:x", "unknown store"),
    ],
)
def test_rejected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_store(url)
    assert "memory, sqlite:PATH or postgresql://" in str(info.value) or message != "unknown store"


def test_sqlite_directory_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        open_store(f"sqlite:{tmp_path}")


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "PostgreSQL"])
def test_postgres_urls(scheme: str) -> None:
    store = open_store(f"{scheme}://postgres@127.0.0.1:5432/test")
    assert isinstance(store, PostgresStore)
    assert "dbname=test" in store.description


def test_postgres_bad_url() -> None:
    with pytest.raises(ValueError, match="connection string"):
        open_store("postgresql://127.0.0.1/test?no_such_option=1")


def test_postgres_without_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "psycopg" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ValueError, match=r"pip install trigear\[postgresql\]"):
        open_store("postgresql://127.0.0.1/test")
