"""The access checks on every packet kind that names a function or a job, driven
through the dispatcher directly (no sockets): what is refused, what the refusal looks
like, what it leaves unchanged, and that an ACL reload applies to open connections."""

from __future__ import annotations

import logging

import pytest

from trigear.protocol import Decoder, Role
from trigear.protocol.packets import (
    AdminCommand,
    CanDo,
    CanDoTimeout,
    EchoReq,
    EchoRes,
    Error,
    Event,
    GetStatus,
    GetStatusUnique,
    GrabJob,
    JobAssign,
    JobCreated,
    NoJob,
    StatusRes,
    StatusResUnique,
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
    WorkData,
    WorkException,
    WorkFail,
    WorkStatus,
    WorkWarning,
)
from trigear.server.acl import Acl
from trigear.server.config import ServerConfig
from trigear.server.dispatcher import _HANDLERS, Dispatcher
from trigear.server.state import Peer

ACL = """
[plain]
loopback = "local"

[identity.local]
admin = ["*"]

[identity.web]
submit = ["resize", "thumb-*"]

[identity.web2]
submit = ["resize"]

[identity.worker]
register = ["resize", "thumb-*"]

[identity.ops]
admin = ["read", "cancel job"]
"""


class Harness:
    def __init__(self, acl: Acl | None) -> None:
        self.d = Dispatcher(ServerConfig(job_handle_prefix="t"))
        self.d.set_acl(acl)
        self.d.wall = 1_000_000.0
        self.n = 0
        self.decoders: dict[int, Decoder] = {}

    def peer(self, *names: str, ip: str = "10.0.0.1") -> Peer:
        self.n += 1
        loopback = ip.startswith("127.")
        p = Peer(self.n, 100 + self.n, ip, loopback, tuple(names))
        self.d.connect(p)
        self.decoders[p.id] = Decoder(Role.CLIENT)
        return p

    def send(self, p: Peer, *events: Event) -> list[Event]:
        for ev in events:
            self.d.handle(p, ev)
        data = b"".join(p.out)
        p.out.clear()
        dec = self.decoders[p.id]
        dec.receive_data(data)
        return dec.receive_events()

    def admin(self, p: Peer, line: bytes) -> bytes:
        self.d.handle(p, AdminCommand(line))
        data = b"".join(p.out)
        p.out.clear()
        return data

    @property
    def refusals(self) -> int:
        return self.d.stats.acl_refusals


@pytest.fixture
def h() -> Harness:
    return Harness(Acl.from_toml(ACL))


def denied(events: list[Event]) -> bool:
    return (
        len(events) == 1 and isinstance(events[0], Error) and events[0].code == b"PERMISSION_DENIED"
    )


SUBMITS = [
    SubmitJob(b"{f}", b"", b"x"),
    SubmitJobBg(b"{f}", b"", b"x"),
    SubmitJobHigh(b"{f}", b"", b"x"),
    SubmitJobHighBg(b"{f}", b"", b"x"),
    SubmitJobLow(b"{f}", b"", b"x"),
    SubmitJobLowBg(b"{f}", b"", b"x"),
    SubmitJobEpoch(b"{f}", b"", 2_000_000, b"x"),
    SubmitReduceJob(b"{f}", b"", b"r", b"a", b"x"),
    SubmitReduceJobBackground(b"{f}", b"", b"r", b"a", b"x"),
]


@pytest.mark.parametrize("template", SUBMITS, ids=lambda e: type(e).__name__)
def test_every_submit_kind_needs_submit_rights(
    h: Harness, template: Event, caplog: pytest.LogCaptureFixture
) -> None:
    web = h.peer("web")
    allowed = template._replace(function=b"thumb-small")  # type: ignore[attr-defined]
    refused = template._replace(function=b"delete-all")  # type: ignore[attr-defined]
    (created,) = h.send(web, allowed)
    assert isinstance(created, JobCreated)
    assert h.d.jobs[created.handle].owner == "web"
    with caplog.at_level(logging.WARNING, "trigear.server.acl"):
        answer = h.send(web, refused)
    assert denied(answer)
    assert isinstance(answer[0], Error)
    assert b"web may not submit to 'delete-all'" in answer[0].text
    assert b"delete-all" not in h.d.funcs  # refused before the function was made
    assert len(h.d.jobs) == 1
    assert h.refusals == 1
    assert "refused" in caplog.text
    assert "from web (10.0.0.1)" in caplog.text


def test_can_do_needs_register_rights_and_is_refused_without_an_answer(h: Harness) -> None:
    worker, web = h.peer("worker"), h.peer("web")
    assert h.send(worker, CanDo(b"resize"), CanDoTimeout(b"thumb-a", 100)) == []
    assert h.send(worker, CanDo(b"secrets"), CanDoTimeout(b"payroll", 100)) == []
    assert set(worker.abilities) == {b"resize", b"thumb-a"}
    assert h.refusals == 2
    # The refused function's jobs never reach it: it is not a worker for them.
    h.send(web, SubmitJobBg(b"resize", b"", b"ok"))
    (assigned,) = h.send(worker, GrabJob())
    assert isinstance(assigned, JobAssign)
    assert assigned.function == b"resize"
    # A client may not register either, whatever it may submit.
    assert h.send(web, CanDo(b"resize")) == []
    assert web.abilities == {}


def test_status_of_another_identitys_job_is_refused(h: Harness) -> None:
    web, web2, ops = h.peer("web"), h.peer("web2"), h.peer("ops")
    (created,) = h.send(web, SubmitJobBg(b"resize", b"u1", b"x"))
    assert isinstance(created, JobCreated)
    handle = created.handle
    (mine,) = h.send(web, GetStatus(handle))
    assert isinstance(mine, StatusRes)
    assert mine.known
    assert denied(h.send(web2, GetStatus(handle)))
    assert denied(h.send(web2, GetStatusUnique(b"u1")))
    (unique,) = h.send(web, GetStatusUnique(b"u1"))
    assert isinstance(unique, StatusResUnique)
    assert unique.known
    # An identity that may list every job ("show jobs") may ask about any of them.
    (seen,) = h.send(ops, GetStatus(handle))
    assert isinstance(seen, StatusRes)
    assert seen.known
    # Unknown handles are answered as ever: there is nothing to protect.
    (unknown,) = h.send(web2, GetStatus(b"H:t:999"))
    assert isinstance(unknown, StatusRes)
    assert not unknown.known
    assert h.refusals == 2


def test_a_job_without_owner_is_visible_to_who_may_submit_to_its_function(h: Harness) -> None:
    web, web2 = h.peer("web"), h.peer("web2")
    (created,) = h.send(web, SubmitJobBg(b"thumb-x", b"", b"x"))
    assert isinstance(created, JobCreated)
    h.d.jobs[created.handle].owner = None  # as a job replayed from a durable store
    (seen,) = h.send(web, GetStatus(created.handle))
    assert isinstance(seen, StatusRes)
    assert seen.known
    assert denied(h.send(web2, GetStatus(created.handle)))


def test_a_unique_cannot_join_another_identitys_job(h: Harness) -> None:
    web, web2, worker = h.peer("web"), h.peer("web2"), h.peer("worker")
    h.send(worker, CanDo(b"resize"))
    (first,) = h.send(web, SubmitJob(b"resize", b"same", b"secret input"))
    assert isinstance(first, JobCreated)
    # Joining would hand web2 every WORK_* packet of web's job, its result too (S2).
    assert denied(h.send(web2, SubmitJob(b"resize", b"same", b"x")))
    (by_payload,) = h.send(web, SubmitJobBg(b"resize", b"-", b"payload"))
    assert isinstance(by_payload, JobCreated)
    assert denied(h.send(web2, SubmitJobBg(b"resize", b"-", b"payload")))
    # The same identity still coalesces (S2), from any of its connections.
    web_again = h.peer("web")
    (joined,) = h.send(web_again, SubmitJob(b"resize", b"same", b"x"))
    assert isinstance(joined, JobCreated)
    assert joined.handle == first.handle
    assert len(h.d.jobs) == 2
    assert h.d.stats.jobs_coalesced == 1


def test_work_packets_for_a_job_held_elsewhere_are_refused_and_counted(h: Harness) -> None:
    web, worker, intruder = h.peer("web"), h.peer("worker"), h.peer("worker")
    h.send(worker, CanDo(b"resize"))
    (created,) = h.send(web, SubmitJob(b"resize", b"", b"x"))
    assert isinstance(created, JobCreated)
    handle = created.handle
    h.send(worker, GrabJob())
    forged = [
        WorkStatus(handle, b"1", b"2"),
        WorkData(handle, b"forged"),
        WorkWarning(handle, b"forged"),
        WorkException(handle, b"forged"),
        WorkFail(handle),
        WorkComplete(handle, b"forged"),
    ]
    for event in forged:
        (answer,) = h.send(intruder, event)
        assert isinstance(answer, Error)
        assert answer.code == b"JOB_NOT_FOUND"
    assert h.refusals == len(forged)
    assert h.send(web) == []  # nothing forged reached the client
    # WORK_* for a handle nobody holds is the usual JOB_NOT_FOUND, not a refusal.
    (answer,) = h.send(intruder, WorkComplete(b"H:t:999", b""))
    assert isinstance(answer, Error)
    assert answer.code == b"JOB_NOT_FOUND"
    assert h.refusals == len(forged)
    h.send(worker, WorkComplete(handle, b"real"))
    (done,) = h.send(web)
    assert done == WorkComplete(handle, b"real")


@pytest.mark.parametrize(
    "line",
    [
        b"status",
        b"workers",
        b"show jobs",
        b"version",
        b"cancel job H:t:1",
        b"drop function resize",
        b"create function x",
        b"maxqueue resize 1",
        b"shutdown",
    ],
)
def test_admin_commands_need_admin_rights(h: Harness, line: bytes) -> None:
    web = h.peer("web")
    assert h.admin(web, line) == b"ERR PERMISSION_DENIED Permission+denied+by+ACL\r\n"
    assert h.refusals == 1
    assert h.d.shutdown_request is None
    assert b"x" not in h.d.funcs


def test_read_rights_are_not_write_rights(h: Harness) -> None:
    ops, web = h.peer("ops"), h.peer("web")
    assert h.admin(ops, b"status").endswith(b".\n")
    assert h.admin(ops, b"maxqueue resize 1").startswith(b"ERR PERMISSION_DENIED")
    (created,) = h.send(web, SubmitJobBg(b"resize", b"", b"x"))
    assert isinstance(created, JobCreated)
    assert h.admin(ops, b"cancel job " + created.handle) == b"OK\r\n"
    assert created.handle not in h.d.jobs
    # Commands that are not commands are answered as unknown, and do nothing.
    assert h.admin(web, b"acl list").startswith(b"ERR UNKNOWN_COMMAND")


def test_shutdown_needs_the_right_and_loopback_still(h: Harness) -> None:
    local_remote = h.peer("local", ip="10.0.0.9")
    assert h.admin(local_remote, b"shutdown").startswith(b"ERR SHUTDOWN_NOT_ALLOWED")
    local = h.peer(ip="127.0.0.1")  # plain, from loopback: the "local" identity
    assert local.identity == "local"
    assert h.admin(local, b"shutdown graceful") == b"OK\r\n"
    assert h.d.shutdown_request == "graceful"


def test_geard_rules_cancel_the_jobs_of_functions_they_may_invoke() -> None:
    h = Harness(Acl.from_geard("[web]\ninvoke=resize\n[other]\ninvoke=thumb\n"))
    web, other = h.peer("web"), h.peer("other")
    (created,) = h.send(web, SubmitJobBg(b"resize", b"", b"x"))
    assert isinstance(created, JobCreated)
    line = b"cancel job " + created.handle
    assert h.admin(other, line).startswith(b"ERR PERMISSION_DENIED")
    assert h.admin(web, line) == b"OK\r\n"
    # As under geard, anyone may read the listings.
    assert h.admin(other, b"status").endswith(b".\n")
    assert h.admin(other, b"maxqueue resize 3").startswith(b"ERR PERMISSION_DENIED")


def test_packets_that_name_no_function_or_job_pass(h: Harness) -> None:
    stranger = h.peer("stranger")
    assert h.send(stranger, EchoReq(b"hi")) == [EchoRes(b"hi")]
    assert h.send(stranger, GrabJob()) == [NoJob()]
    assert h.refusals == 0


def test_a_reload_applies_to_open_connections(h: Harness) -> None:
    worker, web = h.peer("worker"), h.peer("web")
    h.send(worker, CanDo(b"resize"), CanDo(b"thumb-a"))
    (created,) = h.send(web, SubmitJob(b"thumb-a", b"", b"x"))
    assert isinstance(created, JobCreated)
    h.send(worker, GrabJob())
    h.d.set_acl(Acl.from_toml('[identity.worker]\nregister = ["resize"]'))
    # The ability it lost is dropped; the job it holds still finishes.
    assert set(worker.abilities) == {b"resize"}
    assert not h.d.funcs[b"thumb-a"].workers
    h.send(worker, WorkComplete(created.handle, b"done"))
    assert h.send(web) == [WorkComplete(created.handle, b"done")]
    # web lost every right in the new file.
    assert denied(h.send(web, SubmitJob(b"resize", b"", b"x")))


def test_without_an_acl_the_handler_table_is_the_plain_one() -> None:
    h = Harness(None)
    assert h.d._handlers is _HANDLERS
    p = h.peer("anyone")
    assert p.grants is None
    assert p.identity == "anyone"
    (created,) = h.send(p, SubmitJob(b"f", b"", b"x"))
    assert isinstance(created, JobCreated)
    assert h.d.jobs[created.handle].owner is None
    h.d.set_acl(Acl())
    assert h.d._handlers is not _HANDLERS
    assert p.grants is not None
    assert denied(h.send(p, SubmitJob(b"f", b"", b"x")))
    h.d.set_acl(None)
    assert h.d._handlers is _HANDLERS
    assert p.grants is None
