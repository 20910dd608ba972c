"""Memory per queued background job: RSS of a server holding N queued 64-byte jobs.

    python benchmarks/queued_memory.py [--jobs 1000000] [--gearmand PATH]

Starts trigear (memory store) and gearmand (Debian's by default) side by side, fills
each with N background jobs using the neutral libgearman load generator
(../shared/tools/gearload.c, built here with cc; no workers, so every job stays queued),
and prints the growth of each server's resident set size divided by N.  Needs
gearman-job-server, libgearman-dev and a C compiler.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GEARLOAD_C = os.path.join(HERE, "..", "..", "shared", "tools", "gearload.c")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    end = time.time() + 20
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on port {port}")


def build_gearload(source: str, directory: str) -> str:
    """Build the load generator from ``source`` into ``directory``; its path."""
    exe = os.path.join(directory, "gearload")
    subprocess.run(["cc", "-O2", "-o", exe, source, "-lgearman"], check=True)
    return exe


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure(name: str, cmd: list[str], port: int, gearload: str, jobs: int) -> float:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        t0 = time.time()
        subprocess.run(
            [
                gearload,
                "-p",
                str(port),
                "-m",
                "bg",
                "-c",
                "2",
                "-w",
                "0",
                "-b",
                "200",
                "-n",
                str(jobs),
                "-s",
                "64",
            ],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        fill = time.time() - t0
        time.sleep(1)
        after = rss_kib(proc.pid)
        per_job = (after - before) * 1024 / jobs
        print(
            f"{name:9} RSS {before / 1024:7.1f} MiB -> {after / 1024:7.1f} MiB"
            f"  {per_job:6.0f} bytes per queued job  (filled in {fill:.1f} s)"
        )
        return per_job
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--gearmand", default="/usr/sbin/gearmand")
    ap.add_argument("--gearload-c", default=GEARLOAD_C)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    try:
        exe = build_gearload(a.gearload_c, tmp)
        tport, gport = free_port(), free_port()
        t = measure(
            "trigear", [sys.executable, "-m", "trigear", "-p", str(tport)], tport, exe, a.jobs
        )
        g = measure(
            "gearmand",
            [
                a.gearmand,
                "-p",
                str(gport),
                "-L",
                "127.0.0.1",
                "-l",
                os.path.join(tmp, "g.log"),
                "-P",
                os.path.join(tmp, "g.pid"),
            ],
            gport,
            exe,
            a.jobs,
        )
        print(f"trigear/gearmand bytes per queued job: {t / g:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
