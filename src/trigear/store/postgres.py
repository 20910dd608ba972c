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
ago to notice), so two unnamed servers cannot use the same tables at once.  Several
servers may share a database with different table prefixes or schemas
(``?options=-csearch_path%3Dname`` in the URL).  A server with a ``name`` is a member of
the store's cluster instead: it takes that lock shared, and one for its name, owns the
rows it creates and is fenced by an epoch (:mod:`trigear.store.cluster`).

Schema (version 2), created if missing, table names prefixed ``trigear_`` by default.
Version 1 had no ``owner`` and ``adopted`` columns and no servers table; a version 1
store is migrated in place on the first connect (its rows belong to nobody until the
first member takes them; an unnamed server works on every row)::

    CREATE TABLE trigear_jobs (
        handle     bytea PRIMARY KEY,     -- the key; uniques may repeat or be empty (S19)
        seq        bigint GENERATED ALWAYS AS IDENTITY UNIQUE,  -- original order
        function   bytea NOT NULL,
        unique_key bytea NOT NULL,
        data       bytea NOT NULL,
        priority   smallint NOT NULL,     -- 0 high, 1 normal, 2 low
        run_at     bigint,                -- SUBMIT_JOB_EPOCH time, else NULL
        reducer    bytea,                 -- SUBMIT_REDUCE_JOB_BACKGROUND, else NULL
        attempts   integer NOT NULL DEFAULT 0,
        owner      text NOT NULL DEFAULT '',      -- the member that holds the job
        adopted    boolean NOT NULL DEFAULT false -- given to owner, not yet taken in
    );
    CREATE INDEX trigear_jobs_adopted ON trigear_jobs (owner) WHERE adopted;
    CREATE UNIQUE INDEX trigear_jobs_live_unique ON trigear_jobs (function, unique_key)
        WHERE unique_key NOT IN ('', '-') AND owner <> '';  -- members: one job per unique
    CREATE TABLE trigear_meta (key text PRIMARY KEY, value bigint NOT NULL);
    -- rows: schema_version = 2, last_handle_number = N (of the unnamed server)
    CREATE TABLE trigear_servers (
        name        text PRIMARY KEY,     -- --name: the host part of its handles
        address     text NOT NULL,        -- host:port clients use
        lock_key    bigint NOT NULL,      -- its name lock
        epoch       bigint NOT NULL,      -- bumped on each start and by an adopter
        up          boolean NOT NULL,     -- false once adopted
        pid integer, host text, started timestamptz,
        heartbeat   timestamptz NOT NULL,
        last_handle bigint NOT NULL DEFAULT 0  -- its handle high-water mark
    );
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypeVar

from ._thread import ThreadedStore
from .base import LoadResult, StoreError
from .cluster import FencedError, Membership, TickResult
from .rows import SELECT_LIST, UPDATE_FROM_EXCLUDED, from_row, to_row

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import psycopg

    from .base import StoredJob

__all__ = ["MISSING_PSYCOPG", "PostgresStore"]

T = TypeVar("T")

SCHEMA_VERSION = 2
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
        name: str | None = None,
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
        self.servers_table = f"{table_prefix}servers"
        #: Set for a member of the store's cluster (a server with ``--name``).
        self.member: Membership | None = None
        if name is not None:
            if not name or len(name) > 40 or any(c in name for c in ":\0 "):
                raise ValueError(f"a server name is 1-40 characters without ':': {name!r}")
            self.member = Membership(name, f"{table_prefix}", self.servers_table, self.jobs_table)
        shown = " ".join(
            f"{k}={params[k]}" for k in ("host", "port", "dbname", "user") if params.get(k)
        )
        self.description = f"postgresql {shown or '(libpq defaults)'} table {self.jobs_table}"
        if name is not None:
            self.description += f", server name {name}"
        super().__init__(f"trigear-postgres:{self.jobs_table}")
        self._conn: psycopg.Connection[Any] | None = None
        jobs, meta, servers = self.jobs_table, self.meta_table, self.servers_table
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
        # Version 1 -> 2: owners, adoption flags, the servers table.
        self._sql_migrate = [
            f"ALTER TABLE {jobs} ADD COLUMN IF NOT EXISTS owner text NOT NULL DEFAULT ''",
            f"ALTER TABLE {jobs} ADD COLUMN IF NOT EXISTS adopted boolean NOT NULL DEFAULT false",
            f"CREATE INDEX IF NOT EXISTS {jobs}_adopted ON {jobs} (owner) WHERE adopted",
            # One live background job per (function, unique) across every server: a
            # submit whose unique lives on another server joins that job.
            f"""CREATE UNIQUE INDEX IF NOT EXISTS {jobs}_live_unique
                ON {jobs} (function, unique_key)
                WHERE unique_key NOT IN ('', '-') AND owner <> ''""",
            f"""CREATE TABLE IF NOT EXISTS {servers} (
                name        text PRIMARY KEY,
                address     text NOT NULL,
                lock_key    bigint NOT NULL,
                epoch       bigint NOT NULL,
                up          boolean NOT NULL,
                pid         integer,
                host        text,
                started     timestamptz,
                heartbeat   timestamptz NOT NULL,
                last_handle bigint NOT NULL DEFAULT 0)""",
            f"UPDATE {meta} SET value = 2 WHERE key = 'schema_version' AND value = 1",
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
        # A member writes only its own rows: an adopter's rows are never overwritten.
        self._sql_member_insert = f"""
            INSERT INTO {jobs} ({SELECT_LIST}, owner)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (handle) DO UPDATE SET {UPDATE_FROM_EXCLUDED}
            WHERE {jobs}.owner = excluded.owner"""
        self._sql_member_attempts = (
            f"UPDATE {jobs} SET attempts = %s WHERE handle = %s AND owner = %s"
        )
        self._sql_member_delete = f"DELETE FROM {jobs} WHERE handle = ANY(%s) AND owner = %s"
        # A member's job: stored unless its handle, or a live job with its unique, is
        # there already (then the submit joins that job; see _insert_owned).
        self._sql_keyed_insert = f"""
            INSERT INTO {jobs} ({SELECT_LIST}, owner)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING RETURNING handle"""
        self._sql_holder = (
            f"SELECT handle FROM {jobs} WHERE function = %s AND unique_key = %s AND owner <> ''"
        )
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
                # Unnamed servers take the tables' lock exclusively, members shared: the
                # two kinds never run on one table set.
                shared = "_shared" if self.member is not None else ""
                try:
                    cur.execute(
                        f"SELECT pg_advisory_lock{shared}(hashtextextended("
                        "'trigear:' || current_schema() || '.' || %s, 0))",
                        (self.jobs_table,),
                    )
                except pg.errors.LockNotAvailable as exc:
                    raise StoreError(
                        f"{self.description}: another trigear server is using these tables"
                        " (advisory lock held); give each server its own table prefix or"
                        " schema, or give every server a --name"
                    ) from exc
                if self.member is not None:
                    try:
                        self.member.lock(cur, pg)
                    except StoreError as exc:
                        raise StoreError(f"{self.description}: {exc}") from exc
                # One setup at a time: members start side by side on one table set.
                cur.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended("
                    "'trigear-setup:' || current_schema() || '.' || %s, 0))",
                    (self.jobs_table,),
                )
                for statement in self._sql_schema:
                    cur.execute(statement)
                meta = self.meta_table
                cur.execute(
                    f"INSERT INTO {meta} (key, value) VALUES ('schema_version', 1)"
                    " ON CONFLICT (key) DO NOTHING",
                )
                cur.execute(self._sql_meta, ("schema_version",))
                (version,) = cur.fetchone() or (None,)
                if version == 1:
                    for statement in self._sql_migrate:
                        cur.execute(statement)
                    version = SCHEMA_VERSION
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

    def _fail(self, conn: psycopg.Connection[Any], exc: Exception | None) -> bool:
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
                if self.member is not None:
                    jobs, last = self.member.join(cur, _psycopg())
                else:
                    cur.execute(self._sql_load)
                    jobs = [from_row(row) for row in cur.fetchall()]
                    cur.execute(self._sql_meta, ("last_handle_number",))
                    row = cur.fetchone()
                    last = int(row[0]) if row else 0
            conn.commit()
        except Exception as exc:
            self._fail(conn, exc)
            raise StoreError(f"{self.description}: load failed: {_describe(exc)}") from exc
        return LoadResult(jobs, last)

    def _write(
        self,
        cur: psycopg.Cursor[Any],
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> dict[bytes, bytes]:
        """One batch; returns the adds that joined a live job with their unique on
        another handle (not stored), as {handle: the live job's handle}."""
        member = self.member
        if member is not None:
            # Fenced first: the servers row lock orders this commit and any adoption.
            member.fence(cur, last_handle_number)
        me = "" if member is None else member.name
        # Removals go first, so that a job ended in this batch frees its unique for a
        # job added in it; a handle both added and removed is removed last (Store).
        added = {bytes(j.handle) for j in add}
        early = [bytes(h) for h in remove if bytes(h) not in added]
        late = [bytes(h) for h in remove if bytes(h) in added]
        self._delete(cur, early, member is not None)
        # In the given order (it is the order load gives back).
        joined: dict[bytes, bytes] = {}
        if member is None:
            if add:
                cur.executemany(self._sql_insert, [to_row(j) for j in add])
        else:
            self._insert_owned(cur, add, me, joined)
        if attempts:
            if member is None:
                cur.executemany(self._sql_attempts, [(n, bytes(h)) for h, n in attempts])
            else:
                rows = [(n, bytes(h), me) for h, n in attempts]
                cur.executemany(self._sql_member_attempts, rows)
        self._delete(cur, late, member is not None)
        if member is None:
            cur.execute(self._sql_high_water, (last_handle_number,))
        return joined

    def _delete(self, cur: psycopg.Cursor[Any], handles: list[bytes], owned: bool) -> None:
        if handles and owned:
            assert self.member is not None
            cur.execute(self._sql_member_delete, (handles, self.member.name))
        elif handles:
            cur.execute(self._sql_delete, (handles,))

    def _insert_owned(
        self,
        cur: psycopg.Cursor[Any],
        jobs: Sequence[StoredJob],
        me: str,
        joined: dict[bytes, bytes],
    ) -> None:
        """A member's adds, in one pipelined statement: each row is stored unless its
        handle or its (function, unique) is taken.  A row whose unique is live on another
        handle (of any member) joins that job: {its handle: that handle} in ``joined``.
        A row whose own handle exists is rewritten, as any add.  (An unnamed server keys
        by handle only: the same unique may be stored twice, S19.)"""
        if not jobs:
            return
        rows = [(*to_row(j), me) for j in jobs]
        cur.executemany(self._sql_keyed_insert, rows, returning=True)
        stored: set[bytes] = set()
        while True:
            got = cur.fetchone()
            if got is not None:
                stored.add(bytes(got[0]))
            if not cur.nextset():
                break
        for row in rows:
            if row[0] in stored:
                continue
            holder = None
            if row[2] not in (b"", b"-"):
                cur.execute(self._sql_holder, (row[1], row[2]))
                holder = cur.fetchone()
            if holder is not None and bytes(holder[0]) != row[0]:
                joined[row[0]] = bytes(holder[0])
            else:
                cur.execute(self._sql_member_insert, row)

    def _commit(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> dict[bytes, bytes]:
        return self._transaction(
            lambda cur: self._write(cur, add, remove, attempts, last_handle_number), "commit"
        )

    def _tick(self, last_handle_number: int) -> TickResult:
        member = self.member
        assert member is not None
        return self._transaction(lambda cur: member.tick(cur, last_handle_number), "tick")

    def _transaction(self, body: Callable[[psycopg.Cursor[Any]], T], what: str) -> T:
        """Run ``body`` in one transaction; retry once on a connection found dead before
        COMMIT was sent."""
        for retry in (True, False):
            conn = self._connect()
            committing = False
            try:
                with conn.cursor() as cur:
                    result = body(cur)
                committing = True
                conn.commit()
                return result
            except FencedError:
                self._fail(conn, None)
                raise
            except Exception as exc:
                lost = self._fail(conn, exc)
                if lost and retry and not committing:
                    continue  # died before COMMIT was sent: nothing applied, try once more
                unknown = " (connection lost during COMMIT: it may have been applied)"
                raise StoreError(
                    f"{self.description}: {what} failed: {_describe(exc)}"
                    + (unknown if lost and committing else "")
                ) from exc
        raise AssertionError("unreachable")

    # -- the cluster (members only) -----------------------------------------------------------

    async def commit_joining(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> dict[bytes, bytes]:
        """:meth:`commit`, and the adds that were not stored because a live job of any
        server sharing the store has their (function, unique): {handle: its handle}."""
        return await self._run(lambda: self._commit(add, remove, attempts, last_handle_number))

    async def tick(self, last_handle_number: int) -> TickResult:
        """Heartbeat, find dead members and adopt their rows; return the rows adopted for
        this server.  Raise :class:`FencedError` if this server was taken over."""
        return await self._run(lambda: self._tick(last_handle_number))

    async def rejoin(self) -> LoadResult:
        """After :class:`FencedError`: join again under a new epoch (loading the rows
        this server still owns, if any)."""
        return await self._run(self._load)
