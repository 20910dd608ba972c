"""Answers matched to calls, against a scripted server (spec S1, S13, S14): JOB_CREATED,
ECHO_RES, STATUS_RES, STATUS_RES_UNIQUE and ERROR come back in request order with no id,
so a cancelled call must keep its place in the FIFO and every other call must get its
own answer, on the same connection, with nothing left tracked afterwards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

import trigear
from trigear.protocol import packets as P

from ..fake_server import FakeConnection, fake_servers, settle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio

#: One connection, opened once, nothing waiting, nothing followed.
SETTLED = trigear.ClientStatistics(connections=1, connections_opened=1, pending=0, jobs=0)


class Calls:
    """Calls started one by one, each queued (seen by the fake) before the next starts,
    so their FIFO order is known; any of them can be cancelled later."""

    def __init__(self, tg: anyio.abc.TaskGroup, peer: FakeConnection) -> None:
        self.tg = tg
        self.peer = peer
        self.results: dict[str, Any] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def start(self, name: str, call: Callable[[], Awaitable[Any]], request: type) -> Any:
        scope = anyio.CancelScope()
        self.scopes[name] = scope

        async def run() -> None:
            with scope:
                try:
                    self.results[name] = await call()
                except trigear.GearmanError as exc:
                    self.results[name] = exc

        self.tg.start_soon(run)
        (got,) = await self.peer.expect(request)
        return got

    async def cancel(self, *names: str) -> None:
        for name in names:
            self.scopes[name].cancel()
        await settle()
        for name in names:
            assert self.scopes[name].cancelled_caught, name
            assert name not in self.results, name


async def connected(fake: Any, client: trigear.Client) -> FakeConnection:
    """Open the client's connection with an echo, and return the fake's side of it."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.echo, b"hello")
        peer = await fake.accept()
        await peer.client_handshake()
        await peer.expect(P.EchoReq)
        await peer.send(P.EchoRes(b"hello"))
    return peer


async def drain(client: trigear.Client) -> None:
    """A streamed submit, read to its end."""
    async with client.submit_stream("f", b"s") as job:
        async for _ in job:
            pass


async def test_every_call_gets_its_own_answer_around_cancelled_ones() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("echo1", lambda: client.echo(b"e1"), P.EchoReq)
            await calls.start("status1", lambda: client.get_status(b"H:s1"), P.GetStatus)
            await calls.start("submit", lambda: client.submit("f", b"fg"), P.SubmitJob)
            await calls.start("unique1", lambda: client.get_status_unique("u1"), P.GetStatusUnique)
            await calls.start("echo2", lambda: client.echo(b"e2"), P.EchoReq)
            await calls.start("bg", lambda: client.submit_background("f", b"bg"), P.SubmitJobBg)
            await calls.start("status2", lambda: client.get_status(b"H:s2"), P.GetStatus)
            await calls.start("unique2", lambda: client.get_status_unique("u2"), P.GetStatusUnique)
            await calls.start("echo3", lambda: client.echo(b"e3"), P.EchoReq)
            # Every other call gives up after its request went out: the neighbours of
            # each cancelled call expect an answer of the same type or another.
            await calls.cancel("echo1", "submit", "echo2", "status2", "echo3")
            assert client.statistics().pending == 9
            await peer.send(
                P.EchoRes(b"e1"),
                P.StatusRes(b"H:s1", True, True, 1, 2),
                P.JobCreated(b"H:fg"),
                P.StatusResUnique(b"u1", True, False, 3, 4, 5),
                P.EchoRes(b"e2"),
                P.JobCreated(b"H:bg"),
                P.StatusRes(b"H:s2", True, True, 6, 7),
                P.Error(b"ERR", b"u2 refused"),
                P.EchoRes(b"e3"),
                P.WorkComplete(b"H:fg", b"dropped"),
            )
        assert calls.results["status1"] == trigear.JobStatus(True, True, 1, 2)
        assert calls.results["unique1"] == trigear.JobStatus(True, False, 3, 4, 5)
        assert calls.results["bg"] == b"H:bg"
        unique2 = calls.results["unique2"]
        assert isinstance(unique2, trigear.ServerError)
        assert unique2.text == b"u2 refused"
        assert client.statistics() == SETTLED


async def test_calls_cancelled_on_either_side_of_their_answers() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("unique", lambda: client.get_status_unique("u"), P.GetStatusUnique)
            await calls.start("submit1", lambda: client.submit("f", b"1"), P.SubmitJob)
            await calls.start("echo", lambda: client.echo(b"e"), P.EchoReq)
            await calls.start("submit2", lambda: client.submit("f", b"2"), P.SubmitJob)
            await calls.start("status", lambda: client.get_status(b"H:s"), P.GetStatus)
            # The first two answers arrive (an ERROR, a JOB_CREATED), then submit1, now
            # following H:1, and echo, still waiting, give up.
            await peer.send(P.Error(b"ERR", b"no unique status"), P.JobCreated(b"H:1"))
            await settle()
            assert client.statistics().jobs == 1
            await calls.cancel("submit1", "echo")
            assert client.statistics().jobs == 0  # though H:1 has not ended
            await peer.send(
                P.EchoRes(b"e"),
                P.JobCreated(b"H:2"),
                P.WorkStatus(b"H:1", b"1", b"2"),  # for the abandoned H:1: dropped
                P.StatusRes(b"H:s", False, False, 0, 0),
                P.WorkComplete(b"H:2", b"two"),
            )
        unique = calls.results.pop("unique")
        assert isinstance(unique, trigear.ServerError)
        assert unique.text == b"no unique status"
        assert calls.results == {"submit2": b"two", "status": trigear.JobStatus(False, False, 0, 0)}
        assert client.statistics() == SETTLED


async def test_an_abandoned_job_created_follows_nothing() -> None:
    """A submit cancelled before JOB_CREATED: its FIFO entry takes the JOB_CREATED, and
    its job's WORK_* go to an empty slot (tests/client/test_scripted_copies.py shows why
    the slot is kept); no call is left following anything."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("fg", lambda: client.submit("f", b"fg"), P.SubmitJob)
            await calls.start("stream", lambda: drain(client), P.SubmitJob)
            await calls.cancel("fg", "stream")
            assert client.statistics().pending == 2
            await peer.send(P.JobCreated(b"H:1"), P.JobCreated(b"H:2"), P.WorkData(b"H:2", b"x"))
            await calls.start("echo", lambda: client.echo(b"after"), P.EchoReq)
            await peer.send(P.EchoRes(b"after"))
        assert calls.results == {"echo": b"after"}
        assert client.statistics() == SETTLED


async def test_a_submit_cancelled_after_job_created_is_unregistered_at_once() -> None:
    """Two submits of one unique share a handle (spec S2); the one cancelled after
    JOB_CREATED stops being followed at once, the other still gets its copy of the
    result."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("a", lambda: client.submit("f", b"", unique="k"), P.SubmitJob)
            await calls.start("b", lambda: client.submit("f", b"", unique="k"), P.SubmitJob)
            await calls.start("s", lambda: drain(client), P.SubmitJob)
            await peer.send(P.JobCreated(b"H:k"), P.JobCreated(b"H:k"), P.JobCreated(b"H:s"))
            await settle()
            assert client.statistics().jobs == 3
            await calls.cancel("a", "s")
            assert client.statistics().jobs == 1  # before the jobs end
            await peer.send(
                P.WorkComplete(b"H:k", b"k done"),
                P.WorkComplete(b"H:k", b"k done"),
                P.WorkComplete(b"H:s", b"s"),
            )
        assert calls.results == {"b": b"k done"}
        assert client.statistics() == SETTLED


async def test_a_server_that_never_answers_option_req_stays_in_step() -> None:
    """python gear's server (geard) ignores OPTION_REQ: the answers that follow belong
    to the calls after it, an ERROR included (geard's ACL refusal has code "0")."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        results: list[Any] = []

        async def submit(data: bytes) -> None:
            try:
                results.append(await client.submit("f", data))
            except trigear.ServerError as exc:
                results.append(exc.code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, b"one")
            peer = await fake.accept()
            await peer.expect(P.OptionReq)  # and no answer
            await peer.expect(P.SubmitJob)
            await peer.send(P.Error(b"0", b"Permission denied by ACL"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, b"two")
            await peer.expect(P.SubmitJob)
            await peer.send(P.JobCreated(b"H:2"), P.WorkComplete(b"H:2", b"done"))
        assert results == [b"0", b"done"]
        await settle()
        assert client.statistics() == SETTLED


@pytest.mark.parametrize(
    "answer",
    [
        P.OptionRes(b"exceptions"),
        P.Error(b"UNKNOWN_OPTION", b"no"),
        P.Error(b"unknown_option", b""),
    ],
)
async def test_the_option_answer_is_still_taken_where_there_is_one(answer: Any) -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        async with anyio.create_task_group() as tg:
            results: list[bytes] = []

            async def echo() -> None:
                results.append(await client.echo(b"x"))

            tg.start_soon(echo)
            peer = await fake.accept()
            await peer.expect(P.OptionReq)
            await peer.expect(P.EchoReq)
            await peer.send(answer, P.EchoRes(b"x"))
        assert results == [b"x"]
        await settle()
        assert client.statistics() == SETTLED
