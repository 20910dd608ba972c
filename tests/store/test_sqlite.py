"""SQLite store: pragmas, and failures of the disk under it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from typing import TYPE_CHECKING

import pytest

from trigear.store import SqliteStore, StoreError

from ..peers import missing
from .store_helpers import job

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_rejects_unknown_synchronous(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="FULL or NORMAL"):
        SqliteStore(tmp_path / "q.db", synchronous="OFF")  # type: ignore[arg-type]


async def test_pragmas_and_schema(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "q.db")
    assert store.description == f"sqlite:{tmp_path / 'q.db'}"
    await store.load()

    def pragmas(store: SqliteStore) -> tuple[str, int, str]:
        conn = store._conn
        assert conn is not None
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA locking_mode").fetchone()[0],
        )

    assert await store._run(lambda: pragmas(store)) == ("wal", 2, "exclusive")  # 2 = FULL
    await store.aclose()

    normal = SqliteStore(tmp_path / "q.db", synchronous="NORMAL")
    await normal.load()
    assert (await normal._run(lambda: pragmas(normal)))[1] == 1
    await normal.aclose()

    # The file is an ordinary SQLite database once the server has stopped.
    with contextlib.closing(sqlite3.connect(tmp_path / "q.db")) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"jobs", "meta"}
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (1,)


async def test_relative_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqliteStore("rel.db")
    assert store.path == str(tmp_path / "rel.db")
    await store.commit([job(1)], [], [], 1)
    await store.aclose()
    assert (tmp_path / "rel.db").exists()


async def test_missing_directory_fails_until_it_exists(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "not" / "yet" / "q.db")
    with pytest.raises(StoreError, match="cannot open"):
        await store.load()
    with pytest.raises(StoreError, match="cannot open"):
        await store.commit([job(1)], [], [], 1)
    (tmp_path / "not" / "yet").mkdir(parents=True)
    assert (await store.load()).jobs == []
    await store.commit([job(1)], [], [], 1)
    await store.aclose()


async def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "q.db").write_bytes(b"this is not an sqlite file" * 100)
    store = SqliteStore(tmp_path / "q.db")
    with pytest.raises(StoreError, match="SQLITE_NOTADB"):
        await store.load()
    await store.aclose()


async def test_disk_full_fails_the_batch_and_recovers(tmp_path: Path) -> None:
    """SQLITE_FULL, from a page limit on the connection (a real SQLite failure path)."""
    store = SqliteStore(tmp_path / "q.db")
    await store.commit([job(1)], [], [], 1)

    def limit(pages: int | None) -> None:
        conn = store._conn
        assert conn is not None
        if pages is None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await store._run(lambda: limit(None))
    big = [job(i, data=b"x" * 4000) for i in range(2, 50)]
    for _ in range(2):  # keeps failing while the disk is full
        with pytest.raises(StoreError, match="SQLITE_FULL"):
            await store.commit(big, [b"H:test:1"], [], 49)
    await store._run(lambda: limit(1_000_000))
    assert (await store.load()).jobs == [job(1)]
    await store.commit(big, [], [], 49)
    await store.aclose()

    reopened = SqliteStore(tmp_path / "q.db")
    loaded = await reopened.load()
    await reopened.aclose()
    assert loaded.jobs == [job(1), *big]
    assert loaded.last_handle_number == 49


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own; mounting it needs root, which CI has."""
    where = tmp_path / "fs"
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "trigear-test", str(where)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        missing(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


async def test_real_full_filesystem(tiny_filesystem: Path) -> None:
    """ENOSPC from a full 1 MiB tmpfs: the batch fails, the store recovers once space is
    freed, and nothing of the failed batch is stored."""
    fs = tiny_filesystem
    store = SqliteStore(fs / "q.db")
    try:
        await store.commit([job(1)], [], [], 1)
        filler = fs / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        big = [job(i, data=os.urandom(2000)) for i in range(2, 200)]
        with pytest.raises(StoreError, match=r"SQLITE_FULL|SQLITE_IOERR"):
            await store.commit(big, [], [], 199)
        filler.unlink()
        await store.commit(big[:50], [], [], 51)
    finally:
        await store.aclose()
    reopened = SqliteStore(fs / "q.db")
    loaded = await reopened.load()
    await reopened.aclose()
    assert loaded.jobs == [job(1), *big[:50]]
    assert loaded.last_handle_number == 51
