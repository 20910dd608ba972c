"""Codec throughput: SUBMIT_JOB packets (36-byte unique, 64-byte payload) decoded from
64 KiB chunks and encoded, on one core.  Not a test: run it and read the figures.

    python benchmarks/codec_bench.py [--packets N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time
import uuid

from trigear.protocol import Decoder, Role, SubmitJob, encode, encode_request, encode_many

CHUNK = 64 * 1024


def make_events(n: int) -> list[SubmitJob]:
    payload = bytes(range(64))
    return [SubmitJob(b"resize", str(uuid.UUID(int=i)).encode(), payload) for i in range(n)]


def bench_decode(stream: bytes, n: int) -> float:
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    dec = Decoder(Role.SERVER)
    got = 0
    t0 = time.perf_counter()
    for c in chunks:
        dec.receive_data(c)
        got += len(dec.receive_events())
    dt = time.perf_counter() - t0
    assert got == n, (got, n)
    return n / dt


def bench_encode(events: list[SubmitJob]) -> float:
    t0 = time.perf_counter()
    for e in events:
        encode_request(e)
    return len(events) / (time.perf_counter() - t0)


def bench_encode_checked(events: list[SubmitJob]) -> float:
    t0 = time.perf_counter()
    for e in events:
        encode(e, Role.CLIENT)
    return len(events) / (time.perf_counter() - t0)


def bench_encode_many(events: list[SubmitJob]) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(events), 512):
        encode_many(events[i : i + 512], Role.CLIENT)
    return len(events) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    events = make_events(a.packets)
    stream = b"".join(encode_request(e) for e in events)
    print(f"{a.packets} SUBMIT_JOB packets, {len(stream) // a.packets} bytes each, best of {a.repeat}")
    rows = [
        ("decode (64 KiB chunks)", lambda: bench_decode(stream, a.packets), 1_000_000),
        ("encode (unchecked, server path)", lambda: bench_encode(events), 2_000_000),
        ("encode_many (batches of 512)", lambda: bench_encode_many(events), 2_000_000),
        ("encode (validated, public call)", lambda: bench_encode_checked(events), None),
    ]
    for name, fn, target in rows:
        best = max(fn() for _ in range(a.repeat))
        tgt = f"   target {target:>11,}/s  {'met' if best >= target else 'NOT met'}" if target else ""
        print(f"{name:34} {best:>12,.0f} packets/s{tgt}")


if __name__ == "__main__":
    main()
