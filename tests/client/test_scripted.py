"""The client and worker against a scripted fake server on loopback.

The fake speaks through the protocol core (``Decoder(Role.SERVER)``, ``encode_response``),
so each test decides exactly which answer comes when: FIFO correlation after
cancellation, quirks of real servers, failover, the worker's grab/sleep machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import trigear
from trigear.protocol import NEED_DATA, Decoder, Role, encode_response
from trigear.protocol import packets as P

pytestmark = pytest.mark.anyio


class Peer:
    """One accepted connection, seen from the fake server."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.decoder = Decoder(Role.SERVER)

    async def recv(self) -> Any:
        with anyio.fail_after(5):
            while True:
                ev = self.decoder.next_event()
                if ev is not NEED_DATA:
                    return ev
                self.decoder.receive_data(await self.stream.receive())

    async def expect(self, *classes: type[Any]) -> list[Any]:
        got = [await self.recv() for _ in classes]
        assert [type(e) for e in got] == list(classes), got
        return got

    async def send(self, *events: Any) -> None:
        await self.stream.send(b"".join(encode_response(e) for e in events))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def client_handshake(self) -> None:
        """Answer the OPTION_REQ exceptions every client connection opens with."""
        (opt,) = await self.expect(P.OptionReq)
        assert opt.option == b"exceptions"
        await self.send(P.OptionRes(b"exceptions"))

    async def close(self) -> None:
        await self.stream.aclose()


class FakeServer:
    def __init__(self, listener: anyio.abc.SocketListener) -> None:
        self.listener = listener
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.address = f"127.0.0.1:{port}"
        self._send, self._receive = anyio.create_memory_object_stream[Peer](10)

    async def serve(self) -> None:
        async def handle(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await self._send.send(Peer(stream))
                await anyio.sleep_forever()

        async with self.listener:
            await self.listener.serve(handle)

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def accept(self) -> Peer:
        with anyio.fail_after(5):
            return await self._receive.receive()


@asynccontextmanager
async def fake_servers(n: int = 1) -> AsyncIterator[list[FakeServer]]:
    async with anyio.create_task_group() as tg:
        fakes = []
        for _ in range(n):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            fake = FakeServer(listener)
            tg.start_soon(fake.serve)
            fakes.append(fake)
        try:
            yield fakes
        finally:
            tg.cancel_scope.cancel()
            for fake in fakes:
                fake.close()


async def settle() -> None:
    for _ in range(20):
        await anyio.lowlevel.checkpoint()
    await anyio.sleep(0.01)


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
        assert client.statistics() == {"connections": 1, "pending": 0, "jobs": 0}


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
            assert client.statistics()["jobs"] == 1
            scope.cancel()
        assert client.statistics()["jobs"] == 0
        await peer.send(P.WorkStatus(b"H:1", b"1", b"2"), P.WorkComplete(b"H:1", b"late"))
        async with anyio.create_task_group() as tg:

            async def script() -> None:
                await peer.expect(P.EchoReq)
                await peer.send(P.EchoRes(b"ping"))

            tg.start_soon(script)
            assert await client.echo(b"ping") == b"ping"


async def test_coalesced_submits_on_one_connection_both_get_the_result() -> None:
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
            await peer.send(P.WorkComplete(b"H:1", b"r"))
        assert results == [b"r", b"r"]


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
        peer_box: list[Peer] = []

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
                trigear.WorkStatus(1, 3),
                trigear.WorkData(b"a"),
                trigear.WorkWarning(b"w"),
            ]
            assert job.result == b"done" and job.done
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
                        assert update == trigear.WorkData(b"1")
                        scope.cancel()
                        await anyio.sleep(1)
            assert scope.cancelled_caught
        assert client.statistics()["jobs"] == 0
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
        assert client.statistics() == {"connections": 0, "pending": 0, "jobs": 0}


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


# --- worker ---------------------------------------------------------------------------


async def test_worker_grab_sleep_wake_cycle() -> None:
    async with fake_servers() as [fake]:
        worker = trigear.Worker(fake.address, client_id="w1")
        seen: list[bytes] = []

        @worker.function("rev", timeout=1.5)
        async def rev(job: trigear.Job) -> bytes:
            seen.append(job.unique)
            await job.send_status(1, 2)
            await job.send_data(b"part")
            return bytes(reversed(job.data))

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(concurrency=2))
            peer = await fake.accept()
            await peer.expect(P.SetClientId, P.GrabJobUniq)
            await peer.send(P.NoJob())
            (cdt, _, _) = await peer.expect(P.CanDoTimeout, P.GrabJobUniq, P.GrabJobUniq)
            assert cdt == P.CanDoTimeout(b"rev", 1500)
            await peer.send(P.JobAssignUniq(b"H:1", b"rev", b"u1", b"abc"), P.NoJob())
            # Every grab answered, one with NO_JOB: sleep, while H:1 runs.
            got = await peer.expect(P.PreSleep, P.WorkStatus, P.WorkData, P.WorkComplete)
            assert got[3] == P.WorkComplete(b"H:1", b"cba")
            await peer.send(P.Noop())
            await peer.expect(P.GrabJobUniq, P.GrabJobUniq)
            await peer.send(P.NoJob(), P.NoJob())
            await peer.expect(P.PreSleep)
            assert seen == [b"u1"]
            worker.stop()
        assert worker.statistics()["running"] == 0


async def test_worker_on_a_legacy_server() -> None:
    async with fake_servers() as [fake]:
        worker = trigear.Worker(fake.address)

        @worker.function("boom", timeout=0.2)
        async def boom(job: trigear.Job) -> bytes:
            await job.send_data(b"dropped")
            await job.send_warning(b"dropped")
            raise KeyError("nope")

        @worker.function("fail")
        def fail(job: trigear.Job) -> bytes:
            raise trigear.JobFailed()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(concurrency=1))
            peer = await fake.accept()
            await peer.expect(P.GrabJobUniq)
            await peer.send(P.Error(b"server_error", b"Can't locate object method"))
            cans = await peer.expect(P.CanDoTimeout, P.CanDo, P.GrabJob)
            assert cans[0] == P.CanDoTimeout(b"boom", 1)  # seconds on the Perl server
            await peer.send(P.JobAssign(b"H:1", b"boom", b""))
            exc, fail_ = await peer.expect(P.WorkException, P.WorkFail)
            assert exc == P.WorkException(b"H:1", b"KeyError: 'nope'")
            assert fail_ == P.WorkFail(b"H:1")
            await peer.expect(P.GrabJob)
            await peer.send(P.JobAssign(b"H:2", b"fail", b""))
            assert await peer.expect(P.WorkFail) == [P.WorkFail(b"H:2")]
            await peer.expect(P.GrabJob)
            await peer.send(P.JobAssign(b"H:3", b"unknown", b""))
            assert await peer.expect(P.WorkFail) == [P.WorkFail(b"H:3")]
            await peer.expect(P.GrabJob)
            await peer.send(P.NoJob())
            await peer.expect(P.PreSleep)
            tg.cancel_scope.cancel()


async def test_worker_reconnects_and_cancels_jobs_of_a_lost_connection() -> None:
    async with fake_servers() as [fake]:
        worker = trigear.Worker(fake.address)
        started = anyio.Event()
        cancelled: list[bool] = []

        @worker.function("slow")
        async def slow(job: trigear.Job) -> bytes:
            started.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(True)
                raise
            raise AssertionError("unreachable")

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(concurrency=1))
            peer = await fake.accept()
            await peer.expect(P.GrabJobUniq)
            await peer.send(P.NoJob())
            await peer.expect(P.CanDo, P.GrabJobUniq)
            await peer.send(P.JobAssignUniq(b"H:1", b"slow", b"", b""))
            with anyio.fail_after(5):
                await started.wait()
            await peer.close()
            peer2 = await fake.accept()  # after a short backoff
            await peer2.expect(P.GrabJobUniq)
            assert cancelled == [True]
            await peer2.send(P.NoJob())
            await peer2.expect(P.CanDo, P.GrabJobUniq)
            assert worker.statistics() == {"connections": 1, "running": 0, "free": 0}
            tg.cancel_scope.cancel()


async def test_worker_graceful_stop_finishes_running_jobs() -> None:
    async with fake_servers() as [fake]:
        worker = trigear.Worker(fake.address)
        release = anyio.Event()

        @worker.function("f")
        async def f(job: trigear.Job) -> str:
            await release.wait()
            return "finished"

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(concurrency=2))
            peer = await fake.accept()
            await peer.expect(P.GrabJobUniq)
            await peer.send(P.NoJob())
            await peer.expect(P.CanDo, P.GrabJobUniq, P.GrabJobUniq)
            await peer.send(P.JobAssignUniq(b"H:1", b"f", b"", b""), P.NoJob())
            await peer.expect(P.PreSleep)
            worker.stop()
            await settle()
            release.set()
            assert await peer.expect(P.WorkComplete) == [P.WorkComplete(b"H:1", b"finished")]
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await peer.stream.receive()  # the worker closed the connection
    # run() returned on its own: the task group above exited without cancelling.


def test_worker_registration_errors() -> None:
    w = trigear.Worker("127.0.0.1:1")
    with pytest.raises(ValueError, match="empty"):
        w.register("", lambda job: b"")
    with pytest.raises(ValueError, match="timeout"):
        w.register("f", lambda job: b"", timeout=0)
    with pytest.raises(trigear.protocol.LocalProtocolError):
        w.register("a\0b", lambda job: b"")
