"""Admin replies over in-memory connections, and disconnects at every stage of a job."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from trigear import __version__
from trigear.protocol.packets import (
    CanDo,
    EchoReq,
    EchoRes,
    GrabJobUniq,
    JobAssignUniq,
    JobCreated,
    SetClientId,
    SubmitJob,
    SubmitJobBg,
    SubmitJobHighBg,
    SubmitJobLowBg,
    WorkComplete,
    WorkData,
    WorkFail,
    WorkStatus,
)

if TYPE_CHECKING:
    from trio.testing import MockClock

    from trigear.server import Server

    from ..memory_peer import Connect, Peer


async def sync(peer: Peer) -> None:
    """Round trip, so everything sent before has been handled."""
    await peer.send(EchoReq(b"sync"))
    assert await peer.recv() == EchoRes(b"sync")


async def test_admin_listings(autojump_clock: MockClock, connect: Connect) -> None:
    admin = await connect()
    assert await admin.admin("status") == b".\n"
    w = await connect()
    await w.send(SetClientId(b"w1"), CanDo(b"fa"), CanDo(b"fb"))
    c = await connect()
    await c.send(
        SubmitJobBg(b"fq", b"u1", b"1"),
        SubmitJobLowBg(b"fq", b"u2", b"2"),
        SubmitJobHighBg(b"fq", b"u3", b"3"),
        SubmitJobBg(b"fa", b"", b"4"),
    )
    handles = [(await c.recv()) for _ in range(4)]
    assert all(isinstance(h, JobCreated) for h in handles)
    # Newest function first, as gearmand lists them.
    assert await admin.admin("status") == b"fq\t3\t0\t0\nfb\t0\t0\t1\nfa\t1\t0\t1\n.\n"
    assert await admin.admin("PRIORITYSTATUS") == (
        b"fq\t1\t1\t1\t0\nfb\t0\t0\t0\t1\nfa\t0\t1\t0\t1\n.\n"
    )
    workers = await admin.admin("workers")
    lines = workers.split(b"\n")
    assert lines[-2:] == [b".", b""]
    assert any(line.endswith(b" 127.0.0.1 w1 : fb fa") for line in lines)
    assert sum(line.endswith(b" 127.0.0.1 - :") for line in lines) == 2
    jobs = await admin.admin("show jobs")
    assert jobs.count(b"\t0\t0\t1\n") == 4
    assert jobs.endswith(b".\n")
    assert await admin.admin("show unique jobs") == b"u1\nu2\nu3\n\n.\n"
    await w.send(GrabJobUniq())
    assert isinstance(await w.recv(), JobAssignUniq)
    assert await admin.admin("status") == b"fq\t3\t0\t0\nfb\t0\t0\t1\nfa\t1\t1\t1\n.\n"


async def test_admin_commands(autojump_clock: MockClock, connect: Connect) -> None:
    admin = await connect()
    assert await admin.admin("getpid") == b"OK %d\n" % os.getpid()
    assert await admin.admin("verbose") == b"OK INFO\n"
    assert await admin.admin("version") == f"OK trigear-{__version__}\n".encode()
    assert await admin.admin("create function newf") == b"OK\r\n"
    assert await admin.admin("status") == b"newf\t0\t0\t0\n.\n"
    assert await admin.admin("drop function newf") == b"OK\r\n"
    assert await admin.admin("drop function newf") == b"ERR function not found\r\n"
    assert await admin.admin("maxqueue f 1 2 3") == b"OK\r\n"
    assert await admin.admin("cancel job H:no:1") == b"ERR UNKNOWN_JOB\r\n"
    assert await admin.admin("foo bar") == b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"
    assert await admin.admin("") == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    # Pipelined, with \r\n endings.
    await admin.send_raw(b"version\r\ngetpid\r\n")
    assert (await admin.reply()).startswith(b"OK trigear-")
    assert (await admin.reply()).startswith(b"OK ")


async def test_admin_cancel_ends_job_for_its_clients(
    autojump_clock: MockClock, connect: Connect
) -> None:
    admin, c = await connect(), await connect()
    await c.send(SubmitJob(b"f", b"", b"x"))
    created = await c.recv()
    assert isinstance(created, JobCreated)
    assert await admin.admin(b"cancel job " + created.handle) == b"OK\r\n"
    assert await c.recv() == WorkFail(created.handle)
    assert await admin.admin("show jobs") == b".\n"


async def test_shutdown_only_from_loopback(autojump_clock: MockClock, connect: Connect) -> None:
    remote = await connect("10.1.2.3")
    reply = await remote.admin("shutdown")
    assert reply.startswith(b"ERR ")
    await sync(remote)


STAGES = ["submitted", "assigned", "progress", "completed"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("who", ["client", "worker", "both"])
@pytest.mark.parametrize("background", [False, True])
async def test_disconnect_at_every_stage(
    autojump_clock: MockClock, connect: Connect, stage: str, who: str, background: bool
) -> None:
    """Whoever leaves at whatever stage, the server stays consistent: a background job or
    one whose client stays is run to the end by a later worker; nothing else lingers."""
    c, w = await connect(), await connect()
    await w.send(CanDo(b"f"))
    await c.send((SubmitJobBg if background else SubmitJob)(b"f", b"", b"payload"))
    created = await c.recv()
    assert isinstance(created, JobCreated)
    h = created.handle
    if stage != "submitted":
        await w.send(GrabJobUniq())
        assert isinstance(await w.recv(), JobAssignUniq)
    if stage == "progress":
        await w.send(WorkStatus(h, b"1", b"2"), WorkData(h, b"part"))
        if not background:
            assert await c.recv() == WorkStatus(h, b"1", b"2")
            assert await c.recv() == WorkData(h, b"part")
    if stage == "completed":
        await w.send(WorkComplete(h, b"done"))
        if not background:
            assert await c.recv() == WorkComplete(h, b"done")
    if who in ("client", "both"):
        await c.aclose()
    if who in ("worker", "both"):
        await w.aclose()
    admin = await connect()
    await sync(admin)
    client_left = who in ("client", "both")
    worker_left = who in ("worker", "both")
    job_should_live = stage != "completed" and (background or not client_left)
    if stage == "assigned" or stage == "progress":
        # A job running when its client left still runs (S12); it only lives on if its
        # worker left too and it is a background job or its client stays.
        job_should_live = stage != "completed" and (
            not worker_left or background or not client_left
        )
    jobs = await admin.admin("show jobs")
    assert (h in jobs) == job_should_live, (jobs, stage, who, background)
    if job_should_live and worker_left:
        w2 = await connect()
        await w2.send(CanDo(b"f"), GrabJobUniq())
        job = await w2.recv()
        assert isinstance(job, JobAssignUniq)
        assert job.handle == h
        await w2.send(WorkComplete(h, b"again"))
        if not client_left and not background:
            assert await c.recv() == WorkComplete(h, b"again")
        await sync(w2)
        assert await admin.admin("show jobs") == b".\n"
    if not worker_left and job_should_live and stage == "submitted":
        await w.send(GrabJobUniq())
        assert isinstance(await w.recv(), JobAssignUniq)


async def test_an_internal_error_closes_one_connection_not_the_server(
    autojump_clock: MockClock,
    connect: Connect,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from trigear.server import dispatcher

    def broken(self: object, peer: object, event: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setitem(dispatcher._HANDLERS, EchoReq, broken)
    victim = await connect()
    await victim.send(EchoReq(b"boom"))
    assert await victim.closed()
    monkeypatch.undo()
    other = await connect()
    await sync(other)
    assert server.statistics().internal_errors == 1
    assert "internal error" in caplog.text
