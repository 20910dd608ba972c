"""Several submits of one unique on one connection, against a scripted server.

A server that follows spec S2 (gearmand, the Perl server, trigear) attaches the
connection once per submit and sends each WORK_* packet once per submit, the copies of
one packet together.  The client gives the i-th copy to the i-th submit, in JOB_CREATED
order; a submit whose caller gave up keeps its place and swallows its copies.  Against a
server that sends one copy per connection, the client notices (from the next packet, or
from the answer to an ECHO_REQ it sends to find out) and gives every packet to every
submit.  The same calls against real servers: test_against_servers.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

import trigear
from trigear.protocol import packets as P

from ..fake_server import FakeConnection, fake_servers, settle
from .test_scripted_matching import SETTLED, Calls, connected

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio

H = b"H:1"
#: What the client's ECHO_REQ asking about missing copies carries.
PROBE = P.EchoReq(b"trigear: copies")


def stream(client: trigear.Client, out: list[Any]) -> Callable[[], Awaitable[bytes]]:
    """A submit_stream of unique "k" that collects its updates into ``out``."""

    async def run() -> bytes:
        async with client.submit_stream("f", b"s", unique="k") as job:
            async for update in job:
                out.append(update)
        return job.result

    return run


def copies(n: int, *events: Any) -> list[Any]:
    """``events`` as a per-submit server sends them to a connection with ``n`` submits:
    each packet ``n`` times, copies together."""
    return [ev for ev in events for _ in range(n)]


async def no_probe(peer: FakeConnection, client: trigear.Client) -> None:
    """The next thing the client sends is our own echo: it sent no ECHO_REQ to ask about
    missing copies."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.echo, b"mine")
        (echo,) = await peer.expect(P.EchoReq)
        assert echo == P.EchoReq(b"mine")
        await peer.send(P.EchoRes(b"mine"))


async def test_each_submit_gets_exactly_its_own_copy() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        a: list[Any] = []
        b: list[Any] = []
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("a", stream(client, a), P.SubmitJob)
            await calls.start("b", stream(client, b), P.SubmitJob)
            await calls.start("c", lambda: client.submit("f", b"c", unique="k"), P.SubmitJob)
            await peer.send(P.JobCreated(H), P.JobCreated(H), P.JobCreated(H))
            await settle()
            assert client.statistics().jobs == 3
            await peer.send(
                *copies(
                    3,
                    P.WorkData(H, b"d"),
                    P.WorkWarning(H, b"w"),
                    P.WorkStatus(H, b"1", b"2"),
                    P.WorkData(H, b"d"),  # the same again: a packet of its own
                    P.WorkComplete(H, b"r"),
                )
            )
        assert calls.results == {"a": b"r", "b": b"r", "c": b"r"}
        want = [
            trigear.DataUpdate(b"d"),
            trigear.WarningUpdate(b"w"),
            trigear.StatusUpdate(1, 2),
            trigear.DataUpdate(b"d"),
        ]
        assert a == b == want
        await no_probe(peer, client)
        assert client.statistics() == SETTLED


async def test_a_submit_joining_mid_stream_gets_copies_from_then_on() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        a: list[Any] = []
        b: list[Any] = []
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("a", stream(client, a), P.SubmitJob)
            await peer.send(P.JobCreated(H), P.WorkData(H, b"before"))
            await calls.start("b", stream(client, b), P.SubmitJob)
            await peer.send(P.JobCreated(H), *copies(2, P.WorkData(H, b"after"), P.WorkFail(H)))
        assert isinstance(calls.results["a"], trigear.JobFailed)
        assert isinstance(calls.results["b"], trigear.JobFailed)
        assert a == [trigear.DataUpdate(b"before"), trigear.DataUpdate(b"after")]
        assert b == [trigear.DataUpdate(b"after")]
        await no_probe(peer, client)
        assert client.statistics() == SETTLED


@pytest.mark.parametrize("when", ["before JOB_CREATED", "after JOB_CREATED", "mid-stream"])
async def test_a_caller_that_gave_up_keeps_its_slot_and_swallows_its_copies(
    when: str,
) -> None:
    """The server still sends the given-up submit its copies: they must not reach the
    submit that stays, which gets exactly one of each."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        left: list[Any] = []
        stays: list[Any] = []
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("left", stream(client, left), P.SubmitJob)
            if when == "before JOB_CREATED":
                await calls.cancel("left")
                await peer.send(P.JobCreated(H))
            elif when == "after JOB_CREATED":
                await peer.send(P.JobCreated(H))
                await settle()
                await calls.cancel("left")
            await calls.start("stays", stream(client, stays), P.SubmitJob)
            created = [P.JobCreated(H)] * (2 if when == "mid-stream" else 1)
            await peer.send(*created, *copies(2, P.WorkStatus(H, b"1", b"3")))
            if when == "mid-stream":
                await settle()
                await calls.cancel("left")
            await settle()
            assert client.statistics().jobs == 1
            await peer.send(*copies(2, P.WorkStatus(H, b"2", b"3"), P.WorkComplete(H, b"r")))
        assert calls.results == {"stays": b"r"}
        assert stays == [trigear.StatusUpdate(1, 3), trigear.StatusUpdate(2, 3)]
        # Mid-stream, the one that left had read its copy of the first update.
        assert left == ([trigear.StatusUpdate(1, 3)] if when == "mid-stream" else [])
        await no_probe(peer, client)
        assert client.statistics() == SETTLED


async def test_copies_split_across_reads_are_waited_for() -> None:
    """A read that ends between two copies of a packet: the client asks with an
    ECHO_REQ, the missing copy comes before the answer, and the client goes on counting
    copies per submit."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        a: list[Any] = []
        b: list[Any] = []
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("a", stream(client, a), P.SubmitJob)
            await calls.start("b", stream(client, b), P.SubmitJob)
            await peer.send(P.JobCreated(H), P.JobCreated(H), P.WorkData(H, b"d1"))
            assert await peer.recv() == PROBE
            await peer.send(P.WorkData(H, b"d1"), P.EchoRes(PROBE.data))
            await peer.send(*copies(2, P.WorkData(H, b"d2"), P.WorkComplete(H, b"r")))
        assert calls.results == {"a": b"r", "b": b"r"}
        assert a == b == [trigear.DataUpdate(b"d1"), trigear.DataUpdate(b"d2")]
        await no_probe(peer, client)
        assert client.statistics() == SETTLED


async def test_a_server_that_sends_one_copy_per_connection() -> None:
    """trigear's server before it followed S2 attached a connection once: each packet
    came once, whatever the number of submits.  The client notices from the next packet
    (here the second WORK_DATA) and gives every packet to every submit from then on."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        a: list[Any] = []
        b: list[Any] = []
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            await calls.start("a", stream(client, a), P.SubmitJob)
            await calls.start("b", stream(client, b), P.SubmitJob)
            await peer.send(
                P.JobCreated(H),
                P.JobCreated(H),
                P.WorkData(H, b"d1"),
                P.WorkData(H, b"d2"),
                P.WorkComplete(H, b"r"),
            )
        assert calls.results == {"a": b"r", "b": b"r"}
        assert a == b == [trigear.DataUpdate(b"d1"), trigear.DataUpdate(b"d2")]
        await no_probe(peer, client)
        assert client.statistics() == SETTLED


async def test_one_copy_of_the_last_packet_is_found_out_with_an_echo() -> None:
    """From a server that sends one copy per connection, the result is the last packet
    for a while: nothing else would show the second copy is not coming.  The client's
    ECHO_REQ does: its answer comes first, so the second submit gets the result too."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer = await connected(fake, client)
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            for name in ("a", "b"):
                call = (lambda: client.submit("f", b"x", unique="k"), P.SubmitJob)
                await calls.start(name, *call)
            await peer.send(P.JobCreated(H), P.JobCreated(H), P.WorkComplete(H, b"r"))
            assert await peer.recv() == PROBE
            await settle()
            assert "b" not in calls.results
            await peer.send(P.EchoRes(PROBE.data))
        assert calls.results == {"a": b"r", "b": b"r"}
        assert client.statistics() == SETTLED
        # The session now gives every packet to every submit of a handle.
        async with anyio.create_task_group() as tg:
            calls = Calls(tg, peer)
            for name in ("c", "d"):
                await calls.start(name, lambda: client.submit("f", b"y", unique="j"), P.SubmitJob)
            await peer.send(P.JobCreated(b"H:2"), P.JobCreated(b"H:2"), P.WorkFail(b"H:2"))
        assert [type(e) for e in calls.results.values()] == [trigear.JobFailed] * 2
        await no_probe(peer, client)
