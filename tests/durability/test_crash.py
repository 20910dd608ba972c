"""``kill -9`` of a real server under load loses no acknowledged background job (S19).

A real ``python -m trigear --store ...`` process serves client threads that submit
background jobs in pipelined windows (recording every payload that got JOB_CREATED) and
worker threads that run them (recording each run *before* sending WORK_COMPLETE, so
at-least-once is observable).  The server is killed with SIGKILL at random moments --
sometimes before it has even opened its port, sometimes right after replaying -- and
restarted on the same store, over and over.  At the end the server drains everything,
shuts down gracefully, and the test checks:

* **nothing lost**: every payload that got JOB_CREATED ran at least once;
* **handles** (S17): every run of a payload had the handle its JOB_CREATED named, and no
  two payloads ever shared a handle, across all the restarts;
* **nothing resurrected**: a job whose removal is known to be committed never runs again.
  Gearman has no acknowledgement for WORK_COMPLETE, so "known committed" is derived: a
  run's completion is *confirmed* when the worker got the server's reply to its next
  request (so the server had processed WORK_COMPLETE and queued the removal); the
  removal is *known committed* when, on the same server process, some client's
  background submit *sent after* that confirmation got JOB_CREATED (commits are applied
  one at a time, in order, so the commit acknowledging that submit includes the
  removal or follows it).  A later run of such a job is a resurrection;
* **clean end**: after the graceful shutdown the store is empty.

What may legitimately run twice, and is counted, not failed: a job in flight at a kill
(assigned, not completed), a job whose WORK_COMPLETE the killed server never processed,
and a job completed and confirmed whose removal was not yet known committed when the
server died.  Submits whose JOB_CREATED never arrived (the server died first) may or may
not have been stored; they are counted, and if they run, that is fine.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import trio

from trigear.protocol import NEED_DATA, Decoder, Role, encode
from trigear.protocol.packets import (
    CanDo,
    Event,
    GrabJobUniq,
    JobAssignUniq,
    JobCreated,
    NoJob,
    PreSleep,
    SubmitJobBg,
    SubmitJobHighBg,
    SubmitJobLowBg,
    WorkComplete,
)
from trigear.store import PostgresStore, SqliteStore, Store

from ..peers import free_port

if TYPE_CHECKING:
    from pathlib import Path

# Each store's cycles take about 30 s on a quiet machine: well over the default limit.
pytestmark = [pytest.mark.crash, pytest.mark.timeout(600)]

FUNC = b"crash"
CYCLES = int(os.environ.get("TRIGEAR_CRASH_CYCLES", "30"))
CLIENTS = 3
WORKERS = 3
WINDOW = 10  # pipelined submits per round trip


class Gone(Exception):
    """The connection to the server broke."""


class Conn:
    """A blocking Gearman connection for the load threads."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = Decoder(Role.CLIENT)

    def send(self, *events: Event) -> None:
        try:
            self.sock.sendall(b"".join(encode(e, Role.CLIENT) for e in events))
        except OSError as exc:
            raise Gone from exc

    def recv(self) -> Event:
        while True:
            ev = self.decoder.next_event()
            if ev is not NEED_DATA:
                return ev  # type: ignore[return-value]
            try:
                data = self.sock.recv(65536)
            except OSError as exc:  # reset, or 2 s of silence: give up on it
                raise Gone from exc
            if not data:
                raise Gone
            self.decoder.receive_data(data)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Run:
    payload: bytes
    handle: bytes
    gen: int
    start: float
    #: When the worker got the reply to its next request after WORK_COMPLETE.
    confirmed: float | None = None


@dataclass
class Ack:
    payload: bytes
    handle: bytes
    gen: int
    sent: float
    acked: float


@dataclass
class Book:
    """What the load threads saw.  Appends only; list.append is atomic."""

    gen: int = 0
    stop_clients: threading.Event = field(default_factory=threading.Event)
    stop_workers: threading.Event = field(default_factory=threading.Event)
    acks: list[Ack] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    unacknowledged: list[bytes] = field(default_factory=list)
    errors: list[bytes] = field(default_factory=list)
    crashes: list[BaseException] = field(default_factory=list)

    def connect(self, port: int, stop: threading.Event) -> tuple[Conn, int] | None:
        """Connect to the live server; return the connection and that server's number."""
        while not stop.is_set():
            gen = self.gen
            try:
                conn = Conn(port)
            except OSError:
                time.sleep(0.02)
                continue
            if self.gen == gen:
                return conn, gen
            conn.close()
        return None


def client(book: Book, port: int, me: int) -> None:
    kinds = (SubmitJobBg, SubmitJobHighBg, SubmitJobLowBg)
    n = 0
    try:
        while (got := book.connect(port, book.stop_clients)) is not None:
            conn, gen = got
            try:
                while not book.stop_clients.is_set():
                    payloads = [b"c%d-%d" % (me, n + i) for i in range(WINDOW)]
                    n += WINDOW
                    sent = time.monotonic()
                    conn.send(*(kinds[hash(p) % 3](FUNC, b"", p) for p in payloads))
                    for i, p in enumerate(payloads):
                        try:
                            ev = conn.recv()
                        except Gone:
                            book.unacknowledged.extend(payloads[i:])
                            raise
                        if isinstance(ev, JobCreated):
                            book.acks.append(Ack(p, ev.handle, gen, sent, time.monotonic()))
                        else:
                            book.errors.append(repr(ev).encode())
                    time.sleep(0.01)
            except Gone:
                pass
            finally:
                conn.close()
    except BaseException as exc:  # pragma: no cover - reported by the test
        book.crashes.append(exc)


def worker(book: Book, port: int) -> None:
    try:
        while (got := book.connect(port, book.stop_workers)) is not None:
            conn, gen = got
            last: Run | None = None
            try:
                conn.send(CanDo(FUNC))
                while not book.stop_workers.is_set():
                    conn.send(GrabJobUniq())
                    while True:
                        ev = conn.recv()
                        if isinstance(ev, JobAssignUniq | NoJob):
                            break  # (a NOOP from an earlier sleep is skipped)
                    now = time.monotonic()
                    if last is not None:
                        last.confirmed = now
                        last = None
                    if isinstance(ev, NoJob):
                        conn.send(PreSleep())
                        conn.sock.settimeout(0.2)
                        try:
                            conn.recv()  # NOOP, or nothing for 0.2 s
                        except Gone:
                            if book.stop_workers.is_set():
                                break
                        conn.sock.settimeout(2)
                        continue
                    # Record the run before the result: a run recorded is a run done.
                    run = Run(ev.data, ev.handle, gen, now)
                    book.runs.append(run)
                    conn.send(WorkComplete(ev.handle, b""))
                    last = run
            except Gone:
                pass
            finally:
                conn.close()
    except BaseException as exc:  # pragma: no cover - reported by the test
        book.crashes.append(exc)


def status(port: int) -> tuple[int, int]:
    """(queued + running, running) for FUNC, from the admin ``status``."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"status\n")
        buf = b""
        while not (buf.startswith(b".\n") or b"\n.\n" in buf):
            data = s.recv(65536)
            if not data:
                raise AssertionError("server closed the admin connection")
            buf += data
    for line in buf.splitlines():
        parts = line.split(b"\t")
        if parts[0] == FUNC:
            return int(parts[1]), int(parts[2])
    return 0, 0


class ServerProcess:
    def __init__(self, port: int, store: str, log: Path) -> None:
        self.port, self.store, self.log = port, store, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "trigear", "-p", str(self.port)),
                    *("--store", self.store, "--log-level", "WARNING"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def wait_ready(self, limit: float = 20) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"server not listening after {limit} s: {self.tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            if self.proc.returncode not in (-signal.SIGKILL, 0):
                raise AssertionError(f"server died on its own: {self.tail()}")
        self.proc = None

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def check(book: Book) -> dict[str, int]:
    """The verdict; returns the figures for the report."""
    runs_of: dict[bytes, list[Run]] = defaultdict(list)
    for r in book.runs:
        runs_of[r.payload].append(r)
    acked = {a.payload: a for a in book.acks}
    assert len(acked) == len(book.acks), "a payload was acknowledged twice"

    lost = [p for p in acked if p not in runs_of]
    assert not lost, f"{len(lost)} acknowledged jobs never ran, e.g. {lost[:5]}"

    # S17: a payload keeps its handle through every restart; no handle is reused.
    owner: dict[bytes, bytes] = {}
    for p, a in acked.items():
        assert {r.handle for r in runs_of[p]} == {a.handle}, (p, a, runs_of[p])
    for p, rs in runs_of.items():
        for r in rs:
            assert owner.setdefault(r.handle, p) == p, f"handle {r.handle!r} reused"
    for a in book.acks:
        assert owner.setdefault(a.handle, a.payload) == a.payload

    # When, on each server, a commit is known to have happened after time t: the first
    # JOB_CREATED for a submit sent after t.
    sent_by_gen: dict[int, list[float]] = defaultdict(list)
    acked_by_gen: dict[int, list[float]] = defaultdict(list)
    for a in sorted(book.acks, key=lambda a: a.sent):
        sent_by_gen[a.gen].append(a.sent)
        acked_by_gen[a.gen].append(a.acked)

    def committed_after(gen: int, t: float) -> bool:
        i = bisect.bisect_right(sent_by_gen[gen], t)
        return i < len(sent_by_gen[gen])

    resurrected: list[tuple[bytes, Run, Run]] = []
    unconfirmed = uncommitted = 0
    for p, rs in runs_of.items():
        rs.sort(key=lambda r: r.start)
        for first, again in itertools.pairwise(rs):
            assert again.gen > first.gen, f"{p!r} ran twice on one server: {first}, {again}"
        for i, r in enumerate(rs[:-1]):
            if r.confirmed is None:
                unconfirmed += 1  # WORK_COMPLETE not known to have been processed
            elif committed_after(r.gen, r.confirmed):
                resurrected.append((p, r, rs[i + 1]))
            else:
                uncommitted += 1  # processed, removal not known committed
    assert not resurrected, (
        f"{len(resurrected)} jobs ran again after their removal was committed: {resurrected[:3]}"
    )
    runs_total = sum(len(rs) for rs in runs_of.values())
    return {
        "acknowledged": len(acked),
        "unacknowledged submits": len(book.unacknowledged),
        "unacknowledged that ran": sum(1 for p in book.unacknowledged if p in runs_of),
        "runs": runs_total,
        "jobs run more than once": sum(1 for rs in runs_of.values() if len(rs) > 1),
        "extra runs": runs_total - len(runs_of),
        "  of which after a run in flight or unconfirmed at the kill": unconfirmed,
        "  of which after a confirmed completion not yet committed": uncommitted,
    }


def crash_cycles(store_url: str, tmp_path: Path) -> dict[str, int]:
    rng = random.Random(os.environ.get("TRIGEAR_CRASH_SEED") or time.time_ns())
    port = free_port()
    server = ServerProcess(port, store_url, tmp_path / "server.log")
    book = Book()
    threads = [
        threading.Thread(target=client, args=(book, port, i), daemon=True) for i in range(CLIENTS)
    ] + [threading.Thread(target=worker, args=(book, port), daemon=True) for _ in range(WORKERS)]
    early = 0
    try:
        for t in threads:
            t.start()
        for cycle in range(CYCLES):
            book.gen = cycle + 1
            server.start()
            if cycle % 7 == 3:
                time.sleep(rng.uniform(0.0, 0.4))  # maybe before it even listens
                early += 1
            else:
                server.wait_ready()
                time.sleep(rng.uniform(0.05, 1.2))
            server.kill()
        book.gen = CYCLES + 1
        server.start()
        server.wait_ready()
        time.sleep(0.5)
        book.stop_clients.set()
        for t in threads[:CLIENTS]:
            t.join(10)
        # Drain: everything acknowledged has run, nothing is queued or running.
        deadline = time.monotonic() + 60
        while True:
            done = {r.payload for r in book.runs}
            if all(a.payload in done for a in book.acks) and status(port) == (0, 0):
                break
            if time.monotonic() > deadline:
                missing = [a for a in book.acks if a.payload not in done]
                raise AssertionError(f"not drained: {status(port)}, {len(missing)} never ran")
            time.sleep(0.1)
        time.sleep(0.3)  # let the workers' last WORK_COMPLETE be read
        assert server.terminate() == 0, server.tail()
    finally:
        book.stop_clients.set()
        book.stop_workers.set()
        server.kill()
        for t in threads:
            t.join(10)
    assert not book.crashes, book.crashes
    assert not book.errors, book.errors[:5]
    figures = check(book)
    figures = {"kills": CYCLES, "kills within 0.4 s of start": early, **figures}
    return figures


def report(kind: str, figures: dict[str, int], seconds: float) -> None:
    lines = [f"crash test ({kind}), {seconds:.0f} s:"] + [f"  {k}: {v}" for k, v in figures.items()]
    print("\n".join(lines))
    out = os.environ.get("TRIGEAR_CRASH_REPORT")
    if out:
        with open(out, "a") as f:
            f.write("\n".join(lines) + "\n")


def left_in(store: Store) -> int:
    async def load() -> int:
        try:
            return len((await store.load()).jobs)
        finally:
            await store.aclose()

    return trio.run(load)


def test_kill_9_under_load_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    t0 = time.monotonic()
    figures = crash_cycles(f"sqlite:{path}", tmp_path)
    report("sqlite", figures, time.monotonic() - t0)
    assert left_in(SqliteStore(path)) == 0
    assert figures["acknowledged"] > 1000


@pytest.mark.postgres
def test_kill_9_under_load_postgres(tmp_path: Path, pg_url: str) -> None:
    t0 = time.monotonic()
    figures = crash_cycles(pg_url, tmp_path)
    report("postgresql", figures, time.monotonic() - t0)
    assert left_in(PostgresStore(pg_url)) == 0
    assert figures["acknowledged"] > 1000
