"""Idle connections: RSS per connection, and an ECHO and a foreground job round trip
with N idle connections open, trigear and gearmand side by side.

    python benchmarks/robustness/idle.py [N]      # N = 10000 by default
"""

from __future__ import annotations

import sys
import threading
import time

from servers import (
    CAN_DO,
    GRAB_JOB,
    JOB_ASSIGN,
    JOB_CREATED,
    SUBMIT_JOB,
    WORK_COMPLETE,
    connect,
    echo_time,
    median,
    pkt,
    recv_packet,
    rss,
    server,
)


def worker(port: int, stop: threading.Event) -> None:
    s = connect(port)
    s.sendall(pkt(CAN_DO, b"rt"))
    while not stop.is_set():
        s.sendall(pkt(GRAB_JOB))
        ptype, body = recv_packet(s)
        if ptype == JOB_ASSIGN:
            handle = body.split(b"\0", 1)[0]
            s.sendall(pkt(WORK_COMPLETE, handle, b"ok"))
        else:
            time.sleep(0.001)
    s.close()


def job_time(s: object, port: int) -> float:
    c = connect(port)
    start = time.perf_counter()
    c.sendall(pkt(SUBMIT_JOB, b"rt", b"", b"x"))
    ptype, _ = recv_packet(c)
    assert ptype == JOB_CREATED
    ptype, _ = recv_packet(c)
    assert ptype == WORK_COMPLETE, ptype
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed


def measure(name: str, n: int) -> dict[str, float]:
    with server(name) as (port, pid):
        time.sleep(0.5)
        probe = connect(port)
        echo_time(probe)
        before = rss(pid)
        idle = [connect(port) for _ in range(n)]
        for s in idle[:: max(1, n // 50)]:
            echo_time(s)  # each has been accepted and served
        time.sleep(1.0)
        after = rss(pid)
        echoes = [echo_time(probe) for _ in range(200)]
        stop = threading.Event()
        t = threading.Thread(target=worker, args=(port, stop))
        t.start()
        time.sleep(0.3)
        jobs = [job_time(probe, port) for _ in range(50)]
        stop.set()
        t.join()
        for s in idle:
            s.close()
        probe.close()
        return {
            "rss_per_conn": (after - before) / n,
            "echo_ms": median(echoes) * 1000,
            "job_ms": median(jobs) * 1000,
            "rss_mb": after / 2**20,
        }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    print(f"{n} idle connections")
    print(f"{'server':10} {'bytes/conn':>11} {'RSS MiB':>8} {'ECHO ms':>8} {'fg job ms':>10}")
    for name in ("trigear", "gearmand"):
        r = measure(name, n)
        print(
            f"{name:10} {r['rss_per_conn']:11.0f} {r['rss_mb']:8.1f}"
            f" {r['echo_ms']:8.3f} {r['job_ms']:10.3f}"
        )


if __name__ == "__main__":
    main()
