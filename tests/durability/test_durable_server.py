"""S19 at server level, on real SQLite and PostgreSQL stores: what is stored when, what a
restart gives back, and that durability never reorders replies (S1) or delays foreground
traffic."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from trigear.protocol.packets import (
    CanDo,
    Error,
    GetStatus,
    GrabJobAll,
    GrabJobUniq,
    JobAssignAll,
    JobAssignUniq,
    JobCreated,
    NoJob,
    Noop,
    OptionReq,
    OptionRes,
    PreSleep,
    Priority,
    StatusRes,
    SubmitJob,
    SubmitJobBg,
    SubmitJobEpoch,
    SubmitJobHigh,
    SubmitJobHighBg,
    SubmitJobLow,
    SubmitJobLowBg,
    SubmitReduceJob,
    SubmitReduceJobBackground,
    WorkComplete,
    WorkException,
    WorkFail,
)
from trigear.server import ServerConfig

from .durable_helpers import Gate, Running, wait_until

if TYPE_CHECKING:
    from trio.testing import MockClock

    from ..memory_peer import Peer


async def worker(running: Running, *functions: bytes) -> Peer:
    w = await running.connect()
    await w.send(*(CanDo(f) for f in functions))
    return w


async def grab(w: Peer) -> JobAssignUniq:
    await w.send(GrabJobUniq())
    ev = await w.recv()
    assert isinstance(ev, JobAssignUniq), ev
    return ev


async def no_job(w: Peer) -> None:
    await w.send(GrabJobUniq())
    assert isinstance(await w.recv(), NoJob)


def handles(jobs: list) -> list[bytes]:  # type: ignore[type-arg]
    return [j.handle for j in jobs]


# --- what is stored, and when ------------------------------------------------------------------


async def test_every_background_submit_is_stored_before_job_created(
    running: Running, gate: Gate
) -> None:
    """S19 for each kind of background submit: its commit is held at the gate, and no
    JOB_CREATED comes while it is; the one that comes after finds the commit returned and
    the job stored as submitted."""
    c = await running.connect()
    future = int(time.time()) + 3600
    submits = [
        (SubmitJobBg(b"f", b"u-normal", b"normal"), Priority.NORMAL, None, None),
        (SubmitJobHighBg(b"f", b"u-high", b"high"), Priority.HIGH, None, None),
        (SubmitJobLowBg(b"f", b"u-low", b"low"), Priority.LOW, None, None),
        (SubmitJobEpoch(b"f", b"u-epoch", future, b"epoch"), Priority.NORMAL, future, None),
        (
            SubmitReduceJobBackground(b"f", b"u-reduce", b"red", b"", b"reduce"),
            Priority.NORMAL,
            None,
            b"red",
        ),
    ]
    for submit, prio, when, reducer in submits:
        gate.close()
        arrived, committed = gate.arrived, gate.committed
        await c.send(submit)
        await wait_until(lambda n=arrived: gate.arrived > n)  # its commit is held
        await c.nothing(0.3)
        assert gate.committed == committed
        gate.open()
        handle = await c.created()
        assert gate.committed > committed
        stored = {j.handle: j for j in await running.stored()}
        job = stored[handle]
        assert (job.function, job.unique, job.data) == (b"f", submit.unique, submit.data)
        assert (job.priority, job.when, job.reducer, job.attempts) == (prio, when, reducer, 0)
    assert len(await running.stored()) == len(submits)


async def test_job_created_waits_for_the_commit(running: Running, gate: Gate) -> None:
    c = await running.connect()
    gate.close()
    await c.send(SubmitJobBg(b"f", b"", b"x"))
    await c.nothing(0.3)
    # Not yet stored, so not yet a job for anyone: unknown to GET_STATUS, not runnable.
    w = await worker(running, b"f")
    await no_job(w)
    gate.open()
    handle = await c.created()
    assert handles(await running.stored()) == [handle]
    assert (await grab(w)).handle == handle


async def test_foreground_jobs_are_not_stored(running: Running, gate: Gate) -> None:
    c = await running.connect()
    w = await worker(running, b"f")
    gate.close()  # a foreground submit must not wait for the store either
    await c.send(
        SubmitJob(b"f", b"", b"n"),
        SubmitJobHigh(b"f", b"u1", b"h"),
        SubmitJobLow(b"f", b"u2", b"l"),
        SubmitReduceJob(b"f", b"u3", b"red", b"", b"r"),
    )
    created = [ev.handle for ev in await c.recv_n(4) if isinstance(ev, JobCreated)]
    assert len(created) == 4
    for _ in range(4):
        job = await grab(w)
        await w.send(WorkComplete(job.handle, b"ok"))
        assert await c.recv() == WorkComplete(job.handle, b"ok")
    assert gate.arrived == 0
    gate.open()
    assert await running.settled() == []


async def test_a_job_is_removed_whenever_it_ends(nursery: trio.Nursery, running: Running) -> None:
    c = await running.connect()
    w = await worker(running, b"f")
    await c.send(OptionReq(b"exceptions"))
    assert isinstance(await c.recv(), OptionRes)
    ends = [
        lambda h: WorkComplete(h, b"done"),
        lambda h: WorkFail(h),
        lambda h: WorkException(h, b"boom"),
    ]
    for end in ends:
        await c.send(SubmitJobBg(b"f", b"", b"x"))
        handle = await c.created()
        assert handles(await running.stored()) == [handle]
        assert (await grab(w)).handle == handle
        await w.send(end(handle))
        assert await running.settled() == []
    # admin "cancel job", queued and never run
    await c.send(SubmitJobLowBg(b"f", b"", b"x"))
    handle = await c.created()
    admin = await running.connect()
    assert await admin.admin(f"cancel job {handle.decode()}") == b"OK\r\n"
    assert await running.settled() == []
    # retries spent (S10): no re-run allowed, the worker dies holding it
    await running.restart(ServerConfig(job_handle_prefix="dur", job_retries=0))
    c = await running.connect()
    await c.send(SubmitJobHighBg(b"f", b"", b"x"))
    handle = await c.created()
    w = await worker(running, b"f")
    assert (await grab(w)).handle == handle
    await w.aclose()
    assert await running.settled() == []
    assert running.srv.statistics().retries_exhausted == 1


async def test_attempt_counts_survive_restarts(running: Running) -> None:
    config = ServerConfig(job_handle_prefix="dur", job_retries=2)
    await running.restart(config)
    c = await running.connect()
    await c.send(SubmitJobBg(b"f", b"u", b"x"))
    handle = await c.created()
    for attempts in (1, 2):
        w = await worker(running, b"f")
        assert (await grab(w)).handle == handle
        await w.aclose()  # S9: lost, requeued, one attempt more
        [job] = await running.settled()
        assert (job.handle, job.attempts) == (handle, attempts)
        await running.restart(config)
        [job] = await running.stored()
        assert (job.handle, job.attempts) == (handle, attempts)
    # Two re-runs are spent: the third loss ends the job for good.
    w = await worker(running, b"f")
    assert (await grab(w)).handle == handle
    await w.aclose()
    assert await running.settled() == []
    assert running.srv.statistics().retries_exhausted == 1


async def test_replay_keeps_order_priority_and_handles(running: Running) -> None:
    c = await running.connect()
    kinds = [SubmitJobLowBg, SubmitJobBg, SubmitJobHighBg]
    submitted: dict[bytes, bytes] = {}
    for i in range(12):
        await c.send(kinds[i % 3](b"f", b"", b"%d" % i))
        submitted[b"%d" % i] = await c.created()
    await running.restart()
    w = await worker(running, b"f")
    got = []
    for _ in range(12):
        job = await grab(w)
        assert submitted[job.data] == job.handle
        got.append(int(job.data))
        await w.send(WorkComplete(job.handle, b""))
    high, normal, low = [i for i in range(12) if i % 3 == 2], range(1, 12, 3), range(0, 12, 3)
    assert got == [*high, *normal, *low]
    assert await running.settled() == []


async def test_a_job_running_at_the_restart_runs_again(running: Running) -> None:
    c = await running.connect()
    await c.send(SubmitJobBg(b"f", b"u", b"x"))
    handle = await c.created()
    w = await worker(running, b"f")
    assert (await grab(w)).handle == handle
    await running.restart()  # the worker's WORK_COMPLETE never reaches the server
    w = await worker(running, b"f")
    job = await grab(w)
    assert (job.handle, job.unique, job.data) == (handle, b"u", b"x")


async def test_reducer_survives_a_restart(running: Running) -> None:
    c = await running.connect()
    await c.send(SubmitReduceJobBackground(b"f", b"u", b"red", b"agg", b"x"))
    handle = await c.created()
    await running.restart()
    w = await worker(running, b"f")
    await w.send(GrabJobAll())
    assert await w.recv() == JobAssignAll(handle, b"f", b"u", b"red", b"x")


async def test_epoch_jobs_run_at_their_time_after_a_restart(
    slow_autojump_clock: MockClock, running: Running
) -> None:
    c = await running.connect()
    when = int(time.time()) + 3600
    await c.send(SubmitJobEpoch(b"f", b"later", when, b"x"), SubmitJobBg(b"f", b"now", b"y"))
    later, now = await c.created(), await c.created()
    await running.restart()
    w = await worker(running, b"f")
    job = await grab(w)
    assert job.handle == now  # runnable at once; the epoch job does not block it
    await w.send(WorkComplete(now, b""))
    await no_job(w)
    await w.send(GetStatus(later))
    assert await w.recv() == StatusRes(later, True, False, 0, 0)
    await w.send(PreSleep())
    await w.nothing(1800)  # half-way: still asleep
    assert time.time() < when  # (virtual time: the wall clock did not move)
    ev = await w.recv(within=3600)
    assert isinstance(ev, Noop)
    job = await grab(w)
    assert (job.handle, job.unique) == (later, b"later")
    [stored] = await running.stored()
    assert stored.when == when


async def test_empty_and_repeated_uniques_never_collide(running: Running) -> None:
    c = await running.connect()
    # Empty uniques: every submit is a job of its own.
    empty = []
    for _ in range(5):
        await c.send(SubmitJobBg(b"f", b"", b"same payload"))
        empty.append(await c.created())
    assert len(set(empty)) == 5
    # The same unique while live coalesces (S2), on another function it does not.
    await c.send(SubmitJobBg(b"f", b"dup", b"1"), SubmitJobBg(b"f", b"dup", b"2"))
    first, joined = await c.created(), await c.created()
    assert joined == first
    await c.send(SubmitJobBg(b"g", b"dup", b"3"))
    other = await c.created()
    assert other != first
    # ... and once it ended, the same unique is a new job with a new handle.
    w = await worker(running, b"f")
    while (job := await grab(w)).handle != first:
        await w.send(WorkComplete(job.handle, b""))
    await w.send(WorkComplete(first, b""))
    await c.send(SubmitJobBg(b"f", b"dup", b"4"))
    again = await c.created()
    assert again not in (first, other, *empty)
    await c.send(SubmitJobBg(b"f", b"", b"same payload"))
    last_empty = await c.created()
    stored = await running.settled()
    assert sorted(handles(stored)) == sorted([other, again, last_empty])
    await running.restart()
    by_handle = {j.handle: j for j in await running.stored()}
    assert (by_handle[other].function, by_handle[other].data) == (b"g", b"3")
    assert (by_handle[again].unique, by_handle[again].data) == (b"dup", b"4")
    assert by_handle[last_empty].unique == b""


async def test_handles_are_unique_across_restarts(running: Running) -> None:
    seen: list[bytes] = []
    for _ in range(3):
        c = await running.connect()
        await c.send(SubmitJobBg(b"f", b"", b"x"), SubmitJob(b"f", b"", b"fg"))
        seen.extend([await c.created(), await c.created()])
        await running.restart()
    assert len(set(seen)) == len(seen)
    numbers = [int(h.rsplit(b":", 1)[1]) for h in seen]
    assert numbers == sorted(numbers)
    stored = await running.stored()
    assert handles(stored) == seen[0::2]


async def test_s1_replies_keep_request_order_while_commits_are_in_flight(
    running: Running, gate: Gate
) -> None:
    c = await running.connect()
    w = await worker(running, b"fg")
    gate.close()
    # One connection, foreground and background submits mixed, in three bursts while
    # the first commit is held: replies must come back in request order.
    await c.send(SubmitJobBg(b"bg", b"", b"b1"), SubmitJob(b"fg", b"", b"f1"))
    await wait_until(lambda: gate.arrived >= 1)
    await c.send(SubmitJobHigh(b"fg", b"", b"f2"), SubmitJobLowBg(b"bg", b"", b"b2"))
    await c.send(SubmitJobLow(b"fg", b"", b"f3"), SubmitJobHighBg(b"bg", b"", b"b3"))
    await c.nothing(0.2)
    # Foreground work flows meanwhile: a worker runs f1..f3 and finishes them.
    for _ in range(3):
        job = await grab(w)
        await w.send(WorkComplete(job.handle, b"r-" + job.data))
    gate.open()
    events = await c.recv_n(9)
    created = [e.handle for e in events if isinstance(e, JobCreated)]
    assert len(created) == 6
    numbers = [int(h.rsplit(b":", 1)[1]) for h in created]
    assert numbers == sorted(numbers)  # JOB_CREATED in submit order (handles grow)
    # Each foreground result comes after its own JOB_CREATED.
    for i, e in enumerate(events):
        if isinstance(e, WorkComplete):
            assert e.handle in [x.handle for x in events[:i] if isinstance(x, JobCreated)]
    assert sorted(j.data for j in await running.settled()) == [b"b1", b"b2", b"b3"]


async def test_a_foreground_job_touched_by_a_background_submit_is_stored(
    running: Running,
) -> None:
    fg = await running.connect()
    await fg.send(SubmitJob(b"f", b"shared", b"x"))
    handle = await fg.created()
    assert await running.stored() == []
    bg = await running.connect()
    await bg.send(SubmitJobBg(b"f", b"shared", b"ignored"))
    assert await bg.created() == handle
    [job] = await running.stored()
    assert (job.handle, job.data) == (handle, b"x")
    # Its foreground client leaving no longer drops it (S12), and it survives a restart.
    await fg.aclose()
    await running.restart()
    w = await worker(running, b"f")
    assert (await grab(w)).handle == handle


async def test_a_background_joiner_waits_for_the_commit_of_the_job_it_joins(
    running: Running, gate: Gate
) -> None:
    """Regression: a second background submit with the same unique, arriving while the
    first one's commit is in flight, got JOB_CREATED before the job was stored."""
    a, b = await running.connect(), await running.connect()
    gate.close()
    await a.send(SubmitJobBg(b"f", b"u", b"x"))
    await wait_until(lambda: gate.arrived >= 1)
    await b.send(SubmitJobBg(b"f", b"u", b"x"))
    await b.nothing(0.3)
    # Also when the job is still waiting for its commit to start.
    await a.send(SubmitJobBg(b"g", b"v", b"y"))
    c = await running.connect()
    await c.send(SubmitJobBg(b"g", b"v", b"y"))
    await c.nothing(0.3)
    gate.open()
    h = await a.created()
    assert await b.created() == h
    h2 = await a.created()
    assert await c.created() == h2
    assert sorted(handles(await running.stored())) == sorted([h, h2])


async def test_a_foreground_job_joined_twice_by_background_submits(
    running: Running, gate: Gate
) -> None:
    fg = await running.connect()
    await fg.send(SubmitJob(b"f", b"shared", b"x"))
    handle = await fg.created()
    gate.close()
    b1, b2 = await running.connect(), await running.connect()
    await b1.send(SubmitJobBg(b"f", b"shared", b""))
    await trio.sleep(0.05)
    await b2.send(SubmitJobBg(b"f", b"shared", b""))
    await b1.nothing(0.2)
    await b2.nothing(0.1)
    gate.open()
    assert await b1.created() == handle
    assert await b2.created() == handle
    assert handles(await running.stored()) == [handle]


async def test_a_failed_commit_gets_queue_error_and_stores_nothing(
    running: Running, gate: Gate
) -> None:
    """S19: a background submit whose commit fails gets ERROR QUEUE_ERROR "Job could not
    be stored" (the text the failure tests expect), never JOB_CREATED, and is not a job;
    once commits work again the same submit is stored and acknowledged."""
    c = await running.connect()
    w = await worker(running, b"f")
    gate.failing = True
    await c.send(SubmitJobBg(b"f", b"u", b"x"))
    assert await c.recv() == Error(b"QUEUE_ERROR", b"Job could not be stored")
    await no_job(w)
    assert await running.stored() == []
    gate.failing = False
    await c.send(SubmitJobBg(b"f", b"u", b"x"))
    handle = await c.created()
    assert handles(await running.stored()) == [handle]
    assert (await grab(w)).handle == handle
