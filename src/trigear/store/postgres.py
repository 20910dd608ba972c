"""The PostgreSQL store: psycopg 3, one sync connection on one dedicated thread.

psycopg's async connection needs an asyncio loop and does not run under Trio, so the
store drives a sync connection from its own thread (see ``_thread.py``).  Each
:meth:`PostgresStore.commit` is one transaction; ``COMMIT`` returns once PostgreSQL has
flushed its WAL (``synchronous_commit = on``, PostgreSQL's default: do not turn it off
for the server's role if acknowledged jobs must survive a database crash).

When the database goes away, the commit in progress raises :class:`StoreError`, the
connection is dropped, and the next call connects again: commits fail while the database
is down and work again once it is back.  A connection found dead *before* ``COMMIT`` was
sent is replaced and the batch retried once at once (nothing of it can have been
applied); when the connection dies during ``COMMIT`` itself the outcome is unknown, and
the batch is reported failed (it may still have been applied: at-least-once).

A session-level advisory lock, keyed by schema and table names, is taken on every
connect (waiting up to ``lock_wait`` seconds, for the backend of a server killed a moment
ago to notice), so two servers cannot use the same tables at once.  Several servers may share a
database with different table prefixes or schemas (``?options=-csearch_path%3Dname`` in
the URL).

Schema (version 1), created if missing, table names prefixed ``trigear_`` by default::

    CREATE TABLE trigear_jobs (
        handle     bytea PRIMARY KEY,     -- the key; uniques may repeat or be empty (S19)
        seq        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- original order
        function   bytea NOT NULL,
        unique_key bytea NOT NULL,
        data       bytea NOT NULL,
        priority   smallint NOT NULL,     -- 0 high, 1 normal, 2 low
        run_at     bigint,                -- SUBMIT_JOB_EPOCH time, else NULL
        reducer    bytea,                 -- SUBMIT_REDUCE_JOB_BACKGROUND, else NULL
        attempts   integer NOT NULL DEFAULT 0
    );
    CREATE TABLE trigear_meta (key text PRIMARY KEY, value bigint NOT NULL);
    -- rows: schema_version = 1, last_handle_number = N
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypeVar

from ._thread import ThreadedStore
from .base import LoadResult, StoreError
from .rows import SELECT_LIST, UPDATE_FROM_EXCLUDED, from_row, to_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

    from .base import StoredJob

__all__ = ["MISSING_PSYCOPG", "PostgresStore"]

T = TypeVar("T")

SCHEMA_VERSION = 1
MISSING_PSYCOPG = "the PostgreSQL store needs psycopg 3: pip install trigear[postgresql]"
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}\Z")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise ImportError(MISSING_PSYCOPG) from exc
    return psycopg


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{text} ({type(exc).__name__})"


class PostgresStore(ThreadedStore):
    """Background jobs in PostgreSQL tables (see the module docstring for the guarantees)."""

    def __init__(
        self,
        conninfo: str,
        *,
        table_prefix: str = "trigear_",
        connect_timeout: int = 10,
        lock_wait: float = 5.0,
    ) -> None:
        pg = _psycopg()
        if not _PREFIX.match(table_prefix):
            raise ValueError(f"table prefix must match {_PREFIX.pattern}: {table_prefix!r}")
        try:
            params = pg.conninfo.conninfo_to_dict(conninfo)
        except pg.Error as exc:
            raise ValueError(f"bad PostgreSQL connection string: {_describe(exc)}") from exc
        params.setdefault("connect_timeout", connect_timeout)
        params.setdefault("application_name", "trigear")
        self._conninfo: str = pg.conninfo.make_conninfo(**params)
        self.table_prefix = table_prefix
        self.lock_wait = lock_wait
        self.jobs_table = f"{table_prefix}jobs"
        self.meta_table = f"{table_prefix}meta"
        shown = " ".join(
            f"{k}={params[k]}" for k in ("host", "port", "dbname", "user") if params.get(k)
        )
        self.description = f"postgresql {shown or '(libpq defaults)'} table {self.jobs_table}"
        super().__init__(f"trigear-postgres:{self.jobs_table}")
        self._conn: psycopg.Connection[Any] | None = None
        jobs, meta = self.jobs_table, self.meta_table
        self._sql_schema = [
            f"""CREATE TABLE IF NOT EXISTS {jobs} (
                handle     bytea PRIMARY KEY,
                seq        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                function   bytea NOT NULL,
                unique_key bytea NOT NULL,
                data       bytea NOT NULL,
                priority   smallint NOT NULL,
                run_at     bigint,
                reducer    bytea,
                attempts   integer NOT NULL DEFAULT 0)""",
            f"CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value bigint NOT NULL)",
        ]
        # Adding a handle the store already holds replaces its fields and keeps its place.
        self._sql_insert = f"""
            INSERT INTO {jobs} ({SELECT_LIST}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (handle) DO UPDATE SET {UPDATE_FROM_EXCLUDED}"""
        self._sql_attempts = f"UPDATE {jobs} SET attempts = %s WHERE handle = %s"
        self._sql_delete = f"DELETE FROM {jobs} WHERE handle = ANY(%s)"
        self._sql_high_water = f"""
            INSERT INTO {meta} (key, value) VALUES ('last_handle_number', %s)
            ON CONFLICT (key) DO UPDATE SET value = GREATEST({meta}.value, EXCLUDED.value)"""
        self._sql_load = f"SELECT {SELECT_LIST} FROM {jobs} ORDER BY seq"
        self._sql_meta = f"SELECT value FROM {meta} WHERE key = %s"

    # -- on the database thread -----------------------------------------------------------

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._close_connection()
        pg = _psycopg()
        try:
            conn: psycopg.Connection[Any] = pg.connect(self._conninfo, autocommit=False)
        except pg.Error as exc:
            raise StoreError(f"{self.description}: cannot connect: {_describe(exc)}") from exc
        try:
            with conn.cursor() as cur:
                # Wait a little for the lock: the backend of a server killed a moment
                # ago holds it until it notices its client is gone.
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, true)",
                    (f"{int(self.lock_wait * 1000)}ms",),
                )
                try:
                    cur.execute(
                        "SELECT pg_advisory_lock(hashtextextended("
                        "'trigear:' || current_schema() || '.' || %s, 0))",
                        (self.jobs_table,),
                    )
                except pg.errors.LockNotAvailable as exc:
                    raise StoreError(
                        f"{self.description}: another trigear server is using these tables"
                        " (advisory lock held); give each server its own table prefix or"
                        " schema"
                    ) from exc
                for statement in self._sql_schema:
                    cur.execute(statement)
                meta = self.meta_table
                cur.execute(
                    f"INSERT INTO {meta} (key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO NOTHING",
                    (SCHEMA_VERSION,),
                )
                cur.execute(self._sql_meta, ("schema_version",))
                (version,) = cur.fetchone() or (None,)
                if version != SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.description}: schema version {version}, this trigear knows "
                        f"{SCHEMA_VERSION}"
                    )
            conn.commit()
        except BaseException as exc:
            conn.close()
            if isinstance(exc, pg.Error):
                raise StoreError(
                    f"{self.description}: cannot set up the tables: {_describe(exc)}"
                ) from exc
            raise
        self._conn = conn
        return conn

    def _fail(self, conn: psycopg.Connection[Any], exc: Exception) -> bool:
        """Undo the failed transaction; drop the connection when it is unusable.  Return
        True when the connection was lost."""
        lost = conn.broken or conn.closed
        if not lost:
            try:
                conn.rollback()
            except Exception:
                lost = True
        if lost:
            self._close_connection()
        return bool(lost)

    def _load(self) -> LoadResult:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(self._sql_load)
                jobs = [from_row(row) for row in cur.fetchall()]
                cur.execute(self._sql_meta, ("last_handle_number",))
                row = cur.fetchone()
            conn.commit()
        except Exception as exc:
            self._fail(conn, exc)
            raise StoreError(f"{self.description}: load failed: {_describe(exc)}") from exc
        return LoadResult(jobs, int(row[0]) if row else 0)

    def _commit(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> None:
        rows = [to_row(j) for j in add]
        for retry in (True, False):
            conn = self._connect()
            committing = False
            try:
                with conn.cursor() as cur:
                    if rows:
                        cur.executemany(self._sql_insert, rows)
                    if attempts:
                        cur.executemany(self._sql_attempts, [(n, bytes(h)) for h, n in attempts])
                    if remove:
                        cur.execute(self._sql_delete, ([bytes(h) for h in remove],))
                    cur.execute(self._sql_high_water, (last_handle_number,))
                committing = True
                conn.commit()
                return
            except Exception as exc:
                lost = self._fail(conn, exc)
                if lost and retry and not committing:
                    continue  # died before COMMIT was sent: nothing applied, try once more
                unknown = " (connection lost during COMMIT: it may have been applied)"
                raise StoreError(
                    f"{self.description}: commit failed: {_describe(exc)}"
                    + (unknown if lost and committing else "")
                ) from exc
