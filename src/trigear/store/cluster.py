"""Several servers on one PostgreSQL store: names, epochs, fencing, death and adoption.

A server started with a name (``--name s1``) is a *member* of the store's cluster.  It
owns the rows it creates (``owner`` on every job row) and works only on them; the other
members work on theirs, on the same tables, at the same time.  What keeps them apart:

* **One live server per name.**  A member holds a session-level advisory lock keyed by
  its name (and the tables) for as long as its database session lives.  A second
  server with the same name waits ``lock_wait`` seconds for it and then refuses to
  start.  Members also hold the tables' lock *shared*, so an unnamed server (which takes
  it exclusively, one server per table set) and members never run on one table set.
* **Epochs.**  Each member has a row in the servers table (name, address clients use,
  epoch, process, heartbeat, handle high-water mark).  Joining bumps the epoch and
  remembers it.  Every transaction of the member starts with
  ``UPDATE servers SET heartbeat = ... WHERE name = me AND epoch = mine``: zero rows
  means another member took the name's rows over, and the transaction is rolled back
  and raises :class:`FencedError`.  The row lock that UPDATE takes orders a commit and
  an adoption: whichever comes second sees the other's work.  Removals and attempt
  counts are also conditional on ``owner = me``.
* **Death.**  Every member looks at the others about four times a second (:meth:`tick`).
  A member whose name lock has been free for ``grace`` seconds, seen from the looker's
  own live session, is dead.  A PostgreSQL restart drops every session at once: after
  its own session (re)starts, a member gives the others ``reconnect_grace`` seconds to
  reconnect before it believes any lock it sees free.  A frozen member (SIGSTOP, a
  paused VM) keeps its session and its lock: when its heartbeat is ``stale`` seconds old
  its backend is terminated, and it is dead at once (its looker ended it).
* **Adoption.**  The first survivor to see a death takes the dead member's name lock for
  one transaction (so a restart of the dead member waits for it), bumps its epoch
  (fencing it), marks it down and gives each of its rows to a survivor: the one a
  client's :class:`~trigear.client.placement.Placement` over every registered address
  would fail over to for the row's unique (so a later submit with that unique reaches
  the server now holding the job), rows without a unique by a hash of the handle.  The
  rows are flagged ``adopted``; each survivor takes the rows flagged for it at its next
  tick, in their original order, under their original handles.
* **Leases.**  A member may hand jobs to workers only for ``lease`` seconds after its
  last transaction that found its epoch intact (the server enforces it).  The lease is
  shorter than ``grace``: by the time a survivor may adopt a member's rows, that
  member has stopped handing them out, even if it is merely cut off or frozen.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from .._placement import Placement, parse_address
from .base import LoadResult, StoredJob, StoreError
from .rows import SELECT_LIST, from_row

if TYPE_CHECKING:
    from collections.abc import Sequence

    import psycopg

__all__ = [
    "GRACE",
    "LEASE",
    "RECONNECT_GRACE",
    "STALE",
    "Adoption",
    "ClusterStore",
    "FencedError",
    "Member",
    "Membership",
    "TickResult",
    "lock_key",
]

#: Seconds a member's name lock must stay free, seen from a live session, before it is
#: dead.
GRACE: Final = 1.5
#: Seconds a member hands out jobs after its last transaction that found its epoch
#: intact.  Below GRACE, with room for a slow tick.
LEASE: Final = 1.0
#: Seconds after a member's own session (re)started before it believes a lock it sees
#: free: a PostgreSQL restart drops every session, and the others need time to return.
RECONNECT_GRACE: Final = 5.0
#: Seconds without a heartbeat before a member that still holds its lock is ended.
STALE: Final = 10.0
#: Seconds between two ticks.
TICK: Final = 0.25


class FencedError(StoreError):
    """Another server took this server's rows over (its epoch moved): nothing of the
    transaction was applied, and this server must forget the jobs it holds."""


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for ``parts`` (stable across processes)."""
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(slots=True, frozen=True)
class Member:
    """One row of the servers table, as a tick sees it."""

    name: str
    address: str
    up: bool
    epoch: int
    #: Seconds since its last heartbeat, or since the session holding its lock began if
    #: that is later (a member that just reconnected has not heartbeaten yet), by the
    #: database's clock.
    silence: float
    #: The backend holding its name lock, or None when the lock is free.
    holder: int | None


@dataclass(slots=True)
class Adoption:
    """A dead member's rows, shared out by one survivor."""

    victim: str
    #: Rows per new owner.
    shares: dict[str, int]
    #: "lock" (its lock stayed free) or "stale" (frozen: its backend was ended).
    cause: str


@dataclass(slots=True)
class TickResult:
    """What one tick found: rows adopted for this member, adoptions it made."""

    jobs: list[StoredJob] = field(default_factory=list)
    adoptions: list[Adoption] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)


@runtime_checkable
class ClusterStore(Protocol):
    """A store several servers share (the PostgreSQL store).  ``member`` is None for a
    server without a name: then it is a store like any other."""

    member: Membership | None

    async def commit_joining(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> dict[bytes, bytes]:
        """``Store.commit``; returns the adds not stored because a live job (of any
        server) has their function and unique: {handle: that job's handle}."""
        ...

    async def tick(self, last_handle_number: int) -> TickResult:
        """Heartbeat, adopt the rows of dead members; the rows adopted for this server."""
        ...

    async def rejoin(self) -> LoadResult:
        """Join again under a new epoch after :class:`FencedError`."""
        ...


class Membership:
    """A member's cluster state and SQL.  Runs on the store's database thread only,
    with the store's connection (its session holds the name lock)."""

    def __init__(
        self,
        name: str,
        tables: str,
        servers_table: str,
        jobs_table: str,
        *,
        grace: float = GRACE,
        stale: float = STALE,
        reconnect_grace: float = RECONNECT_GRACE,
    ) -> None:
        self.name = name
        #: ``host:port`` clients use for this server; set before joining.
        self.address = ""
        self.epoch = 0
        self.grace = grace
        self.stale = stale
        self.reconnect_grace = reconnect_grace
        self._servers = servers_table
        self._jobs = jobs_table
        self._tables = tables
        self.key = lock_key("trigear-member", tables, name)
        #: monotonic time the current session started (0: none).
        self.session_start = 0.0
        #: False while this server drains for a graceful stop: it adopts nothing.
        self.adopting = True
        #: name -> (session start, monotonic time its lock was first seen free).
        self._free_since: dict[str, tuple[float, float]] = {}
        self.sql_fence = (
            f"UPDATE {servers_table} SET heartbeat = clock_timestamp(),"
            " last_handle = GREATEST(last_handle, %s) WHERE name = %s AND epoch = %s"
        )

    # -- the session ----------------------------------------------------------------------

    def lock(self, cur: psycopg.Cursor[Any], pg: Any) -> None:
        """Take this name's session lock (the caller set ``lock_timeout``)."""
        try:
            cur.execute("SELECT pg_advisory_lock(%s)", (self.key,))
        except pg.errors.LockNotAvailable as exc:
            raise StoreError(
                f"another trigear server named {self.name!r} is running on this store"
                " (its name lock is held); give each server its own --name"
            ) from exc
        self.session_start = time.monotonic()

    def join(self, cur: psycopg.Cursor[Any], pg: Any) -> tuple[list[StoredJob], int]:
        """Register (or come back): bump the epoch, take unowned rows, and return this
        member's rows in their original order and its handle high-water mark."""
        cur.execute(
            f"""INSERT INTO {self._servers}
                    (name, address, lock_key, epoch, up, pid, host, started, heartbeat,
                     last_handle)
                VALUES (%s, %s, %s, 1, true, %s, %s, clock_timestamp(), clock_timestamp(), 0)
                ON CONFLICT (name) DO UPDATE SET epoch = {self._servers}.epoch + 1,
                    up = true, address = EXCLUDED.address, pid = EXCLUDED.pid,
                    host = EXCLUDED.host, started = EXCLUDED.started,
                    heartbeat = EXCLUDED.heartbeat
                RETURNING epoch, last_handle""",
            (self.name, self.address, self.key, os.getpid(), socket.gethostname()),
        )
        row = cur.fetchone()
        assert row is not None
        epoch, last_handle = int(row[0]), int(row[1])
        # Rows of an unnamed server (or of schema version 1) belong to nobody: the first
        # member to start takes them.
        try:
            cur.execute(
                f"UPDATE {self._jobs} SET owner = %s, adopted = false WHERE owner = ''",
                (self.name,),
            )
        except pg.errors.UniqueViolation as exc:
            raise StoreError(
                "rows of an unnamed server hold one unique twice, which servers sharing a"
                " store cannot: run them with an unnamed server first"
            ) from exc
        cur.execute(
            f"UPDATE {self._jobs} SET adopted = false WHERE owner = %s AND adopted",
            (self.name,),
        )
        cur.execute(
            f"SELECT {SELECT_LIST} FROM {self._jobs} WHERE owner = %s ORDER BY seq",
            (self.name,),
        )
        jobs = [from_row(r) for r in cur.fetchall()]
        self.epoch = epoch
        return jobs, last_handle

    def fence(self, cur: psycopg.Cursor[Any], last_handle: int) -> None:
        """The first statement of every transaction: heartbeat, and check the epoch."""
        cur.execute(self.sql_fence, (last_handle, self.name, self.epoch))
        if cur.rowcount != 1:
            raise FencedError(
                f"server {self.name!r} was taken over (epoch {self.epoch} is no longer"
                " current): its jobs now belong to other servers"
            )

    # -- looking at the others ------------------------------------------------------------

    def members(self, cur: psycopg.Cursor[Any]) -> list[Member]:
        cur.execute(
            f"""SELECT s.name, s.address, s.up, s.epoch,
                    extract(epoch FROM clock_timestamp()
                            - GREATEST(s.heartbeat, a.backend_start))::float8,
                    l.pid
                FROM {self._servers} s
                LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted
                    AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
                    AND l.database = (SELECT oid FROM pg_database
                                      WHERE datname = current_database())
                    AND l.classid = ((s.lock_key >> 32) & 4294967295)::oid
                    AND l.objid = (s.lock_key & 4294967295)::oid
                LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                ORDER BY s.name"""
        )
        return [
            Member(str(r[0]), str(r[1]), bool(r[2]), int(r[3]), float(r[4]), r[5])
            for r in cur.fetchall()
        ]

    def tick(self, cur: psycopg.Cursor[Any], last_handle: int) -> TickResult:
        """Heartbeat, look for dead members, adopt, and take rows adopted for this one."""
        now = time.monotonic()
        self.fence(cur, last_handle)
        result = TickResult(members=self.members(cur))
        settled = now - self.session_start >= self.reconnect_grace
        for m in result.members:
            if m.name == self.name or not m.up or not self.adopting:
                self._free_since.pop(m.name, None)
                continue
            cause = None
            if m.holder is None:
                seen = self._free_since.get(m.name)
                if seen is None or seen[0] != self.session_start:
                    self._free_since[m.name] = (self.session_start, now)
                elif settled and now - seen[1] >= self.grace:
                    cause = "lock"
            else:
                self._free_since.pop(m.name, None)
                if settled and m.silence >= self.stale:
                    cur.execute("SELECT pg_terminate_backend(%s, 5000)", (m.holder,))
                    cause = "stale"
            if cause is not None:
                adoption = self.adopt(cur, m, result.members, cause)
                if adoption is not None:
                    result.adoptions.append(adoption)
                self._free_since.pop(m.name, None)
        cur.execute(
            f"""UPDATE {self._jobs} SET adopted = false WHERE owner = %s AND adopted
                RETURNING seq, {SELECT_LIST}""",
            (self.name,),
        )
        rows = sorted(cur.fetchall(), key=lambda r: int(r[0]))
        result.jobs = [from_row(r[1:]) for r in rows]
        return result

    def adopt(
        self, cur: psycopg.Cursor[Any], victim: Member, members: list[Member], cause: str
    ) -> Adoption | None:
        """Take ``victim``'s rows over and share them out; None if it came back or
        another survivor was first."""
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (self._key_of(victim.name),))
        row = cur.fetchone()
        if row is None or not row[0]:
            return None  # it holds its lock again: it came back
        cur.execute(
            f"UPDATE {self._servers} SET epoch = epoch + 1, up = false"
            " WHERE name = %s AND up AND epoch = %s",
            (victim.name, victim.epoch),
        )
        if cur.rowcount != 1:
            return None  # another survivor adopted it, or it restarted meanwhile
        heirs = [m for m in members if m.up and m.name != victim.name]
        if not heirs:
            heirs = [m for m in members if m.name == self.name]
        cur.execute(
            f"""SELECT handle, unique_key,
                    CASE WHEN unique_key = '\\x2d'::bytea THEN data ELSE ''::bytea END
                FROM {self._jobs} WHERE owner = %s""",
            (victim.name,),
        )
        handles: list[bytes] = []
        owners: list[str] = []
        share = Share(members, heirs)
        for handle, unique, data in cur.fetchall():
            handles.append(bytes(handle))
            owners.append(share.owner(bytes(handle), bytes(unique), bytes(data)))
        if handles:
            cur.execute(
                f"""UPDATE {self._jobs} j SET owner = v.owner, adopted = true
                    FROM unnest(%s::bytea[], %s::text[]) AS v(handle, owner)
                    WHERE j.handle = v.handle AND j.owner = %s""",
                (handles, owners, victim.name),
            )
        shares: dict[str, int] = {}
        for owner in owners:
            shares[owner] = shares.get(owner, 0) + 1
        return Adoption(victim.name, shares, cause)

    def _key_of(self, name: str) -> int:
        return lock_key("trigear-member", self._tables, name)


class Share:
    """Which survivor adopts a row: the server a client would fail over to."""

    def __init__(self, members: list[Member], heirs: list[Member]) -> None:
        by_address: dict[Any, str] = {}
        for m in members:
            try:
                by_address[parse_address(m.address)] = m.name
            except ValueError:
                continue
        self._placement = Placement(list(by_address)) if by_address else None
        self._by_address = by_address
        self._heirs = sorted(m.name for m in heirs)
        self._heir_set = set(self._heirs)

    def owner(self, handle: bytes, unique: bytes, data: bytes) -> str:
        if unique and self._placement is not None:
            for address in self._placement.order(unique, data):
                name = self._by_address[address]
                if name in self._heir_set:
                    return name
        return self._heirs[zlib.crc32(handle) % len(self._heirs)]
