"""The store contract (S17 high-water mark, S19), for every store kind."""

from __future__ import annotations

import pytest
import trio

from trigear.store import LoadResult, Priority, Store, StoredJob, StoreError

from .store_helpers import StoreFactory, job, reopen


async def test_is_a_store(make_store: StoreFactory) -> None:
    store = make_store()
    assert isinstance(store, Store)
    assert store.description
    await store.aclose()
    await store.aclose()  # twice is fine


async def test_memory_store_keeps_nothing() -> None:
    from trigear.store import MemoryStore

    store = MemoryStore()
    assert not store.durable
    await store.commit([job(1)], [], [], 1)
    assert await store.load() == LoadResult([], 0)
    await store.aclose()


async def test_empty_store(make_store: StoreFactory) -> None:
    assert await reopen(make_store) == LoadResult([], 0)


async def test_round_trip_all_fields_in_order(durable_store: StoreFactory) -> None:
    jobs = [
        job(1, data=b"\x00nul\x00inside\x00", unique=b"\x00\x01\xff" * 21 + b"z"),
        job(2, unique=b"x" * 64, priority=Priority.HIGH),
        job(3, unique=b"", priority=Priority.LOW, when=1_900_000_000),
        job(4, unique=b"", reducer=b"sum\x00it", attempts=3),
        job(5, unique=b"-", data=b"", function=b"f\x00n"),
        job(6, unique=b"same"),
        job(7, unique=b"same", when=0),
    ]
    jobs += [job(100 + i, unique=b"") for i in range(200)]  # empty uniques never collide
    store = durable_store()
    assert await store.load() == LoadResult([], 0)
    await store.commit(jobs, [], [], 300)
    await store.aclose()

    loaded = await reopen(durable_store)
    assert loaded.last_handle_number == 300
    assert loaded.jobs == jobs
    assert [j.priority for j in loaded.jobs[:3]] == [Priority.NORMAL, Priority.HIGH, Priority.LOW]
    assert all(type(j.priority) is Priority for j in loaded.jobs)
    assert all(type(j.data) is bytes and type(j.handle) is bytes for j in loaded.jobs)
    assert len(loaded.jobs[0].unique) == 64


async def test_bytes_like_fields_are_stored_as_bytes(durable_store: StoreFactory) -> None:
    given = job(1, unique=bytearray(b"u1"), data=memoryview(b"d\x00"), reducer=bytearray(b"r"))
    store = durable_store()
    await store.load()
    await store.commit([given], [], [], 1)
    await store.aclose()
    (back,) = (await reopen(durable_store)).jobs
    assert back == job(1, unique=b"u1", data=b"d\x00", reducer=b"r")
    assert all(type(v) is bytes for v in (back.unique, back.data, back.reducer))


async def test_remove_and_attempts_persist(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.load()
    await store.commit([job(i) for i in range(1, 6)], [], [], 5)
    await store.commit([job(6)], [b"H:test:2", b"H:test:4"], [(b"H:test:1", 2)], 6)
    # Unknown handles are ignored: a job that ended before it was stored, or twice.
    await store.commit([], [b"H:test:404", b"H:test:2"], [(b"H:test:405", 1)], 6)
    await store.aclose()

    loaded = await reopen(durable_store)
    assert [j.handle for j in loaded.jobs] == [b"H:test:1", b"H:test:3", b"H:test:5", b"H:test:6"]
    assert loaded.jobs[0].attempts == 2
    assert loaded.jobs[1].attempts == 0


async def test_add_and_remove_in_one_batch(durable_store: StoreFactory) -> None:
    # A job submitted and finished within one dispatcher pass: add, then remove.
    store = durable_store()
    await store.commit([job(1), job(2)], [b"H:test:1"], [(b"H:test:2", 1)], 2)
    await store.aclose()
    assert (await reopen(durable_store)).jobs == [job(2, attempts=1)]


async def test_adding_a_stored_handle_keeps_its_place(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.commit([job(1), job(2)], [], [], 2)
    await store.commit([job(1, data=b"new", attempts=1)], [], [], 2)
    await store.aclose()
    assert (await reopen(durable_store)).jobs == [job(1, data=b"new", attempts=1), job(2)]


async def test_high_water_mark_persists_and_only_grows(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.commit([], [], [], 10)
    await store.commit([], [], [], 7)
    await store.aclose()
    assert (await reopen(durable_store)).last_handle_number == 10

    store = durable_store()
    await store.load()
    await store.commit([], [], [], 2**40)
    await store.aclose()
    assert (await reopen(durable_store)).last_handle_number == 2**40


async def test_failed_batch_applies_nothing(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.commit([job(1), job(2)], [], [], 2)
    # The last change of the batch cannot be stored (attempts out of any integer
    # range): the adds, the removal and the high-water mark before it must not stay.
    with pytest.raises(StoreError):
        await store.commit([job(3), job(4)], [b"H:test:1"], [(b"H:test:2", 2**70)], 4)
    # The store goes on working, and the failure left no trace.
    await store.commit([job(5)], [], [], 5)
    assert (await store.load()).jobs == [job(1), job(2), job(5)]
    await store.aclose()

    loaded = await reopen(durable_store)
    assert loaded == LoadResult([job(1), job(2), job(5)], 5)


async def test_many_batches(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.load()
    expected: list[StoredJob] = []
    n = 0
    for batch in range(150):
        add = [job(n + i, unique=b"", priority=Priority(i % 3)) for i in range(4)]
        n += 4
        expected += add
        # End every third job of the batch before this one.
        remove = [j.handle for j in expected[-8:-4:3]] if batch else []
        expected = [j for j in expected if j.handle not in remove]
        await store.commit(add, remove, [], n)
    await store.aclose()
    loaded = await reopen(durable_store)
    assert loaded == LoadResult(expected, n)


async def test_large_batch(durable_store: StoreFactory) -> None:
    jobs = [job(i, unique=b"%064d" % i, data=bytes([i % 256]) * 100) for i in range(10_000)]
    store = durable_store()
    await store.load()
    await store.commit(jobs, [], [], 10_000)
    await store.aclose()
    loaded = await reopen(durable_store)
    assert loaded.last_handle_number == 10_000
    assert loaded.jobs == jobs

    store = durable_store()
    await store.commit([], [j.handle for j in jobs[::2]], [], 10_000)
    await store.aclose()
    assert (await reopen(durable_store)).jobs == jobs[1::2]


async def test_commit_before_load(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.commit([job(1)], [], [], 1)
    await store.aclose()
    assert (await reopen(durable_store)).jobs == [job(1)]


async def test_closed_store_refuses(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.load()
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.commit([job(1)], [], [], 1)
    with pytest.raises(StoreError, match="closed"):
        await store.load()


async def test_cancelled_caller_still_learns_the_outcome(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.load()
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.commit([job(1)], [], [], 1)  # handed to the database: runs to the end
    await store.aclose()
    assert (await reopen(durable_store)).jobs == [job(1)]


async def test_concurrent_callers_are_serialised(durable_store: StoreFactory) -> None:
    store = durable_store()
    await store.load()
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(store.commit, [job(i)], [], [], i)
    await store.aclose()
    loaded = await reopen(durable_store)
    assert sorted(j.handle for j in loaded.jobs) == sorted(job(i).handle for i in range(20))
    assert loaded.last_handle_number == 19


async def test_second_server_on_the_same_storage_is_refused(
    durable_store: StoreFactory,
) -> None:
    first = durable_store()
    await first.load()
    second = durable_store()
    try:
        with pytest.raises(StoreError, match="another trigear server"):
            await second.load()
    finally:
        await second.aclose()
    await first.commit([job(1)], [], [], 1)
    await first.aclose()
    # Once the first has gone, the storage is free.
    assert (await reopen(durable_store)).jobs == [job(1)]
