"""Per-packet work does not grow with the number of functions (issue: one peer could
freeze the single dispatcher).  GRAB_JOB costs the work it finds, GET_STATUS_UNIQUE one
lookup, CANT_DO one lookup, and a worker's disconnect a step per function of its own.

The work is counted as lines of trigear's code run (``sys.settrace``), not timed: the
counts are exact and the tests fail before the indexes existed by orders of magnitude.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest
import trio

import trigear
from trigear.protocol.packets import (
    AdminCommand,
    CanDo,
    CantDo,
    EchoReq,
    EchoRes,
    GetStatusUnique,
    GrabJob,
    JobAssign,
    NoJob,
    Noop,
    PreSleep,
    StatusResUnique,
    SubmitJob,
    SubmitJobBg,
    SubmitJobHigh,
    SubmitJobLow,
    WorkComplete,
)
from trigear.server import ServerConfig
from trigear.server.functions import DROP_CHUNK, INDEX_FROM

from ..memory_peer import Peer as MemoryPeer
from .dispatcher_harness import Harness

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from trigear.server import Server

MANY = 20_000
UNLIMITED = ServerConfig(
    job_handle_prefix="t", max_functions_per_connection=0, max_idle_functions=0
)


def lines_run(fn: Callable[[], object]) -> int:
    """How many lines of trigear's code ``fn()`` runs."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if "trigear" in frame.f_code.co_filename else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        fn()
    finally:
        sys.settrace(before)
    return count


def big_worker(h: Harness, n: int = MANY) -> Any:
    w = h.peer()
    for i in range(n):
        h.d.handle(w, CanDo(b"f%d" % i))
    return w


def test_grab_with_nothing_queued_does_not_look_at_every_function() -> None:
    h = Harness(UNLIMITED)
    w = big_worker(h)
    assert lines_run(lambda: h.d.handle(w, GrabJob())) < 60
    assert h.recv(w) == [NoJob()]


def test_grab_finds_the_one_queued_job_among_many_functions() -> None:
    h = Harness(UNLIMITED)
    w = big_worker(h)
    c = h.peer()
    h.send(c, SubmitJobBg(b"f%d" % (MANY - 1), b"", b"last"))
    assert lines_run(lambda: h.d.handle(w, GrabJob())) < 120
    (ev,) = h.recv(w)
    assert isinstance(ev, JobAssign)
    assert ev.data == b"last"


def test_pre_sleep_with_nothing_queued_is_answered_by_sleeping() -> None:
    h = Harness(UNLIMITED)
    w = big_worker(h, 100)
    h.send(w, PreSleep())
    c = h.peer()
    h.send(c, SubmitJobBg(b"f99", b"", b"x"))
    assert h.recv(w)  # NOOP
    assert h.grab(w)


def test_get_status_unique_is_one_lookup() -> None:
    h = Harness(UNLIMITED)
    c = h.peer()
    for i in range(MANY):
        h.d.handle(c, SubmitJobBg(b"f%d" % i, b"u%d" % i, b""))
    h.recv(c)
    assert lines_run(lambda: h.d.handle(c, GetStatusUnique(b"nope"))) < 60
    assert h.recv(c) == [StatusResUnique(b"nope", False, False, 0, 0, 0)]
    assert lines_run(lambda: h.d.handle(c, GetStatusUnique(b"u7"))) < 60
    assert h.recv(c) == [StatusResUnique(b"u7", True, False, 0, 0, 0)]


def test_get_status_unique_with_one_unique_in_two_functions_takes_the_oldest() -> None:
    h = Harness(UNLIMITED)
    c = h.peer()
    h.send(c, SubmitJobBg(b"a", b"u", b""), SubmitJob(b"b", b"u", b""))
    assert h.send(c, GetStatusUnique(b"u")) == [StatusResUnique(b"u", True, False, 0, 0, 0)]
    w = h.peer(b"a")
    h.grab(w)
    h.send(w, WorkComplete(b"H:t:1", b""))
    assert h.send(c, GetStatusUnique(b"u")) == [StatusResUnique(b"u", True, False, 0, 0, 1)]


def test_cant_do_and_a_small_workers_disconnect_cost_one_lookup() -> None:
    h = Harness(UNLIMITED)
    w = big_worker(h)
    assert lines_run(lambda: h.d.handle(w, CantDo(b"f5"))) < 80
    assert b"f5" not in w.abilities
    assert len(w.abilities) == MANY - 1
    small = h.peer(b"f6")
    assert lines_run(lambda: h.d.disconnect(small)) < 120
    # A worker's own functions go at one step each, over the passes that follow.
    assert lines_run(lambda: h.d.disconnect(w)) < 40
    assert lines_run(lambda: settle(h)) < 40 * MANY
    assert h.d.funcs == {}


def send_admin(h: Harness, line: bytes) -> bytes:
    admin = h.peer()
    h.d.handle(admin, AdminCommand(line))
    return h.text(admin)


def settle(h: Harness) -> int:
    """Run the dispatcher's passes while it has a deadline due now: how many."""
    passes = 0
    while True:
        t, _ = h.d.next_deadline()
        if t is None or t > h.d.now:
            return passes
        h.d.tick()
        passes += 1


def test_a_many_function_workers_disconnect_is_bounded_work_per_pass() -> None:
    """A worker leaving with 20,000 functions is detached at once; its functions are
    let go of DROP_CHUNK per pass, and afterwards everything is as if at once."""
    h = Harness(ServerConfig(job_handle_prefix="t", max_functions_per_connection=0))
    w = big_worker(h)
    c = h.peer()
    other = h.peer(b"f3", b"f19999")
    h.send(other, PreSleep())  # S5: asleep on functions the big worker had too
    h.send(w, PreSleep())
    # The pass that handles the disconnect does a bounded amount of work ...
    assert lines_run(lambda: h.d.disconnect(w)) < 40
    # ... and so does each pass after it.
    t, _ = h.d.next_deadline()
    assert t is not None
    assert t <= h.d.now
    assert lines_run(h.d.tick) < 40 * DROP_CHUNK
    # Meanwhile a job of one of its functions wakes the live sleeper only (S5) and
    # goes to it.
    h.send(c, SubmitJobBg(b"f3", b"", b"x"))
    assert h.recv(other) == [Noop()]
    assert w.out == []
    assert h.grab(other)
    h.send(c, SubmitJobBg(b"f%d" % (MANY - 1), b"", b"y"), SubmitJobBg(b"f9", b"", b"z"))
    passes = settle(h)
    assert 0 < passes <= -(-MANY // DROP_CHUNK)
    # Afterwards: no function lists it, records are released per max_idle_functions
    # (the default keeps them all, as gearmand does), the other worker still works.
    assert all(w not in f.workers and w not in f.sleepers for f in h.d.funcs.values())
    assert all(w not in (f.indexed or ()) for f in h.d.funcs.values())
    assert w.ready is None
    # The most recently let go of are kept (f19999 has a worker, so one more).
    idle = ServerConfig().max_idle_functions
    kept = [b"f%d" % i for i in range(MANY - 1 - idle, MANY - 1)]
    assert set(h.d.funcs) == {b"f3", b"f9", b"f19999", *kept}  # as when let go at once
    assert h.grab(other)
    status = {
        line.split(b"\t")[0]: line.split(b"\t")[1:]
        for line in send_admin(h, b"status").splitlines()[:-1]
    }
    assert status[b"f3"] == [b"1", b"1", b"1"]
    assert status[b"f9"] == [b"1", b"0", b"0"]
    assert status[b"f19000"] == [b"0", b"0", b"0"]
    assert status[b"f19999"] == [b"1", b"1", b"1"]


def test_admin_and_records_are_exact_while_a_disconnect_is_pending() -> None:
    """An admin answer lets go of the rest first: the counts never include a worker
    that left; unused records are freed per ``max_idle_functions``."""
    h = Harness(
        ServerConfig(job_handle_prefix="t", max_functions_per_connection=0, max_idle_functions=10)
    )
    w = big_worker(h)
    other = h.peer(b"f1")
    h.d.disconnect(w)
    assert len(h.d.funcs) == MANY  # not let go of yet
    text = send_admin(h, b"status")
    lines = text.splitlines()
    assert lines[-1] == b"."
    rows = {ln.split(b"\t")[0]: ln.split(b"\t")[1:] for ln in lines[:-1]}
    assert rows[b"f1"] == [b"0", b"0", b"1"]
    assert len(rows) == 11  # f1 and the 10 most recently let go
    assert all(r[2] == b"0" for n, r in rows.items() if n != b"f1")
    t, _ = h.d.next_deadline()
    assert t is None
    h.d.disconnect(other)
    assert len(h.d.funcs) == 10


# --- the indexed worker keeps the scheduling rules (S3, S9) ---------------------------

PAD = [b"pad%d" % i for i in range(INDEX_FROM)]


def test_indexed_worker_priority_is_global_across_functions() -> None:
    h = Harness(UNLIMITED)
    c = h.peer()
    h.send(
        c,
        SubmitJobLow(b"f1", b"", b"f1-low"),
        SubmitJob(b"f1", b"", b"f1-normal"),
        SubmitJobHigh(b"f2", b"", b"f2-high"),
        SubmitJob(b"f2", b"", b"f2-normal"),
        SubmitJobLow(b"f2", b"", b"f2-low"),
        SubmitJobHigh(b"f1", b"", b"f1-high"),
    )
    w = h.peer(b"f1", b"f2", *PAD)
    assert w.ready is not None
    got = []
    for _ in range(6):
        (ev,) = h.send(w, GrabJob())
        assert isinstance(ev, JobAssign)
        got.append(ev.data)
    assert got == [b"f1-high", b"f2-high", b"f1-normal", b"f2-normal", b"f1-low", b"f2-low"]
    assert h.send(w, GrabJob()) == [NoJob()]


def test_indexed_worker_round_robin_and_jobs_arriving_later() -> None:
    h = Harness(UNLIMITED)
    w = h.peer(*PAD, b"a", b"b")
    c = h.peer()
    for i in range(3):
        h.send(c, SubmitJob(b"a", b"", b"a%d" % i))
    for i in range(3):
        h.send(c, SubmitJob(b"b", b"", b"b%d" % i))
    datas = []
    for _ in range(6):
        (ev,) = h.send(w, GrabJob())
        assert isinstance(ev, JobAssign)
        datas.append(ev.data)
    assert datas == [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2"]


def test_indexed_worker_gets_requeued_jobs_first_and_skips_ended_ones() -> None:
    h = Harness(UNLIMITED)
    c = h.peer()
    for i in range(3):
        h.send(c, SubmitJob(b"f", b"", b"%d" % i))
    w1 = h.peer(b"f", *PAD)
    assert h.grab(w1) == b"H:t:1"
    h.d.disconnect(w1)  # back to the head of its queue (S9)
    assert h.d.cancel(b"H:t:2")
    w2 = h.peer(*PAD, b"f")
    assert [h.grab(w2) for _ in range(2)] == [b"H:t:1", b"H:t:3"]
    assert h.send(w2, GrabJob()) == [NoJob()]


@pytest.mark.skipif(
    trigear.compiled, reason="replaces Dispatcher.handle, which a compiled class does not allow"
)
async def test_one_peer_pipelining_grabs_does_not_hold_the_others(
    server: Server,
) -> None:
    """3000 pipelined GRAB_JOBs in one read: another peer's ECHO is handled before
    they all are (each message to the dispatcher holds at most 64 events)."""
    d = server.dispatcher
    order: list[int] = []
    handle = d.handle

    def recording(peer: Any, event: Any) -> None:
        order.append(peer.id)
        handle(peer, event)

    d.handle = recording  # type: ignore[method-assign]
    flood = MemoryPeer(server.connect_in_memory())
    other = MemoryPeer(server.connect_in_memory())
    await trio.testing.wait_all_tasks_blocked()
    await flood.send(CanDo(b"f"))
    await other.send(EchoReq(b"hi"))
    assert await other.recv() == EchoRes(b"hi")
    order.clear()
    await flood.send(*[GrabJob()] * 3000)
    await other.send(EchoReq(b"me too"))
    assert await other.recv() == EchoRes(b"me too")
    (other_at,) = [i for i, p in enumerate(order) if p != order[0]]
    assert other_at < 1000, other_at
    assert len(await flood.recv_n(3000)) == 3000


@pytest.mark.parametrize("n", [1, INDEX_FROM + 1])
def test_records_of_unused_functions_beyond_the_idle_limit_are_freed(n: int) -> None:
    """A function with no workers, no jobs and no maxqueue setting is kept, as gearmand
    keeps it, but only the ``max_idle_functions`` most recently let go."""
    h = Harness(ServerConfig(job_handle_prefix="t", max_idle_functions=1))
    c = h.peer()
    w = h.peer(*[b"f%d" % i for i in range(n)])
    h.send(c, SubmitJob(b"f0", b"", b"x"), SubmitJobBg(b"other", b"", b"y"))
    h.grab(w)
    h.d.disconnect(w)  # f0's job is requeued: f0 stays; the others are let go
    assert set(h.d.funcs) == {b"f0", b"other"} | ({b"f%d" % (n - 1)} if n > 1 else set())
    h.d.disconnect(c)  # f0's job had only that client (S12): dropped, f0 let go
    assert set(h.d.funcs) == {b"f0", b"other"}
    admin = h.peer()
    h.d.handle(admin, AdminCommand(b"maxqueue kept 5"))
    w2 = h.peer(b"kept")
    h.d.disconnect(w2)
    assert b"kept" in h.d.funcs  # it has a maxqueue setting
    assert set(h.d.funcs) == {b"f0", b"other", b"kept"}
    # Used again after being let go, the oldest idle one is not freed under its user.
    w3 = h.peer(b"f0")
    h.d.disconnect(h.peer(b"new"))
    assert b"f0" in h.d.funcs
    assert b"new" in h.d.funcs
    h.d.disconnect(w3)
    assert b"new" not in h.d.funcs
    assert b"f0" in h.d.funcs
