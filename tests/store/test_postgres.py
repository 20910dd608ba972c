"""PostgreSQL store: connection loss, a database that goes away and comes back."""

from __future__ import annotations

import pytest

from trigear.store import PostgresStore, StoreError

from ..peers import PG_ADMIN, Cluster
from .store_helpers import job

pytestmark = pytest.mark.postgres


def test_description_hides_the_password() -> None:
    store = PostgresStore("postgresql://me:s3cret@db.example:6543/jobs")
    assert "s3cret" not in store.description
    assert "host=db.example" in store.description
    assert "port=6543" in store.description


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="table prefix"):
        PostgresStore("postgresql://127.0.0.1/test", table_prefix="x; DROP TABLE y")
    with pytest.raises(ValueError, match="connection string"):
        PostgresStore("postgresql://127.0.0.1/test?nonsense_option=1")


async def test_table_prefix(pg_url: str) -> None:
    import psycopg

    a = PostgresStore(pg_url, table_prefix="q1_")
    b = PostgresStore(pg_url, table_prefix="q2_")
    await a.commit([job(1)], [], [], 1)
    await b.commit([job(2)], [], [], 9)  # two servers, one schema, separate tables
    assert (await a.load()).jobs == [job(1)]
    assert (await b.load()).last_handle_number == 9
    await a.aclose()
    await b.aclose()
    schema = pg_url.rsplit("%3D", 1)[1]
    with psycopg.connect(PG_ADMIN) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    assert sorted(r[0] for r in rows) == [
        "q1_jobs",
        "q1_meta",
        "q1_servers",
        "q2_jobs",
        "q2_meta",
        "q2_servers",
    ]


async def test_lost_connection_is_replaced(pg_url: str) -> None:
    """A connection killed while idle: the next commit reconnects and succeeds."""
    import psycopg

    store = PostgresStore(pg_url)
    await store.commit([job(1)], [], [], 1)

    def backend_pid() -> int:
        assert store._conn is not None
        return store._conn.info.backend_pid

    pid = await store._run(backend_pid)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    await store.commit([job(2)], [], [], 2)
    assert await store._run(backend_pid) != pid
    assert (await store.load()).jobs == [job(1), job(2)]
    await store.aclose()


async def test_database_down_and_back(pg_cluster: Cluster) -> None:
    """StoreError while the database is stopped, nothing lost, and work resumes when it
    is back -- with the same store object."""
    store = PostgresStore(pg_cluster.url, connect_timeout=2)
    try:
        assert (await store.load()).jobs == []
        await store.commit([job(1), job(2)], [], [], 2)

        pg_cluster.stop()
        with pytest.raises(StoreError, match="cannot connect"):
            await store.commit([job(3)], [b"H:test:1"], [], 3)
        with pytest.raises(StoreError):
            await store.load()

        pg_cluster.start()
        await store.commit([job(4)], [b"H:test:2"], [], 4)
        assert (await store.load()).jobs == [job(1), job(4)]
    finally:
        await store.aclose()

    # Killed hard (no shutdown checkpoint): committed batches survive the crash.
    pg_cluster.stop("immediate")
    pg_cluster.start()
    store = PostgresStore(pg_cluster.url)
    try:
        loaded = await store.load()
    finally:
        await store.aclose()
    assert loaded.jobs == [job(1), job(4)]
    assert loaded.last_handle_number == 4
