"""Jobs per second of a client process and a worker process against one gearmand.

Not a test: run it and read the figures (docs/performance.md, "Client and worker").

    python benchmarks/client_worker_bench.py [--jobs 20000] [--inflight 100]
        [--gearmand PATH] [--gearload PATH] [--backend trio]

Three pairs do the same work, one after the other, against one gearmand (Debian's
gearman-job-server by default) started on a free loopback port: foreground jobs with a
64-byte payload that the worker echoes, ``--inflight`` in flight, one client process and
one worker process each.

* ``C``: the neutral libgearman load generator, ``../shared/tools/gearload.c`` (a
  libgearman client and a C worker), run as
  ``gearload -p PORT -m fg -c 1 -w 1 -b INFLIGHT -n JOBS``.  Built here with ``cc``
  (needs libgearman-dev) unless ``--gearload`` names a binary already built.
* ``trigear``: ``trigear.open_client`` with INFLIGHT tasks submitting, and
  ``trigear.Worker.run(concurrency=INFLIGHT)``.
* ``trigear-1``: the same client, and the worker at ``concurrency=1``: like the C
  worker, one job per round trip.
* ``gear``: python gear's ``Client`` (INFLIGHT jobs outstanding; its ``submitJob`` waits
  for JOB_CREATED) and ``Worker`` (one job at a time: its API has no concurrency).  It
  runs ``--gear-jobs`` jobs (default 500), as its worker manages a few dozen a second.

Timed in the client from the first submit to the last result, the worker already
connected.  Prints one line per pair and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

PAYLOAD = b"x" * 64
HERE = os.path.dirname(os.path.abspath(__file__))
GEARLOAD_C = os.path.join(HERE, "..", "..", "shared", "tools", "gearload.c")


def build_gearload(source: str, exe: str) -> str | None:
    """Compile the load generator; None (the C pair is left out) if that fails."""
    try:
        subprocess.run(["cc", "-O2", "-o", exe, source, "-lgearman"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"cannot build {source} ({exc}): the C pair is left out")
        return None
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- trigear ------------------------------------------------------------------------


def trigear_worker(port: int, function: str, concurrency: int, backend: str) -> None:
    import anyio

    import trigear

    worker = trigear.Worker(f"127.0.0.1:{port}")

    @worker.function(function)
    async def echo(job: trigear.Job) -> bytes:
        return job.data

    async def main() -> None:
        await worker.run(concurrency=concurrency)

    anyio.run(main, backend=backend)


def trigear_client(port: int, function: str, jobs: int, inflight: int, backend: str) -> float:
    import anyio

    import trigear

    async def main() -> float:
        async with trigear.open_client(f"127.0.0.1:{port}") as client:
            await client.echo(b"warm")
            left = jobs

            async def loop() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    assert await client.submit(function, PAYLOAD) == PAYLOAD

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(inflight):
                    tg.start_soon(loop)
            return time.perf_counter() - start

    return float(anyio.run(main, backend=backend))


# --- python gear --------------------------------------------------------------------


def gear_worker(port: int, function: str) -> None:
    import gear

    worker = gear.Worker("bench-worker")
    worker.addServer("127.0.0.1", port)
    worker.waitForServer()
    worker.registerFunction(function)
    while True:
        job = worker.getJob()
        job.sendWorkComplete(job.arguments)


def gear_client(port: int, function: str, jobs: int, inflight: int) -> float:
    import gear

    slots = threading.Semaphore(inflight)
    finished = threading.Event()
    count = 0
    lock = threading.Lock()

    class Client(gear.Client):  # type: ignore[misc]
        def handleWorkComplete(self, packet: object) -> object:
            nonlocal count
            job = super().handleWorkComplete(packet)
            slots.release()
            with lock:
                count += 1
                if count == jobs:
                    finished.set()
            return job

    client = Client("bench-client")
    client.addServer("127.0.0.1", port)
    client.waitForServer()
    start = time.perf_counter()
    for _ in range(jobs):
        slots.acquire()
        client.submitJob(gear.Job(function.encode(), PAYLOAD))
    finished.wait()
    elapsed = time.perf_counter() - start
    client.shutdown()
    return elapsed


# --- driver -------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--gearmand", default="/usr/sbin/gearmand")
    ap.add_argument("--gearload", help="a gearload binary (default: build --gearload-c)")
    ap.add_argument(
        "--gearload-c", default=GEARLOAD_C, help="its source (../shared/tools/gearload.c)"
    )
    ap.add_argument("--backend", default="trio", choices=["trio", "asyncio"])
    ap.add_argument("--skip-gear", action="store_true")
    ap.add_argument(
        "--gear-jobs", type=int, default=500, help="jobs for the gear pair (it is slow)"
    )
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--function", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.role == "trigear-worker":
        trigear_worker(a.port, a.function, a.inflight, a.backend)
        return
    if a.role == "gear-worker":
        gear_worker(a.port, a.function)
        return

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-gearmand-", suffix=".log")  # noqa: SIM115
    build = tempfile.TemporaryDirectory(prefix="bench-gearload-")
    server = subprocess.Popen([a.gearmand, "-p", str(port), "-L", "127.0.0.1", "-l", log.name])
    results: dict[str, float] = {}
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)

        gearload = a.gearload or build_gearload(a.gearload_c, os.path.join(build.name, "gl"))
        if gearload is not None:
            out = subprocess.run(
                [
                    gearload,
                    "-p",
                    str(port),
                    "-m",
                    "fg",
                    "-c",
                    "1",
                    "-w",
                    "1",
                    "-b",
                    str(a.inflight),
                    "-n",
                    str(a.jobs),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            line = json.loads(out.strip().splitlines()[-1])
            results["C"] = float(line["jobs_per_s"])
            print(f"C        {results['C']:9.0f} jobs/s", flush=True)

        # The trigear worker as it is used (a slot per job in flight), then like for like
        # with the C worker, which takes one job per round trip: concurrency 1.
        for name, concurrency in (("trigear", a.inflight), ("trigear-1", 1)):
            worker = spawn(
                "--role", "trigear-worker", "--port", str(port), "--function", name,
                "--inflight", str(concurrency), "--backend", a.backend,
            )  # fmt: skip
            try:
                time.sleep(1.0)
                elapsed = trigear_client(port, name, a.jobs, a.inflight, a.backend)
                results[name] = a.jobs / elapsed
                print(f"{name:9s}{results[name]:9.0f} jobs/s", flush=True)
            finally:
                worker.kill()
                worker.wait()

        if not a.skip_gear:
            worker = spawn("--role", "gear-worker", "--port", str(port), "--function", "gr")
            try:
                time.sleep(1.0)
                elapsed = gear_client(port, "gr", a.gear_jobs, a.inflight)
                results["gear"] = a.gear_jobs / elapsed
            finally:
                worker.kill()
                worker.wait()
    finally:
        server.kill()
        server.wait()
        log.close()
        build.cleanup()

    for name, rate in results.items():
        ratio = f"  ({rate / results['C']:.2f}x C)" if "C" in results else ""
        print(f"{name:9s} {rate:9.0f} jobs/s{ratio}")
    print(
        json.dumps(
            {
                "jobs": a.jobs,
                "gear_jobs": a.gear_jobs,
                "inflight": a.inflight,
                "backend": a.backend,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
