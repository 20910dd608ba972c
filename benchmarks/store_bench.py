"""Store throughput: commits/s and jobs/s for batches of 1, 10, 100 and 1000 jobs.

Each commit adds a batch of jobs (36-byte unique, 64-byte payload) and removes the batch
committed before it, as a server does when jobs are submitted and finish at the same
rate.  One commit is what the server's store writer does per dispatcher pass (group
commit), so "batch 1" is a server with one submitter and "batch 1000" a loaded one.
Not a test: run it and read the figures.

    python benchmarks/store_bench.py [--seconds S] [--dir DIR] [--pg URL | --no-pg]

SQLite runs in a temporary directory under DIR (default: the system temp dir; point it
at the disk the server would use, fsync cost depends on it), with synchronous FULL (the
default) and NORMAL.  PostgreSQL runs in a temporary schema of the database at URL
(default postgresql://postgres@127.0.0.1:5432/test), dropped afterwards.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
import uuid
from typing import TYPE_CHECKING

import trio

from trigear.store import PostgresStore, SqliteStore, Store, StoredJob

if TYPE_CHECKING:
    from collections.abc import Callable

BATCHES = (1, 10, 100, 1000)
PAYLOAD = bytes(range(64))


async def bench(store: Store, batch: int, seconds: float) -> tuple[float, float]:
    await store.load()
    uniques = [str(uuid.UUID(int=i)).encode() for i in range(batch)]
    n = 0
    previous: list[bytes] = []
    commits = 0
    t0 = time.perf_counter()
    while True:
        # Fresh handles every commit, as a server issues them (S17).
        jobs = [
            StoredJob(b"H:bench:%d" % (n + i), b"resize", u, PAYLOAD) for i, u in enumerate(uniques)
        ]
        n += batch
        await store.commit(jobs, previous, [], n)
        previous = [j.handle for j in jobs]
        commits += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and commits >= 3:
            break
    return commits / elapsed, commits * batch / elapsed


async def run(name: str, make: Callable[[], Store], seconds: float) -> None:
    for batch in BATCHES:
        store = make()
        try:
            per_commit, per_job = await bench(store, batch, seconds)
        finally:
            await store.aclose()
        print(
            f"{name:<18} batch {batch:>5}: {per_commit:>9,.0f} commits/s {per_job:>11,.0f} jobs/s"
        )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="trigear-bench-") as tmp:
        for sync in ("FULL", "NORMAL"):
            make = functools.partial(SqliteStore, f"{tmp}/{sync}.db", synchronous=sync)
            await run(f"sqlite {sync}", make, args.seconds)
    if args.no_pg:
        return
    import psycopg

    schema = f"trigear_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(args.pg, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as exc:
        print(f"postgresql: skipped, cannot connect to {args.pg}: {exc}")
        return
    sep = "&" if "?" in args.pg else "?"
    url = f"{args.pg}{sep}options=-csearch_path%3D{schema}"
    try:
        await run("postgresql", lambda: PostgresStore(url), args.seconds)
    finally:
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per store and batch size")
    parser.add_argument("--dir", default=None, help="where the SQLite files go")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    trio.run(main, parser.parse_args())
