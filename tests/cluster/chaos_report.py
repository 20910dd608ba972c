"""What the chaos test's records say: every criterion, computed from the peers' lines.

Inputs: the clients' ACK/ERR lines, the workers' RUN/DONE lines, and the test's own
disruptions (kill -9, SIGSTOP/SIGCONT, PostgreSQL restart) with their times.

* **lost**: an acknowledged payload that never ran.
* **handle collisions**: two payloads run or acknowledged under one handle.
* **duplicate runs**: every run of a payload after its first.  Each must be explained by
  a disruption: the server that handed out the earlier run (or, for a run under another
  handle than the acknowledged one, the server that handle names) was killed, frozen,
  or PostgreSQL restarted, between the earlier run's start and the later run's start.
  The causes are counted; an unexplained duplicate is a failure.
* **runs after a committed removal**: a later run that starts after the earlier run was
  done, when nothing disturbed the earlier run's server in between (so its removal was
  committed).  It is counted among the unexplained duplicates and must be 0.
* **takeover**: from a kill -9 (not followed by a restart at once) or a SIGSTOP to the
  first run of one of the victim's jobs handed out by another server.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class Disruption:
    kind: str  # "kill", "kill-restart", "freeze", "pg-restart"
    server: str | None
    start: float
    end: float  # restart, SIGCONT, or PostgreSQL back


@dataclass
class Run:
    payload: str
    handle: str
    server: str
    start: float
    done: float | None = None


@dataclass
class Report:
    acked: int = 0
    unanswered: int = 0
    errors: list[tuple[str, float, str]] = field(default_factory=list)
    runs: int = 0
    lost: list[str] = field(default_factory=list)
    collisions: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unexplained: list[str] = field(default_factory=list)
    after_removal: list[str] = field(default_factory=list)
    takeovers: list[float] = field(default_factory=list)
    takeover_misses: int = 0
    freeze_takeovers: list[float] = field(default_factory=list)

    @property
    def duplicate_runs(self) -> int:
        return sum(self.duplicates.values()) + len(self.unexplained)

    def p95(self) -> float:
        if not self.takeovers:
            return math.nan
        ordered = sorted(self.takeovers)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    def lines(self) -> list[str]:
        dup = self.duplicate_runs
        return [
            f"acknowledged background jobs: {self.acked}",
            f"jobs also stored under another handle (submit unanswered, failed over):"
            f" {self.unanswered}",
            f"submit errors seen by the application: {len(self.errors)}",
            f"runs: {self.runs}",
            f"lost: {len(self.lost)}",
            f"handle collisions: {len(self.collisions)}",
            f"runs after a committed removal: {len(self.after_removal)}",
            f"duplicate runs: {dup} ({100 * dup / max(self.acked, 1):.2f} %)"
            f" by cause {dict(sorted(self.duplicates.items()))},"
            f" unexplained {len(self.unexplained)}",
            f"takeover after kill -9 (n={len(self.takeovers)}, no victim job"
            f" {self.takeover_misses}): p50 {_pct(self.takeovers, 0.5):.2f} s,"
            f" p95 {self.p95():.2f} s, max {max(self.takeovers, default=math.nan):.2f} s",
            "takeover after a freeze: " + ", ".join(f"{t:.2f} s" for t in self.freeze_takeovers),
        ]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def read(paths: list[Path]) -> list[list[str]]:
    out: list[list[str]] = []
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(line.split(" ", 5))
    return out


def analyse(
    client_lines: list[list[str]],
    worker_lines: list[list[str]],
    disruptions: list[Disruption],
    names: dict[str, str],
    phases: dict[str, tuple[float, float]],
) -> Report:
    """``names``: server address -> name; ``phases``: name -> (start, end)."""
    report = Report()
    acked: dict[str, str] = {}
    sent_at: dict[str, tuple[float, float]] = {}
    for parts in client_lines:
        if parts[0] == "ACK":
            payload, handle = parts[1], parts[2]
            acked[payload] = handle
            sent_at[payload] = (float(parts[3]), float(parts[4]))
        elif parts[0] == "ERR":
            payload, t0, t1 = parts[1], float(parts[2]), float(parts[3])
            sent_at[payload] = (t0, t1)
            # The phase the error came in (an error comes with the answer).
            phase = next((p for p, (a, b) in phases.items() if a <= t1 <= b), "other")
            report.errors.append((phase, t0, parts[4].strip() if len(parts) > 4 else ""))
    report.acked = len(acked)

    runs: dict[str, list[Run]] = defaultdict(list)
    by_key: dict[tuple[str, str, float], Run] = {}
    for parts in worker_lines:
        kind, payload, handle, server, t = parts[0], parts[1], parts[2], parts[3], parts[4]
        if kind == "RUN":
            run = Run(payload, handle, server, float(t))
            runs[payload].append(run)
            by_key[(payload, handle, float(t))] = run
        elif kind == "DONE":
            # The latest RUN of this payload and handle on this server without a DONE.
            for run in reversed(runs[payload]):
                if run.handle == handle and run.server == server and run.done is None:
                    run.done = float(t)
                    break
    report.runs = sum(len(r) for r in runs.values())

    report.lost = sorted(p for p in acked if not runs.get(p))
    # Stored by a server that died (or froze) before its JOB_CREATED, then acknowledged
    # by another after the client failed over: it runs under both handles.
    report.unanswered = sum(
        1 for p, rs in runs.items() if p in acked and any(r.handle != acked[p] for r in rs)
    )
    owner: dict[str, str] = {}
    for payload, handle in acked.items():
        if owner.setdefault(handle, payload) != payload:
            report.collisions.append(handle)
    for payload, rs in runs.items():
        for run in rs:
            if owner.setdefault(run.handle, payload) != payload:
                report.collisions.append(run.handle)

    def disturbed(server_name: str, start: float, end: float) -> str | None:
        for d in disruptions:
            overlaps = d.start <= end and d.end >= start
            if overlaps and (d.kind == "pg-restart" or d.server == server_name):
                return d.kind
        return None

    for payload, rs in runs.items():
        rs.sort(key=lambda r: r.start)
        for earlier, later in itertools.pairwise(rs):
            if later.handle != earlier.handle or later.handle != acked.get(payload, later.handle):
                # A submit answered by another server after a failover: the first one
                # had stored it but died (or froze) before its JOB_CREATED.
                other = later.handle if later.handle != acked.get(payload) else earlier.handle
                creator = other.split(":")[1]
                t0, t1 = sent_at.get(payload, (earlier.start, later.start))
                cause = disturbed(creator, t0 - 1, t1 + 1)
                if cause is not None:
                    report.duplicates["unanswered submit, " + cause] += 1
                    continue
            cause = disturbed(names.get(earlier.server, "?"), earlier.start, later.start)
            if cause is not None:
                report.duplicates[cause] += 1
                continue
            # The handle's holder may have changed by adoption: a run handed out by the
            # handle's creator, adopted after its death.
            creator = later.handle.split(":")[1]
            cause = disturbed(creator, earlier.start, later.start)
            if cause is not None:
                report.duplicates[cause + " (adopted)"] += 1
                continue
            report.unexplained.append(f"{payload} {earlier} {later}")
            if earlier.done is not None and later.start > earlier.done:
                report.after_removal.append(f"{payload} {earlier} {later}")

    for d in disruptions:
        if d.kind not in ("kill", "freeze") or d.server is None:
            continue
        # The victim's jobs of its current life: acknowledged since it last came back.
        born = max(
            (e.end for e in disruptions if e.server == d.server and e.end <= d.start),
            default=0.0,
        )
        prefix = f"H:{d.server}:"
        mine = {
            payload
            for payload, handle in acked.items()
            if handle.startswith(prefix) and born <= sent_at[payload][1] <= d.start
        }
        firsts = [
            r.start
            for payload in mine
            for r in runs.get(payload, ())
            if r.start > d.start and names.get(r.server) != d.server
        ]
        if not firsts:
            if d.kind == "kill":
                report.takeover_misses += 1
            continue
        (report.takeovers if d.kind == "kill" else report.freeze_takeovers).append(
            min(firsts) - d.start
        )
    return report
