"""The job index keeps this server's handles as numbers, and what a queued job costs.

See ``trigear/server/jobindex.py`` and docs/performance.md (memory per queued job)."""

from __future__ import annotations

import gc
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
    assert list(index) == [b"H:t:5", b"H:x:7", b"H:t:6"]
    assert next(reversed(index)) == b"H:t:6"
    assert list(index.values()) == jobs
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


def test_a_queued_background_job_costs_under_450_bytes_of_python_objects() -> None:
    """Record, key, unique and payload, and its share of the index, the unique table and
    the queue: 36-byte uniques and 64-byte payloads as in benchmarks/queued_memory.py.
    About 390 measured.  (The server's RSS per job, which docs/performance.md compares
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
    assert per_job < 450, per_job
