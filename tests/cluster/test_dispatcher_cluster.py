"""The dispatcher's side of a shared store: adopted jobs, the lease, and fencing."""

from __future__ import annotations

from trigear.protocol.packets import (
    Error,
    GrabJob,
    GrabJobUniq,
    JobAssign,
    JobAssignUniq,
    JobCreated,
    NoJob,
    Noop,
    PreSleep,
    Priority,
    SubmitJob,
    SubmitJobBg,
    WorkComplete,
    WorkFail,
)
from trigear.server.config import ServerConfig

from ..server.dispatcher_harness import Harness
from .cluster_helpers import job


def durable() -> Harness:
    return Harness(ServerConfig(job_handle_prefix="me"), durable=True)


def test_adopted_jobs_keep_their_handles_order_and_priority() -> None:
    h = durable()
    jobs = [
        job("dead", 5, unique=b"u5"),
        job("dead", 2, priority=Priority.HIGH),
        job("dead", 9, attempts=2),
    ]
    assert h.d.adopt(jobs) == 3
    assert h.d.adopt(jobs[:1]) == 0  # already here
    w = h.peer(b"f")
    order = []
    for _ in range(3):
        (ev,) = h.send(w, GrabJobUniq())
        assert isinstance(ev, JobAssignUniq)
        order.append(ev.handle)
    assert order == [b"H:dead:2", b"H:dead:5", b"H:dead:9"]
    assert h.d.jobs[b"H:dead:9"].attempts == 2
    # Ending an adopted job removes it from the store, under its own handle.
    h.send(w, WorkComplete(b"H:dead:5", b""))
    batch = h.d.take_store_batch()
    assert batch is not None
    assert batch.remove == [b"H:dead:5"]


def test_no_job_is_handed_out_while_the_lease_has_run_out() -> None:
    h = durable()
    h.d.adopt([job("dead", 1)])
    w = h.peer(b"f")
    h.d.scheduler.set_paused(True)
    assert h.send(w, GrabJob()) == [NoJob()]
    assert h.send(w, PreSleep()) == []  # no NOOP: it sleeps
    h.d.scheduler.set_paused(False)
    assert h.recv(w) == [Noop()]  # the renewed lease wakes it
    (ev,) = h.send(w, GrabJob())
    assert isinstance(ev, JobAssign)


def test_fenced_server_drops_its_stored_jobs_only() -> None:
    h = durable()
    c, fg, w = h.peer(), h.peer(), h.peer(b"f")
    h.d.adopt([job("dead", 1), job("dead", 2)])
    (ev,) = h.send(w, GrabJob())
    assert isinstance(ev, JobAssign)
    running = ev.handle
    h.send(c, SubmitJobBg(b"f", b"in-flight", b"x"))
    inflight = h.d.take_store_batch()
    assert inflight is not None
    h.send(c, SubmitJobBg(b"f", b"pending", b"y"))
    assert h.send(fg, SubmitJob(b"g", b"", b"z")) == [JobCreated(b"H:me:3")]

    assert h.d.fenced() == 2  # the running and the queued adopted job
    assert set(h.d.jobs) == {b"H:me:1", b"H:me:3"}  # in flight, and the foreground job
    # The worker's late result is refused; the in-flight submit waits for its commit.
    (err,) = h.send(w, WorkComplete(running, b""))
    assert isinstance(err, Error)
    assert err.code == b"JOB_NOT_FOUND"
    h.d.store_done(False)  # the fenced commit fails
    assert [type(e) for e in h.recv(c)] == [Error, Error]
    assert h.d.take_store_batch() is None  # nothing left to write
    # Foreground work goes on.
    fw = h.peer(b"g")
    (ev,) = h.send(fw, GrabJob())
    assert isinstance(ev, JobAssign)
    h.send(fw, WorkComplete(ev.handle, b"done"))
    assert h.recv(fg) == [WorkComplete(b"H:me:3", b"done")]


def test_a_foreground_client_of_a_dropped_job_gets_work_fail() -> None:
    h = durable()
    h.d.adopt([job("dead", 1, unique=b"shared")])
    fg = h.peer()
    assert h.send(fg, SubmitJob(b"f", b"shared", b"x")) == [JobCreated(b"H:dead:1")]
    assert h.d.fenced() == 1
    assert h.recv(fg) == [WorkFail(b"H:dead:1")]
