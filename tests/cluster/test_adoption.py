"""Death detection and adoption on a real PostgreSQL store.

Survivors find a dead member by its name lock staying free (seen from their own live
session) or, for a frozen one, by its stale heartbeat; one of them adopts its rows in a
transaction, shared out as a client would fail over (the client's own placement), rows
without a unique by handle.  Adopted rows keep their handles and order.  A PostgreSQL
restart reads as reconnects: nobody is adopted.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import pytest
import trio

from trigear.client.placement import Placement, parse_address
from trigear.store.cluster import FencedError, TickResult

from .cluster_helpers import job, member, owners, query

if TYPE_CHECKING:
    from trigear.store import PostgresStore, StoredJob

    from ..peers import Cluster

pytestmark = pytest.mark.postgres

ADDRESSES = {"a": "127.0.0.1:7001", "b": "127.0.0.1:7002", "c": "127.0.0.1:7003"}
FAST = {"grace": 0.3, "reconnect_grace": 0.0}


def victim_rows() -> list[StoredJob]:
    jobs = [job("a", n, unique=b"order-%d" % n) for n in range(1, 31)]
    jobs += [job("a", n) for n in range(31, 41)]  # no unique: by handle
    jobs.append(job("a", 41, unique=b"-", data=b"payload is the key"))
    return jobs


def expected_owner(j: StoredJob, alive: list[str]) -> str:
    """Where a client listing all three servers sends the unique when a is down."""
    if j.unique:
        placement = Placement([parse_address(a) for a in ADDRESSES.values()])
        by_address = {parse_address(a): n for n, a in ADDRESSES.items()}
        for address in placement.order(j.unique, j.data):
            if by_address[address] in alive:
                return by_address[address]
    return sorted(alive)[zlib.crc32(j.handle) % len(alive)]


async def tick_until(store: PostgresStore, seconds: float = 10) -> TickResult:
    with trio.fail_after(seconds):
        while True:
            result = await store.tick(0)
            if result.adoptions or result.jobs:
                return result
            await trio.sleep(0.05)


async def test_a_dead_member_is_adopted_by_placement(pg_url: str) -> None:
    stores = {n: member(pg_url, n, ADDRESSES[n], **FAST) for n in ADDRESSES}
    try:
        for s in stores.values():
            await s.load()
        rows = victim_rows()
        await stores["a"].commit(rows, [], [], 41)
        await stores["b"].commit([job("b", 1)], [], [], 1)
        # a dies: its session ends, its lock is free.
        await stores.pop("a").aclose()
        # b sees the lock free, then free again after the grace: dead.
        first = await stores["b"].tick(1)
        assert first.adoptions == []
        result = await tick_until(stores["b"])
        (adoption,) = result.adoptions
        assert adoption.victim == "a"
        assert adoption.cause == "lock"
        want = {j.handle: expected_owner(j, ["b", "c"]) for j in rows}
        assert adoption.shares == {n: sum(1 for o in want.values() if o == n) for n in ("b", "c")}
        assert min(adoption.shares.values()) > 5  # both got a real share
        assert owners(pg_url) == {**want, b"H:b:1": "b"}
        # Each takes its share in the original order; c a tick later.
        assert [j.handle for j in result.jobs] == [j.handle for j in rows if want[j.handle] == "b"]
        taken_c = await stores["c"].tick(0)
        assert taken_c.adoptions == []  # already adopted: no second adoption
        assert [j.handle for j in taken_c.jobs] == [j.handle for j in rows if want[j.handle] == "c"]
        assert (await stores["c"].tick(0)).jobs == []  # taken once
        assert query(pg_url, "SELECT up, epoch FROM trigear_servers WHERE name = 'a'") == [
            (False, 2)
        ]
    finally:
        for s in stores.values():
            await s.aclose()
    # a comes back: a new epoch, no rows of its own any more.
    back = member(pg_url, "a", ADDRESSES["a"])
    try:
        loaded = await back.load()
        assert loaded.jobs == []
        assert loaded.last_handle_number == 41
    finally:
        await back.aclose()


async def test_a_quick_restart_is_not_a_death(pg_url: str) -> None:
    a = member(pg_url, "a", ADDRESSES["a"])
    b = member(pg_url, "b", ADDRESSES["b"], grace=1.0, reconnect_grace=0.0)
    try:
        await a.load()
        await b.load()
        await a.commit([job("a", 1)], [], [], 1)
        await a.aclose()
        assert (await b.tick(0)).adoptions == []
        a = member(pg_url, "a", ADDRESSES["a"])
        assert [j.handle for j in (await a.load()).jobs] == [b"H:a:1"]
        await trio.sleep(1.2)
        assert (await b.tick(0)).adoptions == []  # its lock is held again
        assert owners(pg_url) == {b"H:a:1": "a"}
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_frozen_member_is_ended_and_adopted(pg_url: str) -> None:
    """A member that keeps its session but stops heartbeating: its backend is ended, its
    rows adopted, and its next commit is fenced."""
    a = member(pg_url, "a", ADDRESSES["a"])
    b = member(pg_url, "b", ADDRESSES["b"], grace=5.0, stale=0.6, reconnect_grace=0.0)
    try:
        await a.load()
        await b.load()
        await a.commit([job("a", 1), job("a", 2)], [], [], 2)
        assert (await b.tick(0)).adoptions == []
        await trio.sleep(0.7)  # a is "frozen": no tick, no commit
        result = await b.tick(0)
        (adoption,) = result.adoptions
        assert adoption.cause == "stale"
        assert [j.handle for j in result.jobs] == [b"H:a:1", b"H:a:2"]
        with pytest.raises(FencedError):
            await a.commit([job("a", 3)], [b"H:a:1"], [], 3)
        assert owners(pg_url) == {b"H:a:1": "b", b"H:a:2": "b"}
    finally:
        await a.aclose()
        await b.aclose()


async def test_adoption_waits_for_the_grace_after_own_reconnect(pg_url: str) -> None:
    """A survivor whose own session just started believes no free lock at once."""
    a = member(pg_url, "a", ADDRESSES["a"])
    b = member(pg_url, "b", ADDRESSES["b"], grace=0.2, reconnect_grace=1.0)
    try:
        await a.load()
        await b.load()
        await a.commit([job("a", 1)], [], [], 1)
        await a.aclose()
        assert (await b.tick(0)).adoptions == []
        await trio.sleep(0.3)
        assert (await b.tick(0)).adoptions == []  # b's session is younger than 1 s
        await trio.sleep(0.8)
        assert [x.victim for x in (await b.tick(0)).adoptions] == ["a"]
    finally:
        await b.aclose()


@pytest.mark.timeout(120)
async def test_a_postgresql_restart_takes_nothing_over(pg_cluster: Cluster) -> None:
    """Every session drops at once: members reconnect and keep their rows."""
    stores = [member(pg_cluster.url, n, ADDRESSES[n]) for n in ("a", "b")]
    try:
        for i, s in enumerate(stores):
            await s.load()
            await s.commit([job("ab"[i], 1)], [], [], 1)
        adoptions = []

        async def keep_ticking(s: PostgresStore) -> None:
            while True:
                try:
                    adoptions.extend((await s.tick(1)).adoptions)
                except FencedError:
                    raise
                except Exception:
                    pass
                await trio.sleep(0.25)

        async with trio.open_nursery() as nursery:
            for s in stores:
                nursery.start_soon(keep_ticking, s)
            await trio.sleep(1)
            await trio.to_thread.run_sync(pg_cluster.stop, "immediate")
            await trio.sleep(2)
            await trio.to_thread.run_sync(pg_cluster.start)
            await trio.sleep(9)  # past the reconnect grace and the grace
            nursery.cancel_scope.cancel()
        assert adoptions == []
        for s in stores:
            await s.tick(1)  # not fenced
    finally:
        for s in stores:
            await s.aclose()


async def test_a_member_that_just_reconnected_is_not_stale(pg_url: str) -> None:
    """Silence counts from the later of the heartbeat and the start of the session that
    holds the lock: a member back from a long database outage has not heartbeaten yet."""
    a = member(pg_url, "a", ADDRESSES["a"])
    b = member(pg_url, "b", ADDRESSES["b"], grace=5.0, stale=0.6, reconnect_grace=0.0)
    try:
        await a.load()
        await b.load()

        await trio.sleep(0.8)
        await a._run(a._close_connection)  # its session ends...
        await a._run(a._connect)  # ...and a new one takes the lock, no heartbeat yet
        query(pg_url, "UPDATE trigear_servers SET heartbeat = now() - interval '1 hour'")
        assert (await b.tick(0)).adoptions == []
        await trio.sleep(0.7)  # now it has been silent too long on its new session too
        assert [x.cause for x in (await b.tick(0)).adoptions] == ["stale"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_draining_member_adopts_nothing(pg_url: str) -> None:
    a = member(pg_url, "a", ADDRESSES["a"])
    b = member(pg_url, "b", ADDRESSES["b"], **FAST)
    assert b.member is not None
    try:
        await a.load()
        await b.load()
        await a.commit([job("a", 1)], [], [], 1)
        await a.aclose()
        b.member.adopting = False
        for _ in range(3):
            assert (await b.tick(0)).adoptions == []
            await trio.sleep(0.2)
        b.member.adopting = True
        await b.tick(0)
        await trio.sleep(0.4)
        assert [x.victim for x in (await b.tick(0)).adoptions] == ["a"]
    finally:
        await b.aclose()
