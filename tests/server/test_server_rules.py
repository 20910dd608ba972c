"""The S-rules of the spec, each shown over in-memory connections to a running Server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from trigear.protocol.packets import (
    CanDo,
    CanDoTimeout,
    CantDo,
    EchoReq,
    EchoRes,
    Error,
    GetStatus,
    GetStatusUnique,
    GrabJob,
    GrabJobAll,
    GrabJobUniq,
    JobAssign,
    JobAssignAll,
    JobAssignUniq,
    JobCreated,
    NoJob,
    Noop,
    OptionReq,
    OptionRes,
    PreSleep,
    ResetAbilities,
    SetClientId,
    StatusRes,
    StatusResUnique,
    SubmitJob,
    SubmitJobBg,
    SubmitJobEpoch,
    SubmitJobHigh,
    SubmitJobHighBg,
    SubmitJobLow,
    SubmitJobLowBg,
    SubmitJobSched,
    SubmitReduceJob,
    SubmitReduceJobBackground,
    WorkComplete,
    WorkData,
    WorkException,
    WorkFail,
    WorkStatus,
    WorkWarning,
)
from trigear.server import Server, ServerConfig

from ..memory_peer import Connect, Peer

if TYPE_CHECKING:
    from trio.testing import MockClock


async def created(peer: Peer) -> bytes:
    ev = await peer.recv()
    assert isinstance(ev, JobCreated), ev
    return ev.handle


async def worker(connect: Connect, *functions: bytes) -> Peer:
    w = await connect()
    await w.send(*(CanDo(f) for f in functions))
    return w


async def grab(w: Peer) -> JobAssignUniq:
    await w.send(GrabJobUniq())
    ev = await w.recv()
    assert isinstance(ev, JobAssignUniq), ev
    return ev


# --- S1 / S2 -------------------------------------------------------------------------


async def test_s1_every_submit_variant_gets_job_created_in_order(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(
        SubmitJob(b"f", b"", b"1"),
        SubmitJobBg(b"f", b"", b"2"),
        SubmitJobHigh(b"f", b"", b"3"),
        SubmitJobHighBg(b"f", b"", b"4"),
        SubmitJobLow(b"f", b"", b"5"),
        SubmitJobLowBg(b"f", b"", b"6"),
        SubmitJobEpoch(b"f", b"", 1, b"7"),
        SubmitReduceJob(b"f", b"", b"r", b"a", b"8"),
        SubmitReduceJobBackground(b"f", b"", b"r", b"a", b"9"),
    )
    handles = [await created(c) for _ in range(9)]
    numbers = [int(h.rsplit(b":", 1)[1]) for h in handles]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == 9
    assert all(h.startswith(b"H:test:") for h in handles)


async def test_s2_coalescing_by_function_and_unique(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c1, c2, c3 = await connect(), await connect(), await connect()
    await c1.send(SubmitJob(b"f", b"same", b"first"))
    h = await created(c1)
    await c2.send(SubmitJobHigh(b"f", b"same", b"second"))
    await c3.send(SubmitJobBg(b"f", b"same", b"third"))
    assert await created(c2) == h
    assert await created(c3) == h
    # Another function, same unique: a different job.
    await c1.send(SubmitJob(b"g", b"same", b"x"))
    assert await created(c1) != h
    w = await worker(connect, b"f")
    job = await grab(w)
    assert (job.handle, job.data, job.unique) == (h, b"first", b"same")
    await w.send(WorkData(h, b"d"), WorkComplete(h, b"done"))
    for c in (c1, c2):
        assert await c.recv() == WorkData(h, b"d")
        assert await c.recv() == WorkComplete(h, b"done")
    await c3.nothing()


async def test_s2_one_attachment_per_submit_not_per_connection(
    autojump_clock: MockClock, connect: Connect
) -> None:
    """One connection submits one unique twice: JOB_CREATED twice, then every WORK_*
    twice, each packet's copies together, so each of its tasks ends once (gearmand's
    bytes, see tests/interop/test_per_submit_wire.py).  The waiting count counts submits,
    and they all go with the connection."""
    c, other = await connect(), await connect()
    await c.send(SubmitJob(b"f", b"u1", b"one"), SubmitJob(b"f", b"u1", b"two"))
    h = await created(c)
    assert await created(c) == h
    await other.send(SubmitJob(b"f", b"u1", b"three"))
    assert await created(other) == h
    await other.send(GetStatusUnique(b"u1"))
    assert await other.recv() == StatusResUnique(b"u1", True, False, 0, 0, 3)
    w = await worker(connect, b"f")
    job = await grab(w)
    assert (job.handle, job.data) == (h, b"one")
    await w.send(WorkData(h, b"d"), WorkStatus(h, b"1", b"2"), WorkComplete(h, b"result"))
    assert await c.recv_n(6) == [
        WorkData(h, b"d"),
        WorkData(h, b"d"),
        WorkStatus(h, b"1", b"2"),
        WorkStatus(h, b"1", b"2"),
        WorkComplete(h, b"result"),
        WorkComplete(h, b"result"),
    ]
    assert await other.recv_n(3) == [
        WorkData(h, b"d"),
        WorkStatus(h, b"1", b"2"),
        WorkComplete(h, b"result"),
    ]
    await c.nothing()
    # Two submits again; when the connection goes, both attachments go (S12).
    await c.send(SubmitJob(b"f", b"u2", b"a"), SubmitJob(b"f", b"u2", b"b"))
    h2 = await created(c)
    assert await created(c) == h2
    await other.send(SubmitJob(b"f", b"u2", b"c"), GetStatusUnique(b"u2"))
    assert await created(other) == h2
    assert await other.recv() == StatusResUnique(b"u2", True, False, 0, 0, 3)
    await c.stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    await other.send(GetStatusUnique(b"u2"))
    assert await other.recv() == StatusResUnique(b"u2", True, False, 0, 0, 1)


async def test_s2_empty_unique_never_coalesces_and_dash_means_payload(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJobBg(b"f", b"", b"p"), SubmitJobBg(b"f", b"", b"p"))
    assert await created(c) != await created(c)
    await c.send(
        SubmitJobBg(b"f", b"-", b"pl"),
        SubmitJobBg(b"f", b"-", b"pl"),
        SubmitJobBg(b"f", b"-", b"x"),
    )
    a, b, other = await created(c), await created(c), await created(c)
    assert a == b != other


async def test_s2_64_byte_unique_kept_exact_65_refused(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    u64 = b"u" * 64
    await c.send(SubmitJobBg(b"f", u64, b"1"), SubmitJobBg(b"f", u64, b"2"))
    assert await created(c) == await created(c)
    await c.send(SubmitJobBg(b"f", u64[:63], b"3"))
    await created(c)
    w = await worker(connect, b"f")
    job = await grab(w)
    assert job.unique == u64
    assert job.data == b"1"
    await c.send(SubmitJobBg(b"f", b"u" * 65, b"4"))
    assert await c.recv() == Error(b"ARGUMENT_TOO_LARGE", b"Unique value too large")
    await c.send(EchoReq(b"still here"))
    assert await c.recv() == EchoRes(b"still here")


# --- S3 / S4 -------------------------------------------------------------------------


async def test_s3_priority_global_across_functions(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(
        SubmitJobLowBg(b"a", b"", b"a-low"),
        SubmitJobBg(b"b", b"", b"b-normal"),
        SubmitJobHighBg(b"b", b"", b"b-high"),
        SubmitJobBg(b"a", b"", b"a-normal"),
        SubmitJobHighBg(b"a", b"", b"a-high"),
    )
    for _ in range(5):
        await created(c)
    w = await worker(connect, b"a", b"b")
    order = [(await grab(w)).data for _ in range(5)]
    assert order[:2] in ([b"a-high", b"b-high"], [b"b-high", b"a-high"])
    assert sorted(order[2:4]) == [b"a-normal", b"b-normal"]
    assert order[4] == b"a-low"


async def test_s3_fifo_within_a_level_and_fair_across_functions(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(*(SubmitJobBg(b"a", b"", b"a%d" % i) for i in range(3)))
    await c.send(*(SubmitJobBg(b"b", b"", b"b%d" % i) for i in range(3)))
    for _ in range(6):
        await created(c)
    w = await worker(connect, b"a", b"b")
    order = [(await grab(w)).data for _ in range(6)]
    assert order == [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2"]


async def test_s4_grab_variants(autojump_clock: MockClock, connect: Connect) -> None:
    c = await connect()
    await c.send(
        SubmitJobBg(b"f", b"u1", b"d1"),
        SubmitJobBg(b"f", b"u2", b"d2"),
        SubmitReduceJobBackground(b"f", b"u3", b"red", b"agg", b"d3"),
        SubmitJobBg(b"f", b"u4", b"d4"),
    )
    h = [await created(c) for _ in range(4)]
    w = await worker(connect, b"f")
    await w.send(GrabJob())
    assert await w.recv() == JobAssign(h[0], b"f", b"d1")
    await w.send(GrabJobUniq())
    assert await w.recv() == JobAssignUniq(h[1], b"f", b"u2", b"d2")
    await w.send(GrabJobAll())
    assert await w.recv() == JobAssignAll(h[2], b"f", b"u3", b"red", b"d3")
    await w.send(GrabJobAll())
    assert await w.recv() == JobAssignUniq(h[3], b"f", b"u4", b"d4")
    await w.send(GrabJob(), GrabJobUniq(), GrabJobAll())
    assert await w.recv_n(3) == [NoJob(), NoJob(), NoJob()]
    # One connection holds several jobs at once, and can finish them in any order.
    for handle in reversed(h):
        await w.send(WorkComplete(handle, b""))
    await w.send(EchoReq(b"x"))
    assert await w.recv() == EchoRes(b"x")


# --- S5 ------------------------------------------------------------------------------


async def test_s5_pre_sleep_and_one_noop_per_sleep(
    autojump_clock: MockClock, connect: Connect
) -> None:
    w = await worker(connect, b"f")
    await w.send(PreSleep())
    await w.nothing()
    c = await connect()
    await c.send(SubmitJobBg(b"f", b"", b"1"), SubmitJobBg(b"f", b"", b"2"))
    await created(c)
    await created(c)
    assert await w.recv() == Noop()
    await w.nothing()
    # With jobs queued, PRE_SLEEP is answered at once.
    await w.send(PreSleep())
    assert await w.recv() == Noop()


async def test_s5_other_functions_do_not_wake(autojump_clock: MockClock, connect: Connect) -> None:
    w = await worker(connect, b"f")
    await w.send(PreSleep())
    c = await connect()
    await c.send(SubmitJobBg(b"g", b"", b"1"))
    await created(c)
    await w.nothing()


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", worker_wakeup=1)])
async def test_s5_worker_wakeup_bounds_noops(autojump_clock: MockClock, connect: Connect) -> None:
    sleepers = [await worker(connect, b"f") for _ in range(3)]
    for s in sleepers:
        await s.send(PreSleep())
    c = await connect()
    await c.send(SubmitJobBg(b"f", b"", b"1"))
    await created(c)
    assert await sleepers[0].recv() == Noop()
    await sleepers[1].nothing(0.1)
    await sleepers[2].nothing(0.1)


# --- S6 / S7 / S8 --------------------------------------------------------------------


async def test_s6_progress_to_foreground_clients_and_status_for_background(
    autojump_clock: MockClock,
    connect: Connect,
) -> None:
    c = await connect()
    await c.send(SubmitJobBg(b"f", b"", b"bg"))
    h = await created(c)
    w = await worker(connect, b"f")
    await grab(w)
    await w.send(WorkStatus(h, b"3", b"10"), WorkData(h, b"x"), WorkWarning(h, b"y"))
    await c.send(GetStatus(h))
    assert await c.recv() == StatusRes(h, True, True, 3, 10)


async def test_s7_exception_to_clients_that_asked_fail_without_stray_nul(
    autojump_clock: MockClock,
    connect: Connect,
) -> None:
    cx, cn = await connect(), await connect()
    await cx.send(OptionReq(b"exceptions"))
    assert await cx.recv() == OptionRes(b"exceptions")
    await cx.send(SubmitJob(b"f", b"k", b"d"))
    h = await created(cx)
    await cn.send(SubmitJob(b"f", b"k", b"d"))
    assert await created(cn) == h
    w = await worker(connect, b"f")
    await grab(w)
    await w.send(WorkException(h, b"boom\0x"))
    assert await cx.recv() == WorkException(h, b"boom\0x")
    fail = await cn.recv()
    assert fail == WorkFail(h)
    await cx.send(GetStatus(h))
    assert await cx.recv() == StatusRes(h, False, False, 0, 0)


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", exceptions=True)])
async def test_s7_server_exceptions_option_sends_to_all(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"d"))
    h = await created(c)
    w = await worker(connect, b"f")
    await grab(w)
    await w.send(WorkException(h, b"e"))
    assert await c.recv() == WorkException(h, b"e")


async def test_s8_forged_results_change_nothing(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"d"))
    h = await created(c)
    owner = await worker(connect, b"f")
    await grab(owner)
    forger = await worker(connect, b"f")
    await forger.send(WorkComplete(h, b"forged"))
    assert await forger.recv() == Error(b"JOB_NOT_FOUND", b"Job given in work result not found")
    await forger.send(WorkData(h, b"forged"))
    assert await forger.recv() == Error(b"JOB_NOT_FOUND", b"Job does not exist on server")
    await forger.send(WorkException(h, b"forged"))
    assert await forger.recv() == Error(
        b"JOB_NOT_FOUND", b"An exception was received for a job that does not exist"
    )
    await c.nothing(0.1)
    await owner.send(WorkComplete(h, b"real"))
    assert await c.recv() == WorkComplete(h, b"real")


# --- S9 / S10 / S11 ------------------------------------------------------------------


async def test_s9_worker_loss_requeues_under_same_handle(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"d"))
    h = await created(c)
    w1 = await worker(connect, b"f")
    assert (await grab(w1)).handle == h
    await w1.aclose()
    w2 = await worker(connect, b"f")
    assert (await grab(w2)).handle == h
    await w2.send(ResetAbilities())
    w3 = await worker(connect, b"f")
    assert (await grab(w3)).handle == h
    await w3.send(CantDo(b"f"))
    w4 = await worker(connect, b"f")
    assert (await grab(w4)).handle == h
    await w4.send(WorkComplete(h, b"ok"))
    assert await c.recv() == WorkComplete(h, b"ok")
    admin = await connect()
    assert await admin.admin("show jobs") == b".\n"


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", job_retries=1)])
async def test_s10_retries_spent_fail_the_job(
    autojump_clock: MockClock, connect: Connect, server: Server
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"d"))
    h = await created(c)
    for _ in range(2):
        w = await worker(connect, b"f")
        await grab(w)
        await w.aclose()
    assert await c.recv() == WorkFail(h)
    assert server.statistics().retries_exhausted == 1
    w = await worker(connect, b"f")
    await w.send(GrabJobUniq())
    assert await w.recv() == NoJob()


async def test_s11_can_do_timeout_requeues_and_late_result_is_refused(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"d"))
    h = await created(c)
    slow = await connect()
    await slow.send(CanDoTimeout(b"f", 500))
    await grab(slow)
    fast = await worker(connect, b"f")
    await fast.send(PreSleep())
    assert await fast.recv() == Noop()  # woken when the timed-out job is requeued
    assert (await grab(fast)).handle == h
    await slow.send(WorkComplete(h, b"late"))
    assert await slow.recv() == Error(b"JOB_NOT_FOUND", b"Job given in work result not found")
    await fast.send(WorkComplete(h, b"on time"))
    assert await c.recv() == WorkComplete(h, b"on time")


# --- S12 / S13 / S14 -----------------------------------------------------------------


async def test_s12_queued_job_of_departed_client_is_not_dispatched(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"gone", b"d"))
    await created(c)
    await c.aclose()
    keep = await connect()
    await keep.send(SubmitJob(b"f", b"", b"keep"))
    await created(keep)
    w = await worker(connect, b"f")
    assert (await grab(w)).data == b"keep"


async def test_s12_job_touched_by_background_submit_survives_client_loss(
    autojump_clock: MockClock,
    connect: Connect,
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"k", b"d"), SubmitJobBg(b"f", b"k", b"d"))
    h = await created(c)
    assert await created(c) == h
    await c.aclose()
    w = await worker(connect, b"f")
    assert (await grab(w)).handle == h


async def test_s12_running_job_finishes_result_dropped(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJob(b"f", b"", b"d"))
    h = await created(c)
    w = await worker(connect, b"f")
    await grab(w)
    await c.aclose()
    await w.send(WorkComplete(h, b"r"), EchoReq(b"x"))
    assert await w.recv() == EchoRes(b"x")


async def test_s13_status_and_status_unique(autojump_clock: MockClock, connect: Connect) -> None:
    c = await connect()
    await c.send(GetStatus(b"H:nope:1"))
    assert await c.recv() == StatusRes(b"H:nope:1", False, False, 0, 0)
    await c.send(SubmitJob(b"f", b"su", b"d"))
    h = await created(c)
    c2 = await connect()
    await c2.send(SubmitJob(b"f", b"su", b"d"))
    await created(c2)
    await c.send(GetStatus(h), GetStatusUnique(b"su"), GetStatusUnique(b"nosuch"))
    assert await c.recv() == StatusRes(h, True, False, 0, 0)
    assert await c.recv() == StatusResUnique(b"su", True, False, 0, 0, 2)
    assert await c.recv() == StatusResUnique(b"nosuch", False, False, 0, 0, 0)
    w = await worker(connect, b"f")
    await grab(w)
    await w.send(WorkStatus(h, b"1", b"2"))
    await c.recv()
    await c.send(GetStatusUnique(b"su"))
    assert await c.recv() == StatusResUnique(b"su", True, True, 1, 2, 2)


async def test_s14_echo_options_client_id(autojump_clock: MockClock, connect: Connect) -> None:
    c = await connect()
    await c.send(EchoReq(b"a\0b"), OptionReq(b"EXCEPTIONS"), OptionReq(b"foo"))
    assert await c.recv() == EchoRes(b"a\0b")
    assert await c.recv() == OptionRes(b"EXCEPTIONS")
    assert await c.recv() == Error(b"UNKNOWN_OPTION", b"Server does not recognize given option")
    await c.send(SetClientId(b"my-worker"), CanDo(b"fa"), CanDo(b"fb"))
    admin = await connect()
    listing = await admin.admin("workers")
    assert b" my-worker : fb fa\n" in listing


# --- S15 / S16 / S17 / S18 -----------------------------------------------------------


async def test_s15_epoch_job_waits_for_its_time_without_blocking_others(
    autojump_clock: MockClock, connect: Connect, server: Server
) -> None:
    c = await connect()
    when = int(server.dispatcher.wall) + 5
    await c.send(SubmitJobEpoch(b"f", b"", when, b"later"), SubmitJobBg(b"f", b"", b"now"))
    await created(c)
    await created(c)
    w = await worker(connect, b"f")
    assert (await grab(w)).data == b"now"
    await w.send(GrabJobUniq())
    assert await w.recv() == NoJob()
    await w.send(PreSleep())
    assert await w.recv() == Noop()  # woken by the timer (virtual clock)
    assert int(server.dispatcher.wall) >= when
    assert (await grab(w)).data == b"later"


async def test_s15_bad_epoch_is_an_error(autojump_clock: MockClock, connect: Connect) -> None:
    c = await connect()
    await c.send_raw(b"\0REQ" + (36).to_bytes(4, "big") + (9).to_bytes(4, "big") + b"f\0u\0abc\0d")
    ev = await c.recv()
    assert isinstance(ev, Error)
    assert ev.code == b"INVALID_ARGUMENT"
    await c.send(SubmitJobEpoch(b"f", b"", 0, b"past"))
    await created(c)


async def test_s16_reducer_only_in_job_assign_all(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitReduceJob(b"f", b"u", b"red", b"agg", b"d"))
    h = await created(c)
    w = await worker(connect, b"f")
    await w.send(GrabJobUniq())
    assert await w.recv() == JobAssignUniq(h, b"f", b"u", b"d")
    await w.aclose()
    w2 = await worker(connect, b"f")
    await w2.send(GrabJobAll())
    assert await w2.recv() == JobAssignAll(h, b"f", b"u", b"red", b"d")


async def test_s17_handles_unique_across_restarts(
    autojump_clock: MockClock, nursery: trio.Nursery
) -> None:
    handles = set()
    for _ in range(2):
        srv = Server(ServerConfig(job_handle_prefix="same"))
        await nursery.start(srv.serve)
        peer = Peer(srv.connect_in_memory())
        await peer.send(SubmitJobBg(b"f", b"", b""))
        handles.add(await created(peer))
        srv.shutdown(graceful=False)
    assert len(handles) == 2


async def test_s18_maxqueue_counts_queued_and_running(
    autojump_clock: MockClock, connect: Connect
) -> None:
    admin = await connect()
    assert await admin.admin("maxqueue f 2") == b"OK\r\n"  # before f exists (S18)
    c = await connect()
    await c.send(SubmitJobBg(b"f", b"", b"1"), SubmitJobBg(b"f", b"", b"2"))
    await created(c)
    await created(c)
    w = await worker(connect, b"f")
    await grab(w)
    await c.send(SubmitJobHighBg(b"f", b"", b"3"))
    assert await c.recv() == Error(b"QUEUE_ERROR", b"Job queue is full")
    assert await admin.admin("maxqueue f") == b"OK\r\n"
    await c.send(SubmitJobHighBg(b"f", b"", b"3"))
    await created(c)


# --- S20 -----------------------------------------------------------------------------


async def test_s20_bad_input_answered_and_connection_kept_when_in_sync(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    # \0RES magic: INVALID_MAGIC, connection usable.
    await c.send_raw(b"\0RES" + (16).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"hi")
    assert await c.recv() == Error(b"INVALID_MAGIC", b"Request magic expected")
    # Unknown type, type 5, server-only types, SCHED, ALL_YOURS: INVALID_COMMAND.
    for t in (99, 5, 8, 6):
        await c.send_raw(b"\0REQ" + t.to_bytes(4, "big") + b"\0\0\0\0")
        assert await c.recv() == Error(b"INVALID_COMMAND", b"Command not expected")
    await c.send(SubmitJobSched(b"f", b"", b"1", b"2", b"3", b"4", b"5", b"d"))
    assert await c.recv() == Error(b"INVALID_COMMAND", b"Command not expected")
    # Too few arguments: an error for that packet only.
    await c.send_raw(b"\0REQ" + (7).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"fn")
    ev = await c.recv()
    assert isinstance(ev, Error)
    assert ev.code == b"INVALID_PACKET"
    await c.send(EchoReq(b"alive"))
    assert await c.recv() == EchoRes(b"alive")


async def test_s20_oversize_body_refused_from_header_then_closed(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send_raw(b"\0REQ" + (7).to_bytes(4, "big") + (0xFFFFFFFF).to_bytes(4, "big"))
    ev = await c.recv()
    assert isinstance(ev, Error)
    assert ev.code == b"ARGUMENT_TOO_LARGE"
    assert await c.closed()


async def test_s20_garbage_magic_closes(autojump_clock: MockClock, connect: Connect) -> None:
    c = await connect()
    await c.send_raw(b"\0XYZ" + bytes(8))
    ev = await c.recv()
    assert isinstance(ev, Error)
    assert ev.code == b"INVALID_MAGIC"
    assert await c.closed()


@pytest.mark.parametrize("config", [ServerConfig(job_handle_prefix="t", stall_timeout=5)])
async def test_stalled_mid_packet_closed_idle_kept(
    autojump_clock: MockClock, connect: Connect
) -> None:
    idle = await connect()
    stalled = await connect()
    await stalled.send_raw(b"\0REQ\0\0\0\x10")
    assert await stalled.closed()
    await trio.sleep(60)
    await idle.send(EchoReq(b"x"))
    assert await idle.recv() == EchoRes(b"x")


async def test_peer_that_does_not_read_is_cut_off(nursery: trio.Nursery) -> None:
    """Over a real socket: the kernel's buffers fill up, then the server's bound."""
    srv = Server(ServerConfig(job_handle_prefix="t", max_output=256 * 1024))
    await nursery.start(srv.serve_tcp, 0, ["127.0.0.1"])
    port = srv.listeners[0].socket.getsockname()[1]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    peer = Peer(stream)
    with trio.fail_after(20):
        try:
            for _ in range(2000):
                await peer.send(EchoReq(b"x" * 60000))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        while srv.dispatcher.peers:  # noqa: ASYNC110 - polling server state from outside
            await trio.sleep(0.01)
    await stream.aclose()


async def test_s5_worker_gaining_an_ability_while_asleep_is_woken(
    autojump_clock: MockClock, connect: Connect
) -> None:
    c = await connect()
    await c.send(SubmitJobBg(b"g", b"", b"queued"))
    await created(c)
    w = await worker(connect, b"f")
    await w.send(PreSleep())
    await w.nothing()
    await w.send(CanDo(b"g"))
    assert await w.recv() == Noop()
    assert (await grab(w)).data == b"queued"


async def test_drop_function_refuses_while_jobs_are_queued(
    autojump_clock: MockClock, connect: Connect
) -> None:
    admin = await connect()
    c = await connect()
    await c.send(SubmitJobBg(b"f", b"", b"keep me"))
    await created(c)
    reply = await admin.admin("drop function f")
    assert reply == b"ERR there are still connected workers or executing clients\r\n"
    w = await worker(connect, b"f")
    assert (await grab(w)).data == b"keep me"
    await w.send(WorkComplete((await admin_show_first_handle(admin)), b""))
    await w.send(CantDo(b"f"))
    await w.send(EchoReq(b"sync"))
    assert await w.recv() == EchoRes(b"sync")
    assert await admin.admin("drop function f") == b"OK\r\n"
    assert b"f\t" not in await admin.admin("status")


async def admin_show_first_handle(admin: Peer) -> bytes:
    listing = await admin.admin("show jobs")
    return listing.split(b"\t", 1)[0]
