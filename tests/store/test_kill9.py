"""``kill -9`` of a process in the middle of committing loses no acknowledged batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from trigear.store import PostgresStore, SqliteStore, Store

from .store_helpers import StoreFactory, job

# A child that commits batches of 50 jobs as fast as it can and prints the batch number
# once each commit has returned (the moment a server would send JOB_CREATED).
CHILD = textwrap.dedent(
    """
    import sys, trio
    from trigear.store import StoredJob, SqliteStore, PostgresStore

    async def main(kind, where):
        store = SqliteStore(where) if kind == "sqlite" else PostgresStore(where)
        await store.load()
        for batch in range(1, 100_000):
            jobs = [StoredJob(b"H:k:%d" % (batch * 50 + i), b"f", b"", b"x" * 100)
                    for i in range(50)]
            await store.commit(jobs, [], [], batch)
            print(batch, flush=True)

    trio.run(main, sys.argv[1], sys.argv[2])
    """
)


def where(store: Store) -> tuple[str, str]:
    if isinstance(store, SqliteStore):
        return "sqlite", store.path
    assert isinstance(store, PostgresStore)
    return "postgres", store._conninfo


def run_and_kill(kind: str, target: str) -> int:
    """Run the child until it acknowledged 40 batches, SIGKILL it, return the last one."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, target],
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acknowledged = int(line)
            if acknowledged >= 40:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    if acknowledged < 40:
        pytest.fail("the child died before committing")
    return acknowledged


async def test_kill_9_loses_no_acknowledged_batch(durable_store: StoreFactory) -> None:
    probe = durable_store()
    kind, target = where(probe)
    await probe.aclose()
    acknowledged = run_and_kill(kind, target)

    store = durable_store()
    loaded = await store.load()
    await store.aclose()
    assert loaded.last_handle_number >= acknowledged
    handles = {j.handle for j in loaded.jobs}
    for batch in range(1, acknowledged + 1):
        assert {b"H:k:%d" % (batch * 50 + i) for i in range(50)} <= handles
    # Whatever was stored is whole batches, in order.
    assert len(loaded.jobs) % 50 == 0
    assert [j.handle for j in loaded.jobs] == [
        b"H:k:%d" % n for n in range(50, 50 + len(loaded.jobs))
    ]
    assert loaded.jobs[0] == job(50, handle=b"H:k:50", function=b"f", unique=b"", data=b"x" * 100)
