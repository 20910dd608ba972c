"""The job index keeps this server's handles as numbers, and what a queued job costs.

See ``trigear/server/jobindex.py`` and docs/performance.md (memory per queued job)."""

from __future__ import annotations

import gc
import random
import tracemalloc

import pytest

from trigear.protocol.packets import (
    GetStatus,
    JobCreated,
    Priority,
    StatusRes,
    SubmitJobBg,
    WorkComplete,
)
from trigear.server.jobindex import JobIndex
from trigear.server.state import Func, JobRecord

from .dispatcher_harness import Harness

PREFIX = b"H:t:"


@pytest.mark.parametrize(
    ("handle", "key"),
    [
        (b"H:t:1", 1),
        (b"H:t:1764447282123456", 1764447282123456),
        (b"H:t:9999999999999999999", 9999999999999999999),
        # Not this server's prefix, or not the one spelling of a number: kept as bytes.
        (b"H:other:1", b"H:other:1"),
        (b"H:t:01", b"H:t:01"),
        (b"H:t:0", b"H:t:0"),
        (b"H:t:+1", b"H:t:+1"),
        (b"H:t:1 ", b"H:t:1 "),
        (b"H:t:", b"H:t:"),
        (b"H:t:\xd9\xa1", b"H:t:\xd9\xa1"),
        (b"H:t:10000000000000000000", b"H:t:10000000000000000000"),
        (b"H:t", b"H:t"),
    ],
)
def test_a_handle_is_keyed_by_its_number_only_when_that_gives_it_back(
    handle: bytes, key: int | bytes
) -> None:
    index = JobIndex(PREFIX)
    assert index.key(handle) == key
    assert type(index.key(handle)) is type(key)
    job = JobRecord(
        index.key(handle), Func(b"f", handle_prefix=PREFIX), b"", b"", Priority.NORMAL, True
    )
    # The handle made from the key is the handle it came from.
    assert job.handle == handle
    index.add(job)
    assert index[handle] is job
    assert index.get(handle) is job
    assert handle in index
    assert list(index) == [handle]


def test_the_index_reads_as_a_mapping_of_handles() -> None:
    index = JobIndex(PREFIX)
    func = Func(b"f", handle_prefix=PREFIX)
    jobs = [
        JobRecord(index.key(h), func, b"", b"", Priority.NORMAL, True)
        for h in (b"H:t:5", b"H:x:7", b"H:t:6")
    ]
    for job in jobs:
        index.add(job)
    assert len(index) == 3
    # Handles of another form first, then this server's in handle order.
    assert list(index) == [b"H:x:7", b"H:t:5", b"H:t:6"]
    assert index.newest() is jobs[2]
    assert list(index.values()) == [jobs[1], jobs[0], jobs[2]]
    assert index.records() == [jobs[1], jobs[0], jobs[2]]
    assert dict(index.items()) == {j.handle: j for j in jobs}
    assert index.get(b"H:t:8") is None
    assert b"H:t:8" not in index
    assert "H:t:5" not in index
    with pytest.raises(KeyError):
        index[b"H:t:05"]
    index.discard(jobs[0])
    index.discard(jobs[0])
    assert index == {b"H:x:7": jobs[1], b"H:t:6": jobs[2]}
    assert "H:x:7" in repr(index)


def _job(index: JobIndex, number: int) -> JobRecord:
    func = Func(b"f", handle_prefix=PREFIX)
    return JobRecord(index.key(b"H:t:%d" % number), func, b"", b"", Priority.NORMAL, True)


def _check(index: JobIndex, live: dict[bytes, JobRecord]) -> None:
    assert len(index) == len(live)
    assert dict(index.items()) == live
    for handle, job in live.items():
        assert index.get(handle) is job
    # The window never holds many more slots than jobs (8 bytes a slot).
    assert len(index._window) <= 8 * len(live) + 2 * 4096


def test_the_window_follows_jobs_that_end_in_any_order() -> None:
    """A model check: random adds (mostly the next number, some far behind or ahead,
    some of another form) and removals, against a dictionary."""
    rng = random.Random(7)
    index = JobIndex(PREFIX)
    live: dict[bytes, JobRecord] = {}
    number = 1
    for step in range(60_000):
        roll = rng.random()
        if roll < 0.5 or not live:
            if roll < 0.01:
                job = JobRecord(b"H:x:%d" % step, Func(b"f"), b"", b"", Priority.NORMAL, True)
            elif roll < 0.02:
                # Replayed: a number far behind the others, or one not seen yet far ahead.
                job = _job(index, rng.choice([max(1, number - 50_000), number + 20_000]))
                if job.handle in live:
                    continue
            else:
                job = _job(index, number)
            number = max(number, job.key + 1 if isinstance(job.key, int) else number)
            index.add(job)
            live[job.handle] = job
        else:
            # Mostly the oldest ends first; a few stay behind for long.
            handles = list(live)
            pick = handles[0] if rng.random() < 0.7 else rng.choice(handles)
            assert index.discard(live.pop(pick))
            assert not index.discard(_job(index, 10**12))
        if step % 997 == 0:
            _check(index, live)
    _check(index, live)
    for job in list(live.values()):
        assert index.discard(job)
    assert len(index) == 0
    assert index._window == []


def test_a_straggler_does_not_hold_the_window() -> None:
    """One job stays queued while 100,000 others come and go: the window stays short
    (the straggler moves to the dictionary) and the straggler is still found."""
    index = JobIndex(PREFIX)
    straggler = _job(index, 1)
    index.add(straggler)
    for n in range(2, 100_002):
        job = _job(index, n)
        index.add(job)
        index.discard(job)
    assert len(index._window) < 2 * 4096
    assert index.get(b"H:t:1") is straggler
    assert index.discard(straggler)
    assert len(index) == 0


def test_handles_that_continue_far_ahead_start_the_window_again() -> None:
    """Jobs replayed from a store, then new handles after its high-water mark."""
    index = JobIndex(PREFIX)
    old = [_job(index, n) for n in (3, 9, 12)]
    for job in old:
        index.add(job)
    new = [_job(index, n) for n in range(1_000_000, 1_000_010)]
    for job in new:
        index.add(job)
    assert len(index._window) == 10
    assert index.records() == old + new
    assert index.newest() is new[-1]
    index.discard(new[-1])
    assert index.newest() is None


def test_jobs_of_this_server_and_adopted_ones_answer_by_handle() -> None:
    h = Harness()
    c, w = h.peer(), h.peer(b"f")
    (created,) = h.send(c, SubmitJobBg(b"f", b"u1", b"x"))
    assert isinstance(created, JobCreated)
    assert type(h.d.jobs.key(created.handle)) is int
    assert h.send(c, GetStatus(created.handle)) == [StatusRes(created.handle, True, False, 0, 0)]
    assert h.grab(w) == created.handle
    assert h.send(w, WorkComplete(created.handle, b"")) == []
    assert h.d.jobs == {}


def test_a_queued_background_job_costs_under_400_bytes_of_python_objects() -> None:
    """Record, key, unique and payload, and its share of the index, the unique table and
    the queue: 36-byte uniques and 64-byte payloads as in benchmarks/queued_memory.py.
    About 372 measured.  (The server's RSS per job, which docs/performance.md compares
    with gearmand's, adds what the allocator keeps around.)"""
    h = Harness()
    c = h.peer()
    n = 20_000
    submits = [SubmitJobBg(b"f", b"%036d" % i, b"%064d" % i) for i in range(n)]
    h.send(c, SubmitJobBg(b"f", b"warm", b"x"))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for event in submits:
            h.d.handle(c, event)
        c.out.clear()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_job = (after - before) / n
    # The events' unique and payload are the job's own; count them as the job's.
    per_job += (33 + 36) + (33 + 64)
    assert len(h.d.jobs) == n + 1
    assert per_job < 400, per_job
