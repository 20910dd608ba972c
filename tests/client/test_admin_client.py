"""The async admin client (spec section 3) against real servers: C gearmand, the Perl
server and trigear (gearmand and Perl runs carry the ``interop`` mark)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio
import pytest

import trigear
from trigear.client.admin import AdminClient, open_admin_client

from ..peers import free_port
from .client_helpers import serving, until

if TYPE_CHECKING:
    from ..server_processes import ServerProcess

pytestmark = pytest.mark.anyio


async def test_status_workers_and_jobs(server: ServerProcess) -> None:
    worker = trigear.Worker(server.address, client_id="admin-test")
    started, release = anyio.Event(), anyio.Event()

    @worker.function("slow")
    async def slow(job: trigear.Job) -> bytes:
        started.set()
        await release.wait()
        return job.data

    with anyio.fail_after(20):
        async with (
            trigear.open_client(server.address) as client,
            open_admin_client(server.address) as admin,
            serving(worker, concurrency=1),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(functools.partial(client.submit, "slow", b"first", unique="u-first"))
            await started.wait()
            await client.submit_background("slow", b"second", unique="u-second")

            status = {r.function: r for r in await admin.status()}
            assert status[b"slow"].total == 2
            assert status[b"slow"].running == 1
            assert status[b"slow"].workers == 1

            rows = await admin.workers()
            ours = [r for r in rows if r.client_id == b"admin-test"]
            assert [r.functions for r in ours] == [(b"slow",)]
            assert all(r.ip == b"127.0.0.1" for r in rows)

            if server.kind != "perl":  # Gearman::Server has neither command
                prio = {r.function: r for r in await admin.prioritystatus()}
                assert (prio[b"slow"].high, prio[b"slow"].normal, prio[b"slow"].low) == (0, 1, 0)
                jobs = await admin.show_jobs()
                assert len(jobs) == 2
                assert all(j.handle.startswith(b"H:") for j in jobs)
                assert sorted(await admin.show_unique_jobs()) == [b"u-first", b"u-second"]
            release.set()


async def test_one_line_commands(server: ServerProcess) -> None:
    async with open_admin_client(server.address) as admin:
        version = await admin.version()
        assert version
        if server.kind == "trigear":
            assert version == f"trigear-{trigear.__version__}"
        if server.kind == "perl":
            return  # the rest are gearmand's commands
        assert server.proc is not None
        assert await admin.getpid() == server.proc.pid
        assert await admin.verbose() in ("ERROR", "WARNING", "INFO", "NOTICE", "DEBUG", "ERR")
        await admin.create_function("made")
        assert b"made" in {r.function for r in await admin.status()}
        await admin.maxqueue("made", 5)
        await admin.maxqueue("made", 1, 2, 3)
        await admin.maxqueue("made")
        await admin.drop_function("made")
        assert b"made" not in {r.function for r in await admin.status()}


async def test_err_replies_are_server_errors(server: ServerProcess) -> None:
    async with open_admin_client(server.address) as admin:
        if server.kind != "perl":
            with pytest.raises(trigear.ServerError) as err:
                await admin.cancel_job("H:nosuch:1")
            assert err.value.code == b"UNKNOWN_JOB"
            with pytest.raises(trigear.ServerError) as err:
                await admin.drop_function("never-made")
            assert (err.value.code, err.value.text) == (b"", b"function not found")
        # Raw: the reply comes back as sent, ERR included, and the connection stays usable.
        reply = await admin.command("bogus")
        assert reply.startswith(b"ERR ")
        assert reply.endswith(b"\r\n")
        assert await admin.status() is not None


async def test_cancel_job_removes_it_on_trigear(make_server: object) -> None:
    server = make_server("trigear")  # type: ignore[operator]
    async with (
        trigear.open_client(server.address) as client,
        open_admin_client(server.address) as admin,
    ):
        handle = await client.submit_background("nobody", b"x")
        assert [j.handle for j in await admin.show_jobs()] == [handle]
        await admin.cancel_job(handle)
        assert await admin.show_jobs() == []


async def test_shutdown_graceful_stops_trigear(make_server: object) -> None:
    server = make_server("trigear")  # type: ignore[operator]
    async with open_admin_client(server.address) as admin:
        await admin.shutdown(graceful=True)
    assert server.proc is not None
    with anyio.fail_after(20):
        await until(lambda: server.proc is not None and server.proc.poll() is not None)
    assert server.proc.returncode == 0


async def test_a_server_that_is_not_there() -> None:
    admin = AdminClient(f"127.0.0.1:{free_port()}")
    with pytest.raises(trigear.NoServerAvailable, match="cannot connect"):
        await admin.status()


async def test_a_reply_cut_short_is_connection_lost_and_the_next_command_reconnects() -> None:
    """A 'server' that answers half a listing and hangs up, then answers properly."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    replies = [b"f\t1\t0", b"f\t1\t0\t1\n.\n"]

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(replies.pop(0))

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        admin = AdminClient(("127.0.0.1", port))
        with anyio.fail_after(10):
            with pytest.raises(trigear.ConnectionLost, match="closed"):
                await admin.status()
            rows = await admin.status()
        assert [(r.function, r.total, r.running, r.workers) for r in rows] == [(b"f", 1, 0, 1)]
        await admin.aclose()
        tg.cancel_scope.cancel()


async def test_cancelling_mid_reply_drops_the_connection() -> None:
    """A command cancelled before its reply came leaves no reply to be mistaken for the
    next command's: the connection is closed and the next command opens a new one."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    connections = 0

    async def serve(stream: anyio.abc.SocketStream) -> None:
        nonlocal connections
        connections += 1
        async with stream:
            line = await stream.receive()
            if line.startswith(b"version") and connections == 1:
                await anyio.sleep_forever()
            await stream.send(b"OK later\n")

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        admin = AdminClient(("127.0.0.1", port))
        with anyio.move_on_after(0.3):
            await admin.version()
        with anyio.fail_after(10):
            assert await admin.version() == "later"
        assert connections == 2
        await admin.aclose()
        tg.cancel_scope.cancel()


async def test_words_that_cannot_be_sent_are_value_errors() -> None:
    admin = AdminClient(f"127.0.0.1:{free_port()}")  # nothing is sent: no server needed
    for bad in ("two words", "", "a\nb"):
        with pytest.raises(ValueError, match="cannot be sent"):
            await admin.cancel_job(bad)
    with pytest.raises(ValueError, match="one line"):
        await admin.command("status\nworkers")
    with pytest.raises(ValueError, match="maxqueue takes"):
        await admin.maxqueue("f", 1, 2)
