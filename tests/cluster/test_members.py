"""Named servers on one PostgreSQL store: names, owned rows, epochs and fencing.

Each member owns the rows it writes and loads only those; one live server per name; an
unnamed server and members never share a table set; every commit checks the member's
epoch and applies nothing once another server has taken its rows over.
"""

from __future__ import annotations

import psycopg
import pytest

from trigear.store import PostgresStore, StoreError, open_store
from trigear.store.cluster import FencedError

from ..peers import PG_ADMIN
from .cluster_helpers import job, member, owners, query, schema_of

pytestmark = pytest.mark.postgres


async def test_members_own_their_rows(pg_url: str) -> None:
    a, b = member(pg_url, "a"), member(pg_url, "b")
    try:
        assert (await a.load()).jobs == []
        assert (await b.load()).jobs == []
        await a.commit([job("a", 1), job("a", 2)], [], [], 2)
        await b.commit([job("b", 1)], [], [], 7)
        assert owners(pg_url) == {b"H:a:1": "a", b"H:a:2": "a", b"H:b:1": "b"}
        # Removals and attempt counts only touch the committer's own rows.
        await a.commit([], [b"H:b:1"], [(b"H:b:1", 5)], 2)
        await b.commit([], [b"H:a:1"], [(b"H:a:2", 5)], 7)
        assert query(pg_url, "SELECT attempts FROM trigear_jobs WHERE owner = 'b'") == [(0,)]
        assert sorted(owners(pg_url)) == [b"H:a:1", b"H:a:2", b"H:b:1"]
        # Re-adding a handle another member owns does not take it.
        await a.commit([job("b", 1, data=b"stolen")], [], [], 2)
        assert query(pg_url, "SELECT data FROM trigear_jobs WHERE owner = 'b'") == [(b"payload 1",)]
        assert owners(pg_url)[b"H:b:1"] == "b"
    finally:
        await a.aclose()
        await b.aclose()
    # A restart loads its own rows and its own high-water mark; each start bumps the epoch.
    a2, b2 = member(pg_url, "a"), member(pg_url, "b")
    try:
        loaded_a, loaded_b = await a2.load(), await b2.load()
        assert [j.handle for j in loaded_a.jobs] == [b"H:a:1", b"H:a:2"]
        assert loaded_a.last_handle_number == 2
        assert [j.handle for j in loaded_b.jobs] == [b"H:b:1"]
        assert loaded_b.last_handle_number == 7
        rows = query(pg_url, "SELECT name, epoch, up, address FROM trigear_servers ORDER BY 1")
        assert [(n, e, u) for n, e, u, _ in rows] == [("a", 2, True), ("b", 2, True)]
        assert a2.member is not None
        assert rows[0][3] == a2.member.address
    finally:
        await a2.aclose()
        await b2.aclose()


async def test_one_live_server_per_name(pg_url: str) -> None:
    first = member(pg_url, "same")
    await first.load()
    second = member(pg_url, "same")
    try:
        with pytest.raises(StoreError, match="another trigear server named 'same'"):
            await second.load()
    finally:
        await second.aclose()
        await first.aclose()
    # Once the first is gone, the name is free again.
    third = member(pg_url, "same")
    try:
        await third.load()
    finally:
        await third.aclose()


async def test_unnamed_server_and_members_exclude_each_other(pg_url: str) -> None:
    named = member(pg_url, "m")
    await named.load()
    unnamed = PostgresStore(pg_url, lock_wait=0.3)
    try:
        with pytest.raises(StoreError, match="another trigear server is using these tables"):
            await unnamed.load()
    finally:
        await unnamed.aclose()
        await named.aclose()
    unnamed = PostgresStore(pg_url, lock_wait=0.3)
    await unnamed.load()
    named = member(pg_url, "m")
    try:
        with pytest.raises(StoreError, match="another trigear server is using these tables"):
            await named.load()
    finally:
        await named.aclose()
        await unnamed.aclose()


async def test_a_commit_after_a_takeover_is_fenced(pg_url: str) -> None:
    """The adopter bumps the epoch: the old owner's commit applies nothing, raises
    FencedError, and the member can join again under a new epoch."""
    a = member(pg_url, "a")
    try:
        await a.load()
        await a.commit([job("a", 1)], [], [], 1)
        query(pg_url, "UPDATE trigear_servers SET epoch = epoch + 1 WHERE name = 'a'")
        query(pg_url, "UPDATE trigear_jobs SET owner = 'other'")
        with pytest.raises(FencedError, match="taken over"):
            await a.commit([job("a", 2)], [b"H:a:1"], [], 2)
        with pytest.raises(FencedError):
            await a.tick(2)
        assert owners(pg_url) == {b"H:a:1": "other"}
        loaded = await a.rejoin()
        assert loaded.jobs == []
        await a.commit([job("a", 3)], [], [], 3)
        assert owners(pg_url) == {b"H:a:1": "other", b"H:a:3": "a"}
    finally:
        await a.aclose()


async def test_heartbeat_and_high_water_mark(pg_url: str) -> None:
    a = member(pg_url, "a")
    try:
        await a.load()
        (before,) = query(pg_url, "SELECT heartbeat FROM trigear_servers")
        result = await a.tick(41)
        assert result.jobs == []
        assert result.adoptions == []
        assert [m.name for m in result.members] == ["a"]
        assert result.members[0].holder is not None  # its own session holds its lock
        (after,) = query(pg_url, "SELECT heartbeat, last_handle FROM trigear_servers")
        assert after[0] > before[0]
        assert after[1] == 41
    finally:
        await a.aclose()


async def test_schema_version_1_is_migrated(pg_url: str) -> None:
    """A store written by a version-1 server: the first member migrates it and takes its
    rows; they keep their handles and order."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema_of(pg_url)}")
        conn.execute(
            """CREATE TABLE trigear_jobs (
                handle bytea PRIMARY KEY,
                seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
                function bytea NOT NULL, unique_key bytea NOT NULL, data bytea NOT NULL,
                priority smallint NOT NULL, run_at bigint, reducer bytea,
                attempts integer NOT NULL DEFAULT 0)"""
        )
        conn.execute("CREATE TABLE trigear_meta (key text PRIMARY KEY, value bigint NOT NULL)")
        conn.execute(
            "INSERT INTO trigear_meta VALUES ('schema_version', 1), ('last_handle_number', 9)"
        )
        for n in (3, 1, 2):
            conn.execute(
                "INSERT INTO trigear_jobs (handle, function, unique_key, data, priority)"
                " VALUES (%s, 'f', '', 'x', 1)",
                (b"H:old:%d" % n,),
            )
    a = member(pg_url, "a")
    try:
        loaded = await a.load()
        assert [j.handle for j in loaded.jobs] == [b"H:old:3", b"H:old:1", b"H:old:2"]
        assert query(pg_url, "SELECT value FROM trigear_meta WHERE key = 'schema_version'") == [
            (2,)
        ]
        assert set(owners(pg_url).values()) == {"a"}
    finally:
        await a.aclose()


def test_a_name_needs_a_postgresql_store() -> None:
    with pytest.raises(ValueError, match="needs a PostgreSQL store"):
        open_store("memory", name="s1")
    with pytest.raises(ValueError, match="needs a PostgreSQL store"):
        open_store("sqlite:/tmp/x.db", name="s1")
    with pytest.raises(ValueError, match="server name"):
        PostgresStore("postgresql://127.0.0.1/test", name="a:b")
    store = open_store("postgresql://127.0.0.1/test", name="s1")
    assert isinstance(store, PostgresStore)
    assert store.member is not None
    assert store.member.name == "s1"
