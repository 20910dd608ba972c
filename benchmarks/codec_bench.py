"""Codec throughput: SUBMIT_JOB packets (36-byte unique, 64-byte payload) decoded from
64 KiB chunks and encoded, on one core.  Not a test: run it and read the figures.

    python benchmarks/codec_bench.py [--packets N] [--repeat R]

Rows: the server's decoder; the unchecked encoders a server uses for what it built itself
(``encode_response``, and ``encode_request`` for the client side); batched
``encode_many``; and the public ``encode`` with validation (``check``), the call a client
library makes with user input.  Targets are the project's (docs/protocol.md).
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import TYPE_CHECKING

from trigear.protocol import (
    Decoder,
    Role,
    SubmitJob,
    encode,
    encode_many,
    encode_request,
    encode_response,
)

if TYPE_CHECKING:
    from collections.abc import Callable

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
        encode_response(e)
    return len(events) / (time.perf_counter() - t0)


def bench_encode_request(events: list[SubmitJob]) -> float:
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
    size = len(stream) // a.packets
    print(f"{a.packets} SUBMIT_JOB packets, {size} bytes each, best of {a.repeat}")
    rows: list[tuple[str, Callable[[], float], int]] = [
        ("decode (64 KiB chunks)", lambda: bench_decode(stream, a.packets), 1_000_000),
        ("encode_response (unchecked)", lambda: bench_encode(events), 2_000_000),
        ("encode_request (unchecked)", lambda: bench_encode_request(events), 2_000_000),
        ("encode_many (batches of 512)", lambda: bench_encode_many(events), 2_000_000),
        ("encode (validated, public call)", lambda: bench_encode_checked(events), 1_000_000),
    ]
    for name, fn, target in rows:
        best = max(fn() for _ in range(a.repeat))
        verdict = "met" if best >= target else "NOT met"
        tgt = f"   target {target:>11,}/s  {verdict}"
        print(f"{name:34} {best:>12,.0f} packets/s{tgt}")


if __name__ == "__main__":
    main()
