"""Every benchmark docs/performance.md relies on, in one run, summed up in one table.

    python benchmarks/perf_report.py [--rounds 5] [--jobs 30000] [--memory-jobs 300000]
        [--tools ../shared/tools] [--against 'CMD {port}']

Runs, with this interpreter's trigear (compiled or not: the table says which):

* ``bench-vs-gearmand`` (bg, fg, lat against /usr/sbin/gearmand, medians of the rounds;
  with ``--against`` against that server command instead);
* ``codec_bench.py`` (decode and encode rates);
* ``queued_memory.py`` (bytes per queued job against gearmand's);
* ``client_worker_bench.py`` (the client/worker pairs against the C pair);
* ``wakeups.py`` (task steps and epoll waits per foreground job).

The ``perf`` nox session runs it against the compiled package.  Needs what each of them
needs: gearman-job-server, libgearman-dev and a C compiler.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "shared", "tools")


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    print(out, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=30_000)
    ap.add_argument("--memory-jobs", type=int, default=300_000)
    ap.add_argument("--tools", default=TOOLS, help="where bench-vs-gearmand and gearload.c are")
    ap.add_argument("--against", help="a server command with {port} instead of gearmand")
    a = ap.parse_args()
    py = sys.executable
    gearload_c = os.path.join(a.tools, "gearload.c")
    rows: list[tuple[str, str]] = []

    import trigear

    rows.append(("trigear", "compiled (mypyc)" if trigear.compiled else "pure Python"))

    bench = [os.path.join(a.tools, "bench-vs-gearmand"), "--rounds", str(a.rounds)]
    bench += ["--jobs", str(a.jobs)]
    if a.against:
        bench += ["--against", a.against]
    out = run([*bench, "--", py, "-m", "trigear", "-p", "{port}"])
    against = "the --against server" if a.against else "gearmand"
    for m in re.finditer(r"^(bg|fg|lat)\s.*ratio\s+([\d.]+)", out, re.M):
        rows.append((f"{m[1]} throughput / {against} (median of {a.rounds})", f"{m[2]}x"))

    out = run([py, os.path.join(HERE, "codec_bench.py")])
    for m in re.finditer(r"^(decode|encode_response)\S* .*?([\d,]+) packets/s", out, re.M):
        rows.append((f"codec {m[1]}", f"{m[2]} packets/s"))

    out = run(
        [
            py,
            os.path.join(HERE, "queued_memory.py"),
            "--jobs",
            str(a.memory_jobs),
            "--gearload-c",
            gearload_c,
        ]
    )
    for m in re.finditer(r"^(trigear|gearmand)\s.*?(\d+) bytes per queued job", out, re.M):
        rows.append((f"bytes per queued job, {m[1]}", m[2]))
    m = re.search(r"bytes per queued job: ([\d.]+)", out)
    if m:
        rows.append(("memory per queued job / gearmand", f"{m[1]}x"))

    pair_bench = os.path.join(HERE, "client_worker_bench.py")
    out = run([py, pair_bench, "--skip-gear", "--gearload-c", gearload_c])
    pairs = json.loads(out.strip().splitlines()[-1])
    for name in ("C", "trigear", "trigear-1"):
        if name in pairs:
            ratio = f" ({pairs[name] / pairs['C']:.2f}x C)" if "C" in pairs else ""
            rows.append((f"client/worker pair {name}", f"{pairs[name]:.0f} jobs/s{ratio}"))

    out = run([py, os.path.join(HERE, "wakeups.py"), "--gearload-c", gearload_c])
    for m in re.finditer(r"^(task steps|epoll waits) per job\s+([\d.]+)", out, re.M):
        rows.append((f"{m[1]} per fg job", m[2]))

    width = max(len(k) for k, _ in rows)
    print("\n" + "-" * (width + 30))
    for k, v in rows:
        print(f"{k:{width}}  {v}")


if __name__ == "__main__":
    main()
