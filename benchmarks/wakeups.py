"""Wake-ups per foreground job: Trio task steps, epoll waits and system calls.

    python benchmarks/wakeups.py [--jobs 20000] [--strace]

Runs a trigear server (memory store) in a child process with a Trio instrument that
counts task steps (each one a task switch) by task and the scheduler's epoll waits, puts
the fg load of bench-vs-gearmand on it (``gearload -m fg -c 2 -w 2 -b 50``, built from
../shared/tools/gearload.c), stops it with the admin ``shutdown`` command and prints the
counts divided by the number of jobs.  With ``--strace`` the server also runs under
``strace -c -f`` and the system calls per job are printed (strace slows the server
down: the counts hold, the speed does not).  docs/performance.md quotes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

from queued_memory import free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
GEARLOAD_C = os.path.join(HERE, "..", "..", "shared", "tools", "gearload.c")
FG = ["-m", "fg", "-c", "2", "-w", "2", "-b", "50"]
SYSCALLS = ("read", "write", "epoll_wait", "epoll_ctl", "recvfrom", "sendto")


def serve(port: int, out: str) -> None:
    """The child: serve until the admin ``shutdown``, then write the counts to ``out``."""
    import trio

    from trigear.server import Server, ServerConfig

    class Count(trio.abc.Instrument):
        def __init__(self) -> None:
            self.steps: Counter[str] = Counter()
            self.io_waits = 0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.steps[task.name.rsplit(".", 1)[-1]] += 1

        def before_io_wait(self, timeout: float) -> None:
            self.io_waits += 1

    count = Count()

    async def main() -> None:
        await Server(ServerConfig()).serve_tcp(port, ["127.0.0.1"])

    trio.run(main, instruments=[count])
    with open(out, "w") as f:
        json.dump({"steps": count.steps, "io_waits": count.io_waits}, f)


def strace_counts(path: str) -> dict[str, int]:
    """Calls per system call from ``strace -c``'s table."""
    calls: dict[str, int] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] in SYSCALLS and parts[3].isdigit():
                calls[parts[-1]] = int(parts[3])
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--strace", action="store_true", help="count system calls too")
    ap.add_argument("--gearload-c", default=GEARLOAD_C)
    ap.add_argument("--serve", nargs=2, metavar=("PORT", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(int(a.serve[0]), a.serve[1])
        return
    tmp = tempfile.mkdtemp()
    try:
        exe = os.path.join(tmp, "gearload")
        subprocess.run(["cc", "-O2", "-o", exe, a.gearload_c, "-lgearman"], check=True)
        port, out = free_port(), os.path.join(tmp, "counts.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", str(port), out]
        trace = os.path.join(tmp, "strace.txt")
        if a.strace:
            cmd = ["strace", "-c", "-f", "-o", trace, *cmd]
        proc = subprocess.Popen(cmd)
        try:
            wait_port(port, proc)
            t0 = time.time()
            subprocess.run(
                [exe, "-p", str(port), "-n", str(a.jobs), *FG], check=True, capture_output=True
            )
            elapsed = time.time() - t0
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"shutdown\n")
                s.recv(100)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        with open(out) as f:
            counts = json.load(f)
        n = a.jobs
        steps = counts["steps"]
        print(f"trigear {_build()}, {n} fg jobs in {elapsed:.1f} s ({n / elapsed:.0f} jobs/s)")
        print(f"task steps per job   {sum(steps.values()) / n:6.2f}")
        for name, k in sorted(steps.items(), key=lambda kv: -kv[1])[:6]:
            print(f"  {name:18} {k / n:6.2f}")
        print(f"epoll waits per job  {counts['io_waits'] / n:6.2f}")
        if a.strace:
            for name, k in sorted(strace_counts(trace).items()):
                print(f"{name + ' calls per job':20} {k / n:6.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build() -> str:
    import trigear

    # getattr: the script also measures older trees (PYTHONPATH) that cannot tell.
    compiled = getattr(trigear, "compiled", None)
    return {True: "compiled", False: "pure Python", None: "build unknown"}[compiled]


if __name__ == "__main__":
    main()
