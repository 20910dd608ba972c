"""S2, per submit: a foreground submit attaches its connection once per submit.

One connection that submits the same (function, unique) twice gets JOB_CREATED twice,
then every WORK_DATA, WORK_WARNING, WORK_STATUS and the terminal packet twice, all
copies of one packet before the next packet (as gearmand 1.1.20 and the Perl
Gearman::Server send them), so each of its tasks ends exactly once.  Everything that
counts clients counts submits: GET_STATUS_UNIQUE's waiting count, and S12 when the
connection goes (all its attachments go with it).
"""

from __future__ import annotations

import pytest

from trigear.protocol.packets import (
    AdminCommand,
    Event,
    GetStatusUnique,
    GrabJob,
    JobCreated,
    NoJob,
    OptionReq,
    OptionRes,
    StatusResUnique,
    SubmitJob,
    SubmitJobBg,
    SubmitJobHigh,
    SubmitJobLow,
    SubmitReduceJob,
    WorkComplete,
    WorkData,
    WorkException,
    WorkFail,
    WorkStatus,
    WorkWarning,
)
from trigear.server.config import ServerConfig
from trigear.server.state import JobState

from .dispatcher_harness import Harness

H = b"H:t:1"


def waiting(h: Harness, unique: bytes) -> int:
    """GET_STATUS_UNIQUE's waiting count, asked on a connection of its own."""
    (res,) = h.send(h.peer(), GetStatusUnique(unique))
    assert isinstance(res, StatusResUnique), res
    return res.client_count


def test_one_connection_two_submits_gets_every_packet_twice_copy_major() -> None:
    h = Harness()
    c = h.peer()
    got = h.send(c, SubmitJob(b"f", b"u1", b"one"), SubmitJob(b"f", b"u1", b"two"))
    assert got == [JobCreated(H), JobCreated(H)]
    assert [c.id for c in h.d.jobs[H].clients] == [c.id, c.id]
    w = h.peer(b"f")
    assert h.grab(w) == H
    h.send(w, WorkData(H, b"d"), WorkWarning(H, b"w"), WorkStatus(H, b"1", b"2"))
    assert h.recv(c) == [
        WorkData(H, b"d"),
        WorkData(H, b"d"),
        WorkWarning(H, b"w"),
        WorkWarning(H, b"w"),
        WorkStatus(H, b"1", b"2"),
        WorkStatus(H, b"1", b"2"),
    ]
    assert h.send(w, WorkComplete(H, b"result")) == []
    assert h.recv(c) == [WorkComplete(H, b"result"), WorkComplete(H, b"result")]
    assert h.d.jobs == {}
    assert c.jobs == set()
    assert h.d.stats.jobs_coalesced == 1
    assert h.d.stats.jobs_completed == 1


def test_every_submit_variant_attaches_and_payload_and_priority_are_the_first() -> None:
    """HIGH, NORMAL, LOW and REDUCE foreground submits all attach; the job keeps the
    first submit's payload and priority (S2)."""
    h = Harness()
    c = h.peer()
    h.send(
        c,
        SubmitJobLow(b"f", b"u", b"first"),
        SubmitJobHigh(b"f", b"u", b"high"),
        SubmitJob(b"f", b"u", b"normal"),
        SubmitReduceJob(b"f", b"u", b"r", b"a", b"reduce"),
    )
    job = h.d.jobs[H]
    assert (len(job.clients), job.data, job.priority, job.reducer) == (4, b"first", 2, None)
    w = h.peer(b"f")
    h.grab(w)
    h.send(w, WorkComplete(H, b"r"))
    assert h.recv(c) == [WorkComplete(H, b"r")] * 4


def test_attachments_keep_submit_order_across_connections() -> None:
    h = Harness()
    a, b = h.peer(), h.peer()
    h.send(a, SubmitJob(b"f", b"u", b"1"))
    h.send(b, SubmitJob(b"f", b"u", b"2"))
    h.send(a, SubmitJob(b"f", b"u", b"3"))
    assert [p.id for p in h.d.jobs[H].clients] == [a.id, b.id, a.id]
    assert waiting(h, b"u") == 3
    w = h.peer(b"f")
    h.grab(w)
    h.send(w, WorkData(H, b"d"), WorkComplete(H, b"r"))
    assert h.recv(a) == [WorkData(H, b"d")] * 2 + [WorkComplete(H, b"r")] * 2
    assert h.recv(b) == [WorkData(H, b"d"), WorkComplete(H, b"r")]


def test_a_submit_joining_a_running_job_gets_packets_from_then_on() -> None:
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"u", b"x"))
    w = h.peer(b"f")
    h.grab(w)
    h.send(w, WorkData(H, b"before"))
    assert h.send(c, SubmitJob(b"f", b"u", b"again")) == [WorkData(H, b"before"), JobCreated(H)]
    h.send(w, WorkData(H, b"after"), WorkComplete(H, b"r"))
    assert h.recv(c) == [WorkData(H, b"after")] * 2 + [WorkComplete(H, b"r")] * 2


def test_background_submits_never_attach() -> None:
    """A background submit joins (the job becomes unkillable by client loss, S12) but
    gets no WORK_* and is not counted as waiting."""
    h = Harness()
    c = h.peer()
    got = h.send(
        c,
        SubmitJobBg(b"f", b"u", b"bg"),
        SubmitJob(b"f", b"u", b"a"),
        SubmitJobBg(b"f", b"u", b"bg2"),
        SubmitJob(b"f", b"u", b"b"),
    )
    assert got == [JobCreated(H)] * 4
    assert waiting(h, b"u") == 2
    w = h.peer(b"f")
    h.grab(w)
    h.send(w, WorkComplete(H, b"r"))
    assert h.recv(c) == [WorkComplete(H, b"r")] * 2


@pytest.mark.parametrize("everyone", [False, True])
def test_work_exception_is_chosen_per_connection_and_sent_per_submit(everyone: bool) -> None:
    """S7: WORK_EXCEPTION to connections that set the option (or to all with the server
    option), WORK_FAIL with the bare handle to the others; one per submit either way."""
    h = Harness(ServerConfig(job_handle_prefix="t", exceptions=everyone))
    opt, plain = h.peer(), h.peer()
    assert h.send(opt, OptionReq(b"exceptions")) == [OptionRes(b"exceptions")]
    h.send(opt, SubmitJob(b"f", b"u", b"a"), SubmitJob(b"f", b"u", b"b"))
    h.send(plain, SubmitJob(b"f", b"u", b"c"), SubmitJob(b"f", b"u", b"d"))
    w = h.peer(b"f")
    h.grab(w)
    assert h.send(w, WorkException(H, b"boom")) == []
    assert h.recv(opt) == [WorkException(H, b"boom")] * 2
    plain_gets: Event = WorkException(H, b"boom") if everyone else WorkFail(H)
    assert h.recv(plain) == [plain_gets] * 2


@pytest.mark.parametrize("how", ["work_fail", "retries_spent", "admin_cancel"])
def test_every_way_a_job_fails_reaches_each_submit(how: str) -> None:
    h = Harness(ServerConfig(job_handle_prefix="t", job_retries=0))
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"u", b"a"), SubmitJob(b"f", b"u", b"b"))
    w = h.peer(b"f")
    h.grab(w)
    if how == "work_fail":
        h.send(w, WorkFail(H))
    elif how == "retries_spent":
        h.d.disconnect(w)  # S10: no re-run allowed
    else:
        admin = h.peer()
        h.d.handle(admin, AdminCommand(b"cancel job " + H))
        assert h.text(admin) == b"OK\r\n"
    assert h.recv(c) == [WorkFail(H), WorkFail(H)]
    assert h.d.jobs == {}


def test_waiting_count_counts_submits_and_drops_with_the_connection() -> None:
    """GET_STATUS_UNIQUE's waiting count is gearmand's: attached submits.  When a
    connection goes, every attachment it made goes (S12)."""
    h = Harness()
    a, b = h.peer(), h.peer()
    h.send(a, SubmitJob(b"f", b"u", b"1"), SubmitJob(b"f", b"u", b"2"))
    assert waiting(h, b"u") == 2
    h.send(b, SubmitJob(b"f", b"u", b"3"))
    assert waiting(h, b"u") == 3
    h.d.disconnect(a)
    assert [p.id for p in h.d.jobs[H].clients] == [b.id]
    assert waiting(h, b"u") == 1
    w = h.peer(b"f")
    h.grab(w)
    assert waiting(h, b"u") == 1
    h.send(w, WorkComplete(H, b"r"))
    assert h.recv(b) == [WorkComplete(H, b"r")]


def test_queued_job_of_a_connection_with_two_submits_is_dropped_when_it_goes() -> None:
    """S12: every attachment went with the connection, so nobody waits: not dispatched."""
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"u", b"1"), SubmitJob(b"f", b"u", b"2"))
    h.d.disconnect(c)
    assert h.d.jobs == {}
    assert h.d.funcs[b"f"].total == 0
    assert h.send(h.peer(b"f"), GrabJob()) == [NoJob()]
    assert waiting(h, b"u") == 0


def test_running_job_of_a_connection_with_two_submits_finishes_unheard() -> None:
    h = Harness()
    c = h.peer()
    h.send(c, SubmitJob(b"f", b"u", b"1"), SubmitJob(b"f", b"u", b"2"))
    w = h.peer(b"f")
    h.grab(w)
    h.d.disconnect(c)
    assert h.d.jobs[H].state is JobState.RUNNING
    assert waiting(h, b"u") == 0
    assert h.send(w, WorkData(H, b"d"), WorkComplete(H, b"r")) == []
    assert c.out == []
    assert h.d.jobs == {}


def test_many_submits_of_one_unique_each_get_one_terminal() -> None:
    h = Harness()
    c = h.peer()
    n = 1000
    h.send(c, *(SubmitJob(b"f", b"u", b"%d" % i) for i in range(n)))
    assert waiting(h, b"u") == n
    w = h.peer(b"f")
    h.grab(w)
    h.send(w, WorkStatus(H, b"1", b"2"), WorkComplete(H, b"r"))
    assert h.recv(c) == [WorkStatus(H, b"1", b"2")] * n + [WorkComplete(H, b"r")] * n
