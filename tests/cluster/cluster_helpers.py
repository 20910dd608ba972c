"""Helpers for the cluster tests: members of one store, and a look at its tables."""

from __future__ import annotations

from typing import Any

import psycopg

from trigear.store import PostgresStore, StoredJob

from ..peers import PG_ADMIN


def member(url: str, name: str, address: str = "", **timing: float) -> PostgresStore:
    """A member of the store at ``url`` named ``name``; ``timing`` overrides the
    membership's grace, stale and reconnect_grace (seconds)."""
    store = PostgresStore(url, name=name, lock_wait=0.5)
    assert store.member is not None
    store.member.address = address or f"127.0.0.1:{4700 + sum(name.encode()) % 200}"
    for key, value in timing.items():
        setattr(store.member, key, value)
    return store


def job(owner: str, n: int, unique: bytes = b"", **fields: Any) -> StoredJob:
    base: dict[str, Any] = {"function": b"f", "data": b"payload %d" % n}
    base.update(fields)
    return StoredJob(handle=b"H:%s:%d" % (owner.encode(), n), unique=unique, **base)


def schema_of(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` in the store's schema from an admin connection of its own."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"SET search_path = {schema_of(url)}")
        cur = conn.execute(sql, args or None)
        return cur.fetchall() if cur.description else []


def owners(url: str) -> dict[bytes, str]:
    return {bytes(h): o for h, o in query(url, "SELECT handle, owner FROM trigear_jobs")}
