"""Slowloris: N connections each send the start of a packet header and then one byte
every few seconds, while normal clients run ECHO round trips.  Reports the normal
clients' latency, when the trickling connections were closed, and the server's memory,
trigear (default flags: a 30 s deadline per packet) and gearmand side by side.

    python benchmarks/robustness/slowloris.py [N] [SECONDS] [TRICKLE_INTERVAL]
                                              # 500, 60, 5 by default
"""

from __future__ import annotations

import selectors
import sys
import threading
import time

from servers import connect, echo_time, median, pct, rss, server


def trickle(port: int, n: int, seconds: float, every: float, closed_at: list[float]) -> None:
    start = time.monotonic()
    socks = [connect(port) for _ in range(n)]
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    # A header that promises a 1000-byte ECHO_REQ body, sent a byte at a time.
    payload = b"\0REQ\0\0\0\x10\0\0\x03\xe8" + b"x" * 1000
    pos = 0
    live = set(range(n))

    def gone(i: int) -> None:
        live.discard(i)
        sel.unregister(socks[i])
        closed_at.append(time.monotonic() - start)

    while time.monotonic() - start < seconds and live:
        for i in list(live):
            try:
                socks[i].send(payload[pos : pos + 1])
            except OSError:
                gone(i)
        pos += 1
        deadline = time.monotonic() + every
        while live and (left := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                try:
                    if key.fileobj.recv(4096):  # type: ignore[union-attr]
                        continue
                except OSError:
                    pass
                gone(key.data)
    for s in socks:
        s.close()


def measure(name: str, n: int, seconds: float, every: float) -> dict[str, float]:
    with server(name) as (port, pid):
        before = rss(pid)
        closed_at: list[float] = []
        t = threading.Thread(target=trickle, args=(port, n, seconds, every, closed_at))
        t.start()
        time.sleep(1)
        peak = rss(pid)
        probe = connect(port)
        lat: list[float] = []
        start = time.monotonic()
        while t.is_alive():
            lat.append(echo_time(probe))
            peak = max(peak, rss(pid)) if len(lat) % 200 == 0 else peak
            time.sleep(0.01)
        probe.close()
        t.join()
        return {
            "p50": median(lat) * 1000,
            "p99": pct(lat, 0.99) * 1000,
            "closed": len(closed_at),
            "all_closed_s": max(closed_at) if len(closed_at) == n else float("nan"),
            "rss_mb": peak / 2**20,
            "rss_growth_kb": (peak - before) / 1024,
            "ran_s": time.monotonic() - start,
        }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60
    every = float(sys.argv[3]) if len(sys.argv) > 3 else 5
    print(f"{n} connections trickling a byte every {every:g} s for up to {seconds:g} s")
    print(
        f"{'server':10} {'ECHO p50 ms':>11} {'p99 ms':>8} {'closed':>7}"
        f" {'all closed at s':>15} {'peak RSS MiB':>12}"
    )
    for name in ("trigear", "gearmand"):
        r = measure(name, n, seconds, every)
        print(
            f"{name:10} {r['p50']:11.3f} {r['p99']:8.3f} {r['closed']:7.0f}"
            f" {r['all_closed_s']:15.1f} {r['rss_mb']:12.1f}"
        )


if __name__ == "__main__":
    main()
