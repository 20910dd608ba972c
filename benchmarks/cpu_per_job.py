"""CPU time per job: how much processor each server spends on one job of a workload.

    python benchmarks/cpu_per_job.py [--jobs 40000] [--reps 3] [--workloads bg,fg,lat]

Runs trigear (this Python, memory store) and gearmand (Debian's by default) in turn
under the workloads of bench-vs-gearmand (the neutral libgearman load generator,
../shared/tools/gearload.c, built here with cc), and prints the user and system CPU
time each server process used, from /proc, divided by the number of jobs, with the
rate of the run.  Throughput on a shared two-core machine moves from run to run;
CPU per job moves much less, and it tells a server that is busy all the time (its CPU
per job times its rate is near one core) from one that waits on its peers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from queued_memory import GEARLOAD_C, build_gearload, free_port, wait_port

WORKLOADS = {
    "bg": ["-m", "bg", "-c", "2", "-w", "2", "-b", "200"],
    "fg": ["-m", "fg", "-c", "2", "-w", "2", "-b", "50"],
    "lat": ["-m", "lat"],
}
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` and its threads so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def run(cmd: list[str], port: int, gearload: str, args: list[str], jobs: int) -> tuple[float, ...]:
    """One run: (user us/job, system us/job, jobs/s)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc)
        user0, sys0 = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        subprocess.run(
            [gearload, "-p", str(port), "-n", str(jobs), *args],
            check=True,
            capture_output=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - t0
        user1, sys1 = cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return (user1 - user0) / jobs * 1e6, (sys1 - sys0) / jobs * 1e6, jobs / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=40_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workloads", default="bg,fg,lat")
    ap.add_argument("--gearmand", default="/usr/sbin/gearmand")
    ap.add_argument("--gearload-c", default=GEARLOAD_C)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    try:
        exe = build_gearload(a.gearload_c, tmp)
        head = ("workload", "server", "CPU us/job", "user", "sys", "jobs/s")
        print("{:8} {:9} {:>10} {:>6} {:>6} {:>8}".format(*head))
        for workload in a.workloads.split(","):
            args = WORKLOADS[workload]
            # The lat workload runs a tenth of the jobs, as bench-vs-gearmand does.
            jobs = max(a.jobs // 10, 500) if workload == "lat" else a.jobs
            results: dict[str, list[tuple[float, ...]]] = {"trigear": [], "gearmand": []}
            for _ in range(a.reps):
                port = free_port()
                trigear = [sys.executable, "-m", "trigear", "-p", str(port)]
                results["trigear"].append(run(trigear, port, exe, args, jobs))
                port = free_port()
                log = os.path.join(tmp, "g.log")
                gearmand = [a.gearmand, "-p", str(port), "-L", "127.0.0.1", "-l", log]
                results["gearmand"].append(run(gearmand, port, exe, args, jobs))
            for name, rows in results.items():
                user = statistics.median(r[0] for r in rows)
                system = statistics.median(r[1] for r in rows)
                rate = statistics.median(r[2] for r in rows)
                print(
                    f"{workload:8} {name:9} {user + system:10.1f} {user:6.1f} {system:6.1f}"
                    f" {rate:8.0f}"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
