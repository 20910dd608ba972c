"""The worker against a scripted fake server on loopback.

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
from trigear.protocol import packets as P

from ..fake_server import fake_servers, settle

pytestmark = pytest.mark.anyio


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
        assert worker.statistics().running == 0


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
            assert worker.statistics() == trigear.WorkerStatistics(
                connections=1, connections_opened=2, running=0, free=0
            )
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


async def test_a_lost_connection_gives_its_slot_to_the_other_server() -> None:
    """Regression: the slot of a grab in flight on a connection that broke went back to
    the pool without being offered, so with concurrency=1 the other server's connection,
    awake and waiting for a slot, never grabbed again until the lost one reconnected."""
    async with fake_servers(2) as [a, b]:
        worker = trigear.Worker(a.address, b.address)

        @worker.function("f")
        async def f(job: trigear.Job) -> bytes:
            return b"done on " + job.handle

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(concurrency=1))
            peer_a = await a.accept()
            await peer_a.expect(P.GrabJobUniq)
            await peer_a.send(P.NoJob())
            await peer_a.expect(P.CanDo, P.GrabJobUniq)  # a holds the only slot
            peer_b = await b.accept()
            await peer_b.expect(P.GrabJobUniq)
            await peer_b.send(P.NoJob())
            await peer_b.expect(P.CanDo)  # registered, no slot to grab with
            await peer_a.close()
            await peer_b.expect(P.GrabJobUniq)  # the slot reached b at once
            await peer_b.send(P.JobAssignUniq(b"H:b", b"f", b"", b""))
            assert await peer_b.expect(P.WorkComplete) == [P.WorkComplete(b"H:b", b"done on H:b")]
            await peer_b.expect(P.GrabJobUniq)
            tg.cancel_scope.cancel()
