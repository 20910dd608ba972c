"""The client and worker against a scripted fake server on loopback.

The fake speaks through the protocol core (``Decoder(Role.SERVER)``, ``encode_response``),
so each test decides exactly which answer comes when: FIFO correlation after
cancellation, quirks of real servers, failover, the worker's grab/sleep machine.
"""

from __future__ import annotations

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import trigear
from trigear.protocol import Decoder, Role
from trigear.protocol import packets as P

from ..fake_server import FakeConnection, FakeServer, fake_servers, settle

pytestmark = pytest.mark.anyio


# --- client ---------------------------------------------------------------------------


async def test_cancelled_submit_still_swallows_its_job_created() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        results: list[bytes] = []
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def first() -> None:
                with scope:
                    await client.submit("f", b"one")

            tg.start_soon(first)
            peer = await fake.accept()
            await peer.client_handshake()
            (sub,) = await peer.expect(P.SubmitJob)
            assert sub == P.SubmitJob(b"f", b"", b"one")
            scope.cancel()  # after send, before JOB_CREATED

        async def second() -> None:
            results.append(await client.submit("f", b"two"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            (sub,) = await peer.expect(P.SubmitJob)
            assert sub.data == b"two"
            await peer.send(
                P.JobCreated(b"H:1"),
                P.JobCreated(b"H:2"),
                P.WorkComplete(b"H:1", b"stale"),
                P.WorkData(b"H:1", b"stale"),
                P.WorkComplete(b"H:2", b"fresh"),
            )
        assert results == [b"fresh"]
        assert client.statistics() == trigear.ClientStatistics(
            connections=1, connections_opened=1, pending=0, jobs=0
        )


async def test_cancel_after_job_created_drops_later_work_packets() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def first() -> None:
                with scope:
                    await client.submit("f", b"one")

            tg.start_soon(first)
            peer = await fake.accept()
            await peer.client_handshake()
            await peer.expect(P.SubmitJob)
            await peer.send(P.JobCreated(b"H:1"))
            await settle()
            assert client.statistics().jobs == 1
            scope.cancel()
        assert client.statistics().jobs == 0
        await peer.send(P.WorkStatus(b"H:1", b"1", b"2"), P.WorkComplete(b"H:1", b"late"))
        async with anyio.create_task_group() as tg:

            async def script() -> None:
                await peer.expect(P.EchoReq)
                await peer.send(P.EchoRes(b"ping"))

            tg.start_soon(script)
            assert await client.echo(b"ping") == b"ping"


async def test_coalesced_submits_on_one_connection_both_get_the_result() -> None:
    """Two submits of one unique on one connection: the server (as gearmand) answers
    each, and sends each packet once per submit (spec S2); each call gets its copy."""
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        results: list[bytes] = []

        async def one() -> None:
            results.append(await client.submit("f", b"x", unique="k"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            peer = await fake.accept()
            await peer.client_handshake()
            await peer.expect(P.SubmitJob)
            tg.start_soon(one)
            await peer.expect(P.SubmitJob)
            await peer.send(P.JobCreated(b"H:1"), P.JobCreated(b"H:1"))
            await peer.send(P.WorkStatus(b"H:1", b"1", b"2"), P.WorkStatus(b"H:1", b"1", b"2"))
            await peer.send(P.WorkComplete(b"H:1", b"r"), P.WorkComplete(b"H:1", b"r"))
        assert results == [b"r", b"r"]
        assert client.statistics() == trigear.ClientStatistics(
            connections=1, connections_opened=1, pending=0, jobs=0
        )


async def test_failures_exceptions_and_server_errors() -> None:
    async with (
        fake_servers() as [fake],
        trigear.open_client(fake.address) as client,
        anyio.create_task_group() as tg,
    ):

        async def script() -> None:
            peer = await fake.accept()
            await peer.client_handshake()
            await peer.expect(P.SubmitJob)
            # gearmand 1.1.20 sends a NUL after the handle of WORK_FAIL.
            await peer.send(P.JobCreated(b"H:1"), P.WorkFail(b"H:1\0"))
            await peer.expect(P.SubmitJobHigh)
            await peer.send(P.JobCreated(b"H:2"), P.WorkException(b"H:2", b"boom"))
            await peer.expect(P.SubmitJobLowBg)
            await peer.send(P.Error(b"QUEUE_ERROR", b"Job queue is full"))
            await peer.expect(P.EchoReq)
            await peer.send(P.EchoRes(b"still fine"))

        tg.start_soon(script)
        with pytest.raises(trigear.JobFailed) as failed:
            await client.submit("f", b"")
        assert failed.value.handle == b"H:1"
        assert not isinstance(failed.value, trigear.JobException)
        with pytest.raises(trigear.JobException) as exc:
            await client.submit("f", b"", priority=trigear.Priority.HIGH)
        assert exc.value.data == b"boom"
        with pytest.raises(trigear.ServerError) as err:
            await client.submit_background("f", b"", priority=trigear.Priority.LOW)
        assert err.value.code == b"QUEUE_ERROR"
        assert await client.echo("x") == b"still fine"


async def test_stream_updates_then_result_and_mid_stream_cancel() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:
        peer_box: list[FakeConnection] = []

        async def script() -> None:
            peer = await fake.accept()
            peer_box.append(peer)
            await peer.client_handshake()
            await peer.expect(P.SubmitJob)
            await peer.send(
                P.JobCreated(b"H:1"),
                P.WorkStatus(b"H:1", b"1", b"3"),
                P.WorkData(b"H:1", b"a"),
                P.WorkWarning(b"H:1", b"w"),
                P.WorkComplete(b"H:1", b"done"),
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(script)
            async with client.submit_stream("f", "in") as job:
                assert job.handle == b"H:1"
                updates = [u async for u in job]
            assert updates == [
                trigear.StatusUpdate(1, 3),
                trigear.DataUpdate(b"a"),
                trigear.WarningUpdate(b"w"),
            ]
            assert job.result == b"done"
            assert job.done
        peer = peer_box[0]
        # Mid-stream: leave after the first update; later packets are dropped.
        async with anyio.create_task_group() as tg:

            async def script2() -> None:
                await peer.expect(P.SubmitJob)
                await peer.send(P.JobCreated(b"H:2"), P.WorkData(b"H:2", b"1"))

            tg.start_soon(script2)
            with anyio.CancelScope() as scope:
                async with client.submit_stream("f", "in") as job:
                    with pytest.raises(RuntimeError):
                        _ = job.result
                    async for update in job:
                        assert update == trigear.DataUpdate(b"1")
                        scope.cancel()
                        await anyio.sleep(1)
            assert scope.cancelled_caught
        assert client.statistics().jobs == 0
        await peer.send(P.WorkData(b"H:2", b"2"), P.WorkComplete(b"H:2", b"x"))
        async with anyio.create_task_group() as tg:

            async def script3() -> None:
                await peer.expect(P.SubmitJobBg)
                await peer.send(P.JobCreated(b"H:3"))

            tg.start_soon(script3)
            assert await client.submit_background("f") == b"H:3"


async def test_status_with_empty_numbers_from_the_perl_server() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:

        async def script() -> None:
            peer = await fake.accept()
            await peer.client_handshake()
            await peer.expect(P.GetStatus)
            raw = b"H:9\x001\x000\x00\x00"
            packet = b"\0RES" + (20).to_bytes(4, "big") + len(raw).to_bytes(4, "big") + raw
            for i in range(len(packet)):  # one byte at a time
                await peer.send_raw(packet[i : i + 1])
                await anyio.lowlevel.checkpoint()
            await peer.expect(P.GetStatusUnique)
            await peer.send(P.StatusResUnique(b"u", True, True, 3, 4, 2))

        async with anyio.create_task_group() as tg:
            tg.start_soon(script)
            assert await client.get_status(b"H:9") == trigear.JobStatus(True, False, 0, 0)
            assert await client.get_status_unique("u") == trigear.JobStatus(True, True, 3, 4, 2)


def test_empty_status_numbers_decode_as_zero_at_every_split() -> None:
    def pkt(t: int, body: bytes) -> bytes:
        return b"\0RES" + t.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body

    stream = (
        pkt(13, b"H:1\0" + b"x" * 40)
        + pkt(20, b"H:1\x001\x001\x00\x00")
        + pkt(20, b"H:2\x001\x001\x005\x006")
        + pkt(8, b"H:3")
    )
    want = [
        P.WorkComplete(b"H:1", b"x" * 40),
        P.StatusRes(b"H:1", True, True, 0, 0),
        P.StatusRes(b"H:2", True, True, 5, 6),
        P.JobCreated(b"H:3"),
    ]
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1, 7):
            d = Decoder(Role.CLIENT)
            got = []
            for part in (stream[:i], stream[i:j], stream[j:]):
                d.receive_data(part)
                got += d.receive_events()
            assert got == want


async def test_unexpected_answer_drops_the_connection_not_the_client() -> None:
    async with fake_servers() as [fake], trigear.open_client(fake.address) as client:

        async def script() -> None:
            peer = await fake.accept()
            await peer.client_handshake()
            await peer.expect(P.SubmitJob)
            await peer.send(P.EchoRes(b"?"))  # not what was due
            peer2 = await fake.accept()
            await peer2.client_handshake()
            await peer2.expect(P.EchoReq)
            await peer2.send(P.EchoRes(b"again"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(script)
            with pytest.raises(trigear.NoServerAvailable):
                await client.submit("f")
            assert await client.echo(b"again") == b"again"


async def test_lost_before_job_created_fails_over_and_after_raises() -> None:
    async with fake_servers(2) as fakes, trigear.open_client(*(f.address for f in fakes)) as client:
        order = client._placement.order(b"k", b"")
        first = fakes[[f.address for f in fakes].index(str(order[0]))]
        second = fakes[[f.address for f in fakes].index(str(order[1]))]

        async def script() -> None:
            peer = await first.accept()
            await peer.client_handshake()
            await peer.expect(P.SubmitJob)
            await peer.close()  # no JOB_CREATED: maybe taken, maybe not
            peer2 = await second.accept()
            await peer2.client_handshake()
            await peer2.expect(P.SubmitJob)
            await peer2.send(P.JobCreated(b"H:b"), P.WorkComplete(b"H:b", b"ok"))
            await peer2.expect(P.SubmitJob)
            await peer2.send(P.JobCreated(b"H:c"))
            await settle()
            await peer2.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(script)
            assert await client.submit("f", b"", unique="k") == b"ok"
            unique = next(
                u
                for u in (b"u%d" % i for i in range(100))
                if client._placement.order(u, b"")[0] == order[1]
            )
            with pytest.raises(trigear.ConnectionLost):
                await client.submit("f", b"", unique=unique)
        assert client.statistics() == trigear.ClientStatistics(
            connections=0, connections_opened=2, pending=0, jobs=0
        )


async def test_dead_server_is_skipped() -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    async with fake_servers() as [fake], trigear.open_client(dead, fake.address) as client:

        async def script() -> None:
            peer = await fake.accept()
            await peer.client_handshake()
            for _ in range(4):
                (req,) = await peer.expect(P.EchoReq)
                await peer.send(P.EchoRes(req.data))

        async with anyio.create_task_group() as tg:
            tg.start_soon(script)
            for i in range(4):
                assert await client.echo(b"%d" % i) == b"%d" % i


async def test_client_id_and_closed_client() -> None:
    async with fake_servers() as [fake]:
        async with trigear.open_client(fake.address, client_id="me") as client:

            async def script() -> None:
                peer = await fake.accept()
                (cid,) = await peer.expect(P.SetClientId)
                assert cid.client_id == b"me"
                await peer.client_handshake()
                await peer.expect(P.SubmitJob)

            errors: list[BaseException] = []

            async def submit() -> None:
                try:
                    await client.submit("f")
                except anyio.ClosedResourceError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(script)
                tg.start_soon(submit)
                await settle()
                await settle()
                await client.aclose()  # closed by us: ClosedResourceError, as in trio
            assert len(errors) == 1
            with pytest.raises(anyio.ClosedResourceError):
                await client.echo()
        with pytest.raises(ValueError, match="boom"):
            async with trigear.open_client(fake.address):
                raise ValueError("boom")


async def test_status_falls_back_when_the_creator_is_gone_or_does_not_know() -> None:
    """Servers sharing a store take over a dead server's jobs under their handles: a
    status of a handle its creator no longer holds is asked of the other servers."""
    async with (
        fake_servers(2) as fakes,
        trigear.open_client(fakes[0].address, fakes[1].address) as client,
    ):
        # The unique places the job on one of the two; find which.
        async def submit_script(fake: FakeServer) -> None:
            peer = await fake.accept()
            await peer.client_handshake()
            await peer.expect(P.SubmitJobBg)
            await peer.send(P.JobCreated(b"H:a:1"))
            creators.append((fake, peer))

        creators: list[tuple[FakeServer, FakeConnection]] = []
        async with anyio.create_task_group() as tg:
            for fake in fakes:
                tg.start_soon(submit_script, fake)
            assert await client.submit_background("f", unique="u1") == b"H:a:1"
            tg.cancel_scope.cancel()
        ((creator, peer),) = creators
        other = fakes[1] if creator is fakes[0] else fakes[0]

        async def adopter_script() -> None:
            adopter = await other.accept()
            await adopter.client_handshake()
            for _ in range(2):
                await adopter.expect(P.GetStatus)
                await adopter.send(P.StatusRes(b"H:a:1", True, True, 1, 2))

        async with anyio.create_task_group() as tg:
            tg.start_soon(adopter_script)
            # The creator answers "unknown": the other server is asked next.
            async with anyio.create_task_group() as inner:

                async def creator_unknown() -> None:
                    await peer.expect(P.GetStatus)
                    await peer.send(P.StatusRes(b"H:a:1", False, False, 0, 0))

                inner.start_soon(creator_unknown)
                status = await client.get_status(b"H:a:1")
            assert status == trigear.JobStatus(True, True, 1, 2)
            # The creator's connection breaks on the call: the other server answers.
            await peer.close()
            await settle()

            async def creator_breaks() -> None:
                again = await creator.accept()
                await again.close()

            tg.start_soon(creator_breaks)
            assert await client.get_status(b"H:a:1") == trigear.JobStatus(True, True, 1, 2)
