"""TLS against plain TCP, side by side on one trigear server: job throughput, and what
one connection's handshake costs.

Not a test: run it and read the figures (docs/security.md, "What TLS costs").

    python benchmarks/tls_bench.py [--jobs 20000] [--inflight 100] [--payload 64]
        [--rounds 3] [--connections 300]

gearload (the C load generator the other benchmarks use) cannot speak TLS, so both sides
here are trigear's own client and worker: ``trigear.open_client`` with ``--inflight``
tasks submitting foreground jobs of ``--payload`` bytes that the worker echoes, and
``trigear.Worker.run(concurrency=INFLIGHT)`` in a process of its own.

One server process listens twice: mutual TLS on one port (``--tls-cert --tls-ca``, a
private CA made here with trustme) and plain TCP on another (``--plain-listen``).
Rounds alternate plain, TLS, plain, TLS, ... with a fresh worker process each, so both
see the same server, the same machine load and the same warm-up; the medians are
printed with the ratio TLS/plain, and so is the server's CPU time per job (from
``/proc/PID/stat``), which a busy machine disturbs much less than the rate.

The handshake figures come from ``--connections`` sequential connections, each a TCP
connect, (the TLS handshake,) one ECHO_REQ answered, and a close, made with Python's
blocking ``ssl`` module: the client's wall time per connection, and the server's CPU
time per connection (from ``/proc/PID/stat``), for plain TCP, TLS 1.3 and TLS 1.2
(python gear's clients turn TLS 1.3 off).  Prints one line per figure and a JSON
summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
ECHO_REQ = b"\0REQ" + (16).to_bytes(4, "big") + (4).to_bytes(4, "big") + b"ping"
ECHO_RES = b"\0RES" + (17).to_bytes(4, "big") + (4).to_bytes(4, "big") + b"ping"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


class Certificates:
    """A private CA, the server's certificate, and one client certificate, as files."""

    def __init__(self, folder: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        self.folder = folder
        server = self.ca.issue_cert(HOST, "localhost")
        client = self.ca.issue_cert("bench.clients.test", common_name="bench")
        self.ca_file = folder / "ca.pem"
        self.server_file = folder / "server.pem"
        self.client_file = folder / "client.pem"
        self.ca.cert_pem.write_to_path(self.ca_file)
        server.private_key_and_cert_chain_pem.write_to_path(self.server_file)
        client.private_key_and_cert_chain_pem.write_to_path(self.client_file)


def client_context(ca: str, cert: str, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert)
    if max_version is not None:
        context.maximum_version = max_version
    return context


# --- throughput --------------------------------------------------------------------------


def worker_main(port: int, inflight: int, ca: str | None, cert: str | None) -> None:
    import anyio

    import trigear

    tls = client_context(ca, cert) if ca and cert else None
    worker = trigear.Worker(f"{HOST}:{port}", ssl_context=tls)

    @worker.function("echo")
    async def echo(job: trigear.Job) -> bytes:
        return job.data

    anyio.run(lambda: worker.run(concurrency=inflight), backend="trio")


def client_rate(
    port: int, jobs: int, inflight: int, payload: bytes, tls: ssl.SSLContext | None
) -> float:
    import anyio

    import trigear

    async def main() -> float:
        async with trigear.open_client(f"{HOST}:{port}", ssl_context=tls) as client:
            await client.echo(b"warm")
            left = jobs

            async def loop() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    assert await client.submit("echo", payload) == payload

            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(inflight):
                    tg.start_soon(loop)
            return jobs / (time.perf_counter() - start)

    return float(anyio.run(main, backend="trio"))


def one_round(
    port: int, args: argparse.Namespace, certs: Certificates, tls: bool, payload: bytes
) -> tuple[float, float]:
    """(jobs per second, server CPU microseconds per job) of one round."""
    extra = ["--ca", str(certs.ca_file), "--cert", str(certs.client_file)] if tls else []
    worker = subprocess.Popen(
        [sys.executable, __file__, "--role", "worker", "--port", str(port),
         "--inflight", str(args.inflight), *extra]
    )  # fmt: skip
    try:
        time.sleep(1.0)
        context = client_context(str(certs.ca_file), str(certs.client_file)) if tls else None
        cpu0 = cpu_seconds(args.server_pid)
        rate = client_rate(port, args.jobs, args.inflight, payload, context)
        return rate, (cpu_seconds(args.server_pid) - cpu0) / args.jobs * 1e6
    finally:
        worker.kill()
        worker.wait()


# --- handshakes --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connections(
    port: int, n: int, context: ssl.SSLContext | None, server_pid: int
) -> tuple[float, float]:
    """(client wall ms, server CPU ms) per connection, over ``n`` sequential ones."""
    cpu0 = cpu_seconds(server_pid)
    start = time.perf_counter()
    for _ in range(n):
        raw = socket.create_connection((HOST, port))
        # As trigear's client does: without it, Nagle holds the request behind the
        # handshake's last flight until the server's delayed ACK (about 40 ms).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = raw if context is None else context.wrap_socket(raw, server_hostname=HOST)
        sock.sendall(ECHO_REQ)
        got = b""
        while len(got) < len(ECHO_RES):
            got += sock.recv(64)
        assert got == ECHO_RES, got
        sock.close()
    wall = (time.perf_counter() - start) / n
    time.sleep(0.2)  # let the server finish closing the last ones
    cpu = (cpu_seconds(server_pid) - cpu0) / n
    return wall * 1000, cpu * 1000


# --- driver ------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--payload", type=int, default=64, help="bytes per job (echoed back)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating")
    ap.add_argument("--connections", type=int, default=300)
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ca", help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role == "worker":
        worker_main(a.port, a.inflight, a.ca, a.cert)
        return

    folder = tempfile.TemporaryDirectory(prefix="tls-bench-")
    certs = Certificates(Path(folder.name))
    tls_port, plain_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "trigear", "-p", str(tls_port),
         "--tls-cert", str(certs.server_file), "--tls-ca", str(certs.ca_file),
         "--plain-listen", f"{HOST}:{plain_port}", "--log-level", "WARNING"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    results: dict[str, object] = {}
    try:
        wait_port(plain_port, server)
        payload = b"x" * a.payload
        a.server_pid = server.pid
        rates: dict[str, list[float]] = {"plain": [], "tls": []}
        cpus: dict[str, list[float]] = {"plain": [], "tls": []}
        for r in range(a.rounds):
            for kind in ("plain", "tls"):
                port = tls_port if kind == "tls" else plain_port
                rate, cpu = one_round(port, a, certs, kind == "tls", payload)
                rates[kind].append(rate)
                cpus[kind].append(cpu)
                print(
                    f"round {r + 1} {kind:5s} {rate:9.0f} jobs/s  server CPU {cpu:6.1f} us/job",
                    flush=True,
                )
        plain, tls = statistics.median(rates["plain"]), statistics.median(rates["tls"])
        plain_cpu, tls_cpu = statistics.median(cpus["plain"]), statistics.median(cpus["tls"])
        ratio = tls / plain
        print(f"median  plain {plain:9.0f} jobs/s   tls {tls:9.0f} jobs/s   tls/plain {ratio:.2f}")
        print(
            f"median  server CPU per job: plain {plain_cpu:.1f} us, tls {tls_cpu:.1f} us,"
            f" tls/plain {tls_cpu / plain_cpu:.2f}"
        )
        results.update(
            plain_jobs_per_s=plain,
            tls_jobs_per_s=tls,
            ratio=ratio,
            plain_server_cpu_us_per_job=plain_cpu,
            tls_server_cpu_us_per_job=tls_cpu,
        )

        ca, cert = str(certs.ca_file), str(certs.client_file)
        kinds = {
            "plain": (plain_port, None),
            "tls1.3": (tls_port, client_context(ca, cert)),
            "tls1.2": (tls_port, client_context(ca, cert, ssl.TLSVersion.TLSv1_2)),
        }
        for name, (port, context) in kinds.items():
            connections(port, 20, context, server.pid)  # warm up
            wall, cpu = connections(port, a.connections, context, server.pid)
            print(f"connect+echo {name:7s} {wall:6.2f} ms per connection, server CPU {cpu:5.2f} ms")
            results[f"connect_{name}_ms"] = wall
            results[f"server_cpu_{name}_ms"] = cpu
    finally:
        server.terminate()
        server.wait()
        folder.cleanup()
    print(json.dumps({"jobs": a.jobs, "inflight": a.inflight, "payload": a.payload, **results}))


if __name__ == "__main__":
    main()
