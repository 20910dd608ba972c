"""The client and worker processes of the chaos test (run as scripts, not imported).

``chaos_peers.py client ID OUT STOPFILE ADDR...``: submits background jobs at all three
priorities, half with a unique, through the trigear client listing every server, until
STOPFILE exists.  Each submit is one line in OUT, written when it ended:
``ACK payload handle t_sent t_answered`` or ``ERR payload t_sent t_answered error``.

``chaos_peers.py worker ID OUT STOPFILE ADDR...``: a trigear worker on each server.
Each run is recorded *before* it completes: ``RUN payload handle server t_start``, then
``DONE payload handle server t_done`` after a short sleep (a long one for a payload that
starts with :data:`SLOW_PREFIX`), then WORK_COMPLETE.

Times are ``time.time()``: the test compares them with its own kill and freeze times.
"""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from typing import TextIO

import trio

import trigear
from trigear.protocol.packets import Priority

PRIORITIES = (Priority.HIGH, Priority.NORMAL, Priority.LOW)
#: Concurrent submit loops per client, and the pause between two submits of one loop.
SUBMITTERS = 6
PAUSE = 0.06
#: Jobs a worker runs at once (per server), and how long each takes.
CONCURRENCY = 8
RUN_TIME = 0.05
#: Jobs whose payload starts with this run for SLOW_RUN_TIME: the test's victims of the
#: freeze, still running when their server stops.
SLOW_PREFIX = "victim-"
SLOW_RUN_TIME = 3.0


def stopped(path: str) -> bool:
    return os.path.exists(path)


async def wait_for(path: str) -> None:
    while True:
        if stopped(path):
            return
        await trio.sleep(0.2)


async def client(ident: str, out: TextIO, stop: str, addresses: list[str]) -> None:
    async with trigear.open_client(*addresses) as c:

        async def submitter(k: int) -> None:
            n = 0
            while not stopped(stop):
                n += 1
                payload = f"{ident}-{k}-{n}"
                unique = payload if n % 2 == 0 else None
                sent = time.time()
                try:
                    handle = await c.submit_background(
                        "chaos", payload, unique=unique, priority=PRIORITIES[n % 3]
                    )
                except Exception as exc:
                    error = " ".join(repr(exc).split())
                    out.write(f"ERR {payload} {sent} {time.time()} {error}\n")
                else:
                    out.write(f"ACK {payload} {handle.decode()} {sent} {time.time()}\n")
                await trio.sleep(PAUSE)

        async with trio.open_nursery() as nursery:
            for k in range(SUBMITTERS):
                nursery.start_soon(submitter, k)


async def worker(ident: str, out: TextIO, stop: str, addresses: list[str]) -> None:
    # One Worker per server: a worker over several servers gives every free slot to any
    # connection that grabs, and a frozen server (SIGSTOP) would keep the grabs it took
    # unanswered, starving the others (docs/cluster.md, "What is not covered").
    workers = [trigear.Worker(a, client_id=f"chaos-{ident}") for a in addresses]

    async def run(job: trigear.Job) -> bytes:
        server = job._session.conn.address
        payload, handle = job.data.decode(), job.handle.decode()
        out.write(f"RUN {payload} {handle} {server} {time.time()}\n")
        await trio.sleep(SLOW_RUN_TIME if payload.startswith(SLOW_PREFIX) else RUN_TIME)
        out.write(f"DONE {payload} {handle} {server} {time.time()}\n")
        return b"ok"

    async with trio.open_nursery() as nursery:
        for w in workers:
            w.register("chaos", run)
            nursery.start_soon(partial(w.run, concurrency=CONCURRENCY))
        await wait_for(stop)
        for w in workers:
            w.stop()


if __name__ == "__main__":
    role, ident, out_path, stop, *addresses = sys.argv[1:]
    with open(out_path, "a", buffering=1) as out:
        trio.run(client if role == "client" else worker, ident, out, stop, addresses)
