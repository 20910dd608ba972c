"""The worker shares its ``concurrency`` slots across its connections: a slot that one
connection frees on NO_JOB must reach the others (regression: with concurrency=1 and two
servers, jobs queued on the second server waited forever)."""

from __future__ import annotations

import trio

import trigear
from trigear.server import Server, ServerConfig


async def test_one_slot_serves_jobs_queued_on_every_server() -> None:
    async with trio.open_nursery() as nursery:
        servers = [Server(ServerConfig(job_handle_prefix=f"s{i}")) for i in range(2)]
        for s in servers:
            await nursery.start(s.serve_tcp, 0, ["127.0.0.1"])
        addresses = [f"127.0.0.1:{s.listeners[0].socket.getsockname()[1]}" for s in servers]
        worker = trigear.Worker(*addresses)
        ran: list[bytes] = []

        @worker.function("job")
        async def job(j: trigear.Job) -> bytes:
            ran.append(j.data)
            return j.data

        await nursery.start(lambda task_status: worker.run(concurrency=1, task_status=task_status))
        with trio.fail_after(20):
            for rnd in range(5):
                for i, address in enumerate(addresses):
                    async with trigear.open_client(address) as client:
                        data = f"{rnd}-{i}".encode()
                        assert await client.submit("job", data) == data
        assert len(ran) == 10
        nursery.cancel_scope.cancel()
