"""Many functions: with F functions registered by one worker, the time of GRAB_JOB ->
NO_JOB, of GET_STATUS_UNIQUE, of that worker's disconnect (as another client sees it:
an ECHO sent right after, and the longest of the ECHOs in the half second after), and
the memory per registered function, trigear and gearmand side by side.

    python benchmarks/robustness/functions.py [F]     # 100000 by default
"""

from __future__ import annotations

import argparse
import time

from servers import (
    CAN_DO,
    GET_STATUS_UNIQUE,
    GRAB_JOB,
    JOB_CREATED,
    NO_JOB,
    STATUS_RES_UNIQUE,
    SUBMIT_JOB_BG,
    connect,
    echo_time,
    median,
    pkt,
    recv_packet,
    rss,
    server,
)


def timed(s: object, send: bytes, want: int, n: int = 200) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        s.sendall(send)  # type: ignore[attr-defined]
        ptype, _ = recv_packet(s)  # type: ignore[arg-type]
        assert ptype == want, ptype
        times.append(time.perf_counter() - start)
    return median(times)


def measure(name: str, f: int) -> dict[str, float]:
    extra = ["--max-functions-per-connection", str(f)] if name == "trigear" else []
    with server(name, extra) as (port, pid):
        probe = connect(port)
        echo_time(probe)
        before = rss(pid)
        worker = connect(port)
        worker.sendall(b"".join(pkt(CAN_DO, b"fn-%d" % i) for i in range(f)))
        echo_time(worker)  # every CAN_DO is handled
        after = rss(pid)
        client = connect(port)
        client.sendall(pkt(SUBMIT_JOB_BG, b"other", b"u-1", b""))
        assert recv_packet(client)[0] == JOB_CREATED
        grab = timed(worker, pkt(GRAB_JOB), NO_JOB)
        status = timed(client, pkt(GET_STATUS_UNIQUE, b"u-1"), STATUS_RES_UNIQUE)
        # The worker leaves; another client's ECHO, sent right after, waits for it.
        # Then ECHOs one after another for half a second: the longest is the longest
        # the server kept everyone else waiting while it let go of the functions.
        worker.close()
        stall = echo_time(probe)
        end = time.perf_counter() + 0.5
        longest = stall
        while time.perf_counter() < end:
            longest = max(longest, echo_time(probe))
        # One-off names: 100k functions, each with a job done and no worker left.
        return {
            "grab_ms": grab * 1000,
            "status_ms": status * 1000,
            "disconnect_ms": stall * 1000,
            "longest_ms": longest * 1000,
            "bytes_per_function": (after - before) / f,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "functions", nargs="?", type=int, default=100_000, help="functions (100000)"
    )
    f = parser.parse_args().functions
    print(f"{f} functions registered by one worker")
    print(
        f"{'server':10} {'GRAB->NO_JOB ms':>15} {'GET_STATUS_UNIQUE ms':>20}"
        f" {'disconnect stall ms':>19} {'longest ECHO ms':>15} {'bytes/function':>14}"
    )
    for name in ("trigear", "gearmand"):
        r = measure(name, f)
        print(
            f"{name:10} {r['grab_ms']:15.3f} {r['status_ms']:20.3f}"
            f" {r['disconnect_ms']:19.1f} {r['longest_ms']:15.1f}"
            f" {r['bytes_per_function']:14.0f}"
        )


if __name__ == "__main__":
    main()
