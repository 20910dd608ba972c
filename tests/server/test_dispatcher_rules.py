"""Example-based tests of Dispatcher rules the state machine reaches rarely, and the
regressions it found."""

from __future__ import annotations

import pytest

from trigear.protocol.packets import (
    AdminCommand,
    CanDoTimeout,
    Error,
    GetStatus,
    GrabJob,
    GrabJobUniq,
    JobAssign,
    JobAssignUniq,
    JobCreated,
    NoJob,
    StatusRes,
    SubmitJob,
    SubmitJobBg,
    SubmitJobEpoch,
    SubmitJobHigh,
    SubmitJobLow,
    WorkComplete,
    WorkFail,
    WorkStatus,
)
from trigear.server.admin import parse_maxqueue
from trigear.server.config import ServerConfig
from trigear.server.state import JobState

from .dispatcher_harness import Harness

# --- S10 retry limit ------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 2])
def test_retry_exhaustion(retries: int) -> None:
    h = Harness(ServerConfig(job_retries=retries, job_handle_prefix="t"))
    c = h.peer()
    assert h.send(c, SubmitJob(b"f", b"", b"x")) == [JobCreated(b"H:t:1")]
    for run in range(retries + 1):
        w = h.peer(b"f")
        assert h.grab(w) == b"H:t:1"
        h.d.disconnect(w)
        if run < retries:
            # S9: requeued under the same handle, the client is not told.
            assert h.recv(c) == []
            assert h.d.jobs[b"H:t:1"].state is JobState.QUEUED
            assert h.d.jobs[b"H:t:1"].attempts == run + 1
    (fail,) = h.recv(c)
    assert type(fail) is WorkFail
    assert fail.handle == b"H:t:1"
    assert h.d.jobs == {}
    assert h.d.funcs[b"f"].total == 0
    assert h.d.stats.retries_exhausted == 1
    assert h.send(h.peer(b"f"), GrabJob()) == [NoJob()]


def test_unlimited_retries_keep_the_job() -> None:
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"", b"x"))
    for _ in range(5):
        w = h.peer(b"f")
        h.grab(w)
        h.d.disconnect(w)
    assert h.recv(c) == []
    assert h.d.jobs[b"H:t:1"].attempts == 5
    w = h.peer(b"f")
    h.grab(w)
    h.send(w, WorkComplete(b"H:t:1", b"ok"))
    assert h.recv(c) == [WorkComplete(b"H:t:1", b"ok")]


def test_background_retry_exhaustion_removes_it_from_the_store() -> None:
    h = Harness(ServerConfig(job_retries=0, job_handle_prefix="t"), durable=True)
    c = h.peer()
    h.send(c, SubmitJobBg(b"f", b"u", b"x"))
    batch = h.d.take_store_batch()
    assert batch is not None
    assert list(batch.add) == [b"H:t:1"]
    h.d.store_done(True)
    assert h.recv(c) == [JobCreated(b"H:t:1")]
    w = h.peer(b"f")
    h.grab(w)
    h.d.disconnect(w)
    assert h.d.jobs == {}
    batch = h.d.take_store_batch()
    assert batch is not None
    assert batch.remove == [b"H:t:1"]


# --- S11 CAN_DO_TIMEOUT -----------------------------------------------------------------


def test_can_do_timeout_requeues_and_late_result_is_not_found() -> None:
    h = Harness()
    c = h.peer()
    slow = h.peer()
    h.send(slow, CanDoTimeout(b"f", 1500))
    h.send(c, SubmitJob(b"f", b"", b"x"))
    h.recv(c)
    assert h.grab(slow) == b"H:t:1"
    assert h.d.next_deadline() == (11.5, None)
    h.d.now = 11.4
    h.d.tick()
    assert h.d.jobs[b"H:t:1"].state is JobState.RUNNING
    h.d.now = 11.5
    h.d.tick()
    job = h.d.jobs[b"H:t:1"]
    assert job.state is JobState.QUEUED
    assert job.attempts == 1
    assert job.worker is None
    assert slow.held == {}
    assert h.d.stats.jobs_timed_out == 1
    # The late result is refused and reaches no client (S8, S11).
    (err,) = h.send(slow, WorkComplete(b"H:t:1", b"late"))
    assert isinstance(err, Error)
    assert err.code == b"JOB_NOT_FOUND"
    assert h.recv(c) == []
    # The next run's result is the one the client gets, once.
    fast = h.peer(b"f")
    assert h.grab(fast) == b"H:t:1"
    h.send(fast, WorkComplete(b"H:t:1", b"on time"))
    assert h.recv(c) == [WorkComplete(b"H:t:1", b"on time")]
    h.d.now = 100.0
    h.d.tick()
    assert h.recv(c) == []
    assert h.d.jobs == {}


def test_can_do_timeout_of_an_old_run_does_not_fire_on_the_next() -> None:
    h = Harness()
    c = h.peer()
    w = h.peer()
    h.send(w, CanDoTimeout(b"f", 1000))
    h.send(c, SubmitJob(b"f", b"", b"x"))
    h.grab(w)
    h.d.now = 11.0
    h.d.tick()  # first run timed out, requeued
    h.d.now = 11.5
    assert h.grab(w) == b"H:t:1"  # second run, deadline 12.5
    h.d.now = 12.0
    h.d.tick()
    assert h.d.jobs[b"H:t:1"].state is JobState.RUNNING
    h.send(w, WorkComplete(b"H:t:1", b"ok"))
    assert h.recv(c)[-1] == WorkComplete(b"H:t:1", b"ok")


# --- S3 priority and fairness -----------------------------------------------------------


def test_priority_is_global_across_functions() -> None:
    h = Harness()
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
    w = h.peer(b"f1", b"f2")
    got = []
    for _ in range(6):
        (ev,) = h.send(w, GrabJob())
        assert isinstance(ev, JobAssign)
        got.append(ev.data)
    # HIGH before NORMAL before LOW, whatever the function; within a level the worker's
    # functions take turns.
    assert got == [b"f1-high", b"f2-high", b"f1-normal", b"f2-normal", b"f1-low", b"f2-low"]
    assert h.send(w, GrabJob()) == [NoJob()]


def test_round_robin_across_a_workers_functions() -> None:
    h = Harness()
    c = h.peer()
    for i in range(4):
        h.send(c, SubmitJob(b"a", b"", b"a%d" % i))
    for i in range(4):
        h.send(c, SubmitJob(b"b", b"", b"b%d" % i))
    w = h.peer(b"a", b"b")
    got = [h.send(w, GrabJob())[0] for _ in range(8)]
    datas = [ev.data for ev in got if isinstance(ev, JobAssign)]
    # Fair: the functions alternate; FIFO within each.
    assert datas == [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2", b"a3", b"b3"]


def test_fifo_within_a_level_and_requeue_goes_first() -> None:
    h = Harness()
    c = h.peer()
    for i in range(3):
        h.send(c, SubmitJob(b"f", b"", b"%d" % i))
    w1 = h.peer(b"f")
    assert h.grab(w1) == b"H:t:1"
    h.d.disconnect(w1)  # H:t:1 goes back to the head of its queue (S9)
    w2 = h.peer(b"f")
    assert [h.grab(w2) for _ in range(3)] == [b"H:t:1", b"H:t:2", b"H:t:3"]


# --- S12 client loss ------------------------------------------------------------------


def test_foreground_job_whose_client_left_is_not_dispatched() -> None:
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"u", b"x"))
    h.d.disconnect(c)
    assert h.d.jobs == {}
    assert h.d.funcs[b"f"].total == 0
    assert h.send(h.peer(b"f"), GrabJob()) == [NoJob()]


def test_job_touched_by_a_background_submit_survives_client_loss() -> None:
    h = Harness()
    fg = h.peer()
    bg = h.peer()
    assert h.send(fg, SubmitJob(b"f", b"u", b"x")) == [JobCreated(b"H:t:1")]
    assert h.send(bg, SubmitJobBg(b"f", b"u", b"other")) == [JobCreated(b"H:t:1")]
    h.d.disconnect(fg)
    w = h.peer(b"f")
    (ev,) = h.send(w, GrabJobUniq())
    assert ev == JobAssignUniq(b"H:t:1", b"f", b"u", b"x")  # first submit's payload (S2)
    h.send(w, WorkComplete(b"H:t:1", b""))
    assert h.d.jobs == {}


def test_running_job_whose_client_left_finishes_and_result_is_dropped() -> None:
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"", b"x"))
    w = h.peer(b"f")
    h.grab(w)
    h.d.disconnect(c)
    assert h.d.jobs[b"H:t:1"].state is JobState.RUNNING
    assert h.send(w, WorkComplete(b"H:t:1", b"r")) == []
    assert h.d.jobs == {}


def test_requeued_job_without_clients_is_dropped() -> None:
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"", b"x"))
    w = h.peer(b"f")
    h.grab(w)
    h.d.disconnect(c)
    h.d.disconnect(w)
    assert h.d.jobs == {}
    assert h.d.funcs[b"f"].total == 0


# --- S18 maxqueue -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "limits"),
    [
        ((b"f",), (0, 0, 0)),
        ((b"f", b"3"), (3, 3, 3)),
        ((b"f", b"1", b"2"), (1, 2, 0)),
        ((b"f", b"1", b"2", b"3"), (1, 2, 3)),
        ((b"f", b"1", b"2", b"3", b"4"), (1, 2, 3)),
        ((b"f", b"0"), (0, 0, 0)),
        ((b"f", b"-5"), (0, 0, 0)),
        ((b"f", b"+4"), (4, 4, 4)),
        ((b"f", b"7x"), (7, 7, 7)),
        ((b"f", b"x"), (0, 0, 0)),
        ((b"f", b"2", b"-1", b"5"), (2, 0, 5)),
    ],
)
def test_parse_maxqueue_reads_numbers_like_gearmand(
    args: tuple[bytes, ...], limits: tuple[int, int, int]
) -> None:
    assert parse_maxqueue(args) == limits


def test_maxqueue_counts_queued_plus_running_per_priority() -> None:
    h = Harness()
    admin = h.peer()
    c = h.peer()
    # Set before the function exists: still applies (S18, unlike gearmand).
    h.d.handle(admin, AdminCommand(b"maxqueue f 1 2"))
    assert h.text(admin) == b"OK\r\n"
    full = Error(b"QUEUE_ERROR", b"Job queue is full")
    assert h.send(c, SubmitJobHigh(b"f", b"hu", b"h1")) == [JobCreated(b"H:t:1")]
    assert h.send(c, SubmitJobHigh(b"f", b"", b"h2")) == [full]
    # A coalescing submit is not a new job: never refused.
    assert h.send(c, SubmitJobHigh(b"f", b"hu", b"h2")) == [JobCreated(b"H:t:1")]
    w = h.peer(b"f")
    h.grab(w)  # running still counts
    assert h.send(c, SubmitJob(b"f", b"", b"n1")) == [JobCreated(b"H:t:2")]
    assert h.send(c, SubmitJob(b"f", b"", b"n2")) == [full]
    # LOW is unlimited with two numbers.
    assert h.send(c, SubmitJobLow(b"f", b"", b"l1")) == [JobCreated(b"H:t:3")]
    # Lifting the limit lets submits in again.
    h.d.handle(admin, AdminCommand(b"maxqueue f"))
    assert h.text(admin) == b"OK\r\n"
    assert h.send(c, SubmitJobHigh(b"f", b"", b"h3")) == [JobCreated(b"H:t:4")]


def test_maxqueue_one_number_and_non_positive_are_unlimited_or_all() -> None:
    h = Harness()
    admin = h.peer()
    c = h.peer()
    h.d.handle(admin, AdminCommand(b"maxqueue f 2"))
    assert h.text(admin) == b"OK\r\n"
    assert h.d.funcs.get(b"f") is None
    h.send(c, SubmitJobLow(b"f", b"u", b"a"), SubmitJobLow(b"f", b"", b"b"))
    full = Error(b"QUEUE_ERROR", b"Job queue is full")
    assert h.send(c, SubmitJobHigh(b"f", b"", b"c")) == [full]
    assert h.send(c, SubmitJob(b"f", b"u", b"joins")) == [JobCreated(b"H:t:1")]
    h.d.handle(admin, AdminCommand(b"maxqueue f -1"))
    assert h.text(admin) == b"OK\r\n"
    assert h.send(c, SubmitJobHigh(b"f", b"", b"c")) == [JobCreated(b"H:t:3")]


def test_maxqueue_with_more_digits_than_int_reads_is_answered() -> None:
    """A size of thousands of digits (more than Python's int() accepts) is a huge limit,
    not an internal error that closes the admin connection."""
    h = Harness()
    admin = h.peer()
    c = h.peer()
    h.d.handle(admin, AdminCommand(b"maxqueue f " + b"9" * 5000))
    assert h.text(admin) == b"OK\r\n"
    assert h.send(c, SubmitJob(b"f", b"", b"x")) == [JobCreated(b"H:t:1")]
    h.d.handle(admin, AdminCommand(b"maxqueue f -" + b"9" * 5000))
    assert h.text(admin) == b"OK\r\n"
    assert h.d.funcs[b"f"].maxqueue == (0, 0, 0)


def test_work_status_numbers_are_read_unsigned_and_saturate() -> None:
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"", b"x"))
    w = h.peer(b"f")
    handle = h.grab(w)
    h.send(w, WorkStatus(handle, b"+5", b"9" * 5000))
    forwarded, status = h.send(c, GetStatus(handle))
    assert forwarded == WorkStatus(handle, b"+5", b"9" * 5000)  # verbatim (S6)
    assert status == StatusRes(handle, True, True, 0, 0xFFFFFFFF)


# --- regressions found by the state machine -------------------------------------------


def test_regression_held_reply_keeps_submit_order() -> None:
    """S1: a foreground JOB_CREATED between two held background ones came back last."""
    h = Harness(durable=True)
    c = h.peer()
    wall = int(h.d.wall)
    h.send(
        c,
        SubmitJobEpoch(b"f", b"", wall, b"a"),
        SubmitJob(b"f", b"", b"b"),
        SubmitJobEpoch(b"f", b"", wall, b"c"),
    )
    assert h.recv(c) == []
    h.d.take_store_batch()
    h.d.store_done(True)
    assert h.recv(c) == [JobCreated(b"H:t:1"), JobCreated(b"H:t:2"), JobCreated(b"H:t:3")]


def test_regression_output_after_a_released_reply_is_not_held_behind_the_next() -> None:
    h = Harness(durable=True)
    c = h.peer()
    h.send(c, SubmitJobBg(b"f", b"", b"a"), SubmitJob(b"f", b"", b"b"))
    h.d.take_store_batch()
    h.send(c, SubmitJobBg(b"f", b"", b"c"))  # goes to the next batch
    h.d.store_done(True)
    assert h.recv(c) == [JobCreated(b"H:t:1"), JobCreated(b"H:t:2")]
    h.d.take_store_batch()
    h.d.store_done(True)
    assert h.recv(c) == [JobCreated(b"H:t:3")]


def test_regression_background_join_waits_for_the_commit() -> None:
    """S19: a background submit coalescing with an uncommitted job got JOB_CREATED at
    once, and kept it when the commit then failed."""
    h = Harness(durable=True)
    a = h.peer()
    b = h.peer()
    assert h.send(a, SubmitJobBg(b"f", b"u", b"x")) == []
    assert h.send(b, SubmitJobBg(b"f", b"u", b"x")) == []
    batch = h.d.take_store_batch()
    assert batch is not None
    assert len(batch.replies) == 2
    h.d.store_done(False)
    stored_failed = Error(b"QUEUE_ERROR", b"Job could not be stored")
    assert h.recv(a) == [stored_failed]
    assert h.recv(b) == [stored_failed]
    assert h.d.jobs == {}


def test_regression_background_join_during_the_commit_waits_for_it() -> None:
    h = Harness(durable=True)
    a = h.peer()
    b = h.peer()
    h.send(a, SubmitJobBg(b"f", b"u", b"x"))
    h.d.take_store_batch()
    assert h.send(b, SubmitJobBg(b"f", b"u", b"x")) == []  # the write is in flight
    h.d.store_done(True)
    assert h.recv(a) == [JobCreated(b"H:t:1")]
    assert h.recv(b) == [JobCreated(b"H:t:1")]
    assert h.d.take_store_batch() is None
    # Once stored, a join is answered at once.
    assert h.send(b, SubmitJobBg(b"f", b"u", b"x")) == [JobCreated(b"H:t:1")]


def test_regression_background_join_after_a_failed_write_stores_again() -> None:
    h = Harness(durable=True)
    fg = h.peer()
    bg = h.peer()
    assert h.send(fg, SubmitJob(b"f", b"u", b"x")) == [JobCreated(b"H:t:1")]
    assert h.send(bg, SubmitJobBg(b"f", b"u", b"x")) == []
    h.d.take_store_batch()
    h.d.store_done(False)
    assert h.recv(bg) == [Error(b"QUEUE_ERROR", b"Job could not be stored")]
    assert h.d.jobs[b"H:t:1"].stored is False
    # The next background join must write it, not answer at once.
    assert h.send(bg, SubmitJobBg(b"f", b"u", b"x")) == []
    batch = h.d.take_store_batch()
    assert batch is not None
    assert list(batch.add) == [b"H:t:1"]
    h.d.store_done(True)
    assert h.recv(bg) == [JobCreated(b"H:t:1")]
