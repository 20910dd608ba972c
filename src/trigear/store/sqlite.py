"""The SQLite store: one file, WAL journal, one connection on one dedicated thread.

Durability choice: ``journal_mode=WAL`` with ``synchronous=FULL`` (the default here).  In
WAL mode a committed transaction sits in the ``-wal`` file; with ``FULL`` SQLite fsyncs
that file before ``COMMIT`` returns, so a batch whose commit returned -- and therefore
every JOB_CREATED sent for it (S19) -- survives ``kill -9`` of the server *and* an OS
crash or power cut.  ``synchronous="NORMAL"`` skips that fsync: still safe against a
killed process (the data is in the OS page cache, which outlives the process), but the
last commits before a power cut may roll back.  Group commit makes the fsync cheap per
job, so FULL is the default and NORMAL is opt-in.

The connection runs in ``locking_mode=EXCLUSIVE``: the first write takes the database
lock and keeps it until the store closes, so a second server pointed at the same file
fails at start (``StoreError``) instead of replaying the same jobs and reusing handles.
(Side effect: no other process can read the file while the server runs; stop the server,
or copy the file, to inspect it.)

Schema (version 1)::

    CREATE TABLE jobs (
        seq        INTEGER PRIMARY KEY,   -- rowid, grows with each insert: original order
        handle     BLOB NOT NULL UNIQUE,  -- the key; uniques may repeat or be empty (S19)
        function   BLOB NOT NULL,
        unique_key BLOB NOT NULL,
        data       BLOB NOT NULL,
        priority   INTEGER NOT NULL,      -- 0 high, 1 normal, 2 low
        run_at     INTEGER,               -- SUBMIT_JOB_EPOCH time, else NULL
        reducer    BLOB,                  -- SUBMIT_REDUCE_JOB_BACKGROUND, else NULL
        attempts   INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    -- rows: schema_version = 1, last_handle_number = N
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING, Literal, TypeVar

from ._thread import ThreadedStore
from .base import LoadResult, StoreError
from .rows import SELECT_LIST, UPDATE_FROM_EXCLUDED, from_row, to_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .base import StoredJob

__all__ = ["SqliteStore"]

T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq        INTEGER PRIMARY KEY,
    handle     BLOB NOT NULL UNIQUE,
    function   BLOB NOT NULL,
    unique_key BLOB NOT NULL,
    data       BLOB NOT NULL,
    priority   INTEGER NOT NULL,
    run_at     INTEGER,
    reducer    BLOB,
    attempts   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Adding a handle the store already holds replaces its fields and keeps its place.
_INSERT = f"""
INSERT INTO jobs ({SELECT_LIST}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (handle) DO UPDATE SET {UPDATE_FROM_EXCLUDED}
"""
_SET_ATTEMPTS = "UPDATE jobs SET attempts = ? WHERE handle = ?"
_DELETE = "DELETE FROM jobs WHERE handle = ?"
_HIGH_WATER = """
INSERT INTO meta (key, value) VALUES ('last_handle_number', ?)
ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)
"""
_LOAD_JOBS = f"SELECT {SELECT_LIST} FROM jobs ORDER BY seq"

# Errors after which the connection is reopened rather than reused: the file or the
# filesystem under it changed, and a fresh open sees the repaired state.
_REOPEN_AFTER = ("SQLITE_IOERR", "SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN")
_REOPEN_AFTER_READONLY = "SQLITE_READONLY"


def _describe(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else f"{exc} ({type(exc).__name__})"


class SqliteStore(ThreadedStore):
    """Background jobs in an SQLite file (see the module docstring for the guarantees)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.description = f"sqlite:{self.path}"
        super().__init__(f"trigear-sqlite:{self.path}")
        self._conn: sqlite3.Connection | None = None

    # -- on the database thread -----------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            folder = os.path.dirname(self.path)
            raise StoreError(
                f"{self.description}: cannot open the database: {_describe(exc)}"
                f" (does {folder} exist, and may this user write there?)"
            ) from exc
        try:
            # EXCLUSIVE before the first WAL access: no shared-memory index, and the lock
            # taken by BEGIN IMMEDIATE below is held for the life of the connection.
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.description}: cannot use WAL journal (got {mode})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            self._create_schema(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            conn.close()
            if isinstance(exc, StoreError):
                raise
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise StoreError(
                    f"{self.description}: the database is locked; is another trigear "
                    f"server using it? ({_describe(exc)})"
                ) from exc
            if isinstance(exc, Exception):
                raise StoreError(
                    f"{self.description}: cannot open the database: {_describe(exc)}"
                ) from exc
            raise
        self._conn = conn
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        # executescript() would COMMIT first; run the statements one by one instead.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.description}: schema version {version}, this trigear knows {SCHEMA_VERSION}"
            )

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _fail(self, conn: sqlite3.Connection, exc: Exception, what: str) -> StoreError:
        """Undo what the failed transaction did; reopen later if the connection is suspect."""
        reopen = False
        name = str(getattr(exc, "sqlite_errorname", ""))
        if name.startswith(_REOPEN_AFTER) or name.startswith(_REOPEN_AFTER_READONLY):
            reopen = True
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                reopen = True
        if reopen:
            self._close_connection()
        return StoreError(f"{self.description}: {what} failed: {_describe(exc)}")

    def _load(self) -> LoadResult:
        conn = self._open()
        try:
            jobs = [from_row(row) for row in conn.execute(_LOAD_JOBS)]
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_handle_number'").fetchone()
        except Exception as exc:
            raise self._fail(conn, exc, "load") from exc
        return LoadResult(jobs, row[0] if row else 0)

    def _commit(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> None:
        conn = self._open()
        try:
            conn.execute("BEGIN IMMEDIATE")
            if add:
                conn.executemany(_INSERT, [to_row(j) for j in add])
            if attempts:
                conn.executemany(_SET_ATTEMPTS, [(n, bytes(h)) for h, n in attempts])
            if remove:
                conn.executemany(_DELETE, [(bytes(h),) for h in remove])
            conn.execute(_HIGH_WATER, (last_handle_number,))
            conn.execute("COMMIT")
        except Exception as exc:
            raise self._fail(conn, exc, "commit") from exc
