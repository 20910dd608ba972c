"""What the status page shows (``GET /api/status``): the server's state as JSON, and
the last minutes of queue depth and throughput sampled every few seconds.

Read in the server's Trio thread between two dispatcher passes, like the metrics.  Long
lists are cut (the busiest first) and say how many were left out, so a server with a
million jobs or thousands of workers answers in bounded time and size.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import trio

from .._version import __version__
from .state import JobState
from .tally import COMPLETED, FAILED, SUBMITTED

if TYPE_CHECKING:
    from .dispatcher import Dispatcher

__all__ = ["History", "status"]

#: Rows of each list the page gets at most.
LIMIT = 100


class History:
    """Samples of queue depth, running jobs and the job counters, ``every`` seconds,
    the last ``keep`` of them (10 minutes by default)."""

    def __init__(self, dispatcher: Dispatcher, every: float = 2.0, keep: int = 300) -> None:
        self.dispatcher = dispatcher
        self.every = every
        #: (unix time, queued, running, submitted, completed, failed) in time order.
        self.samples: deque[tuple[float, int, int, int, int, int]] = deque(maxlen=keep)

    def sample(self) -> None:
        d = self.dispatcher
        queued = running = 0
        for f in d.funcs.values():
            c = f.counts
            queued += c[0] + c[1] + c[2]
            running += f.running
        totals = [0, 0, 0]
        for tallies in (d.tallies.by_name.values(), (d.tallies.retired,)):
            for t in tallies:
                c = t.counts
                for i, offset in enumerate((SUBMITTED, COMPLETED, FAILED)):
                    totals[i] += c[offset] + c[offset + 1] + c[offset + 2]
        self.samples.append((time.time(), queued, running, totals[0], totals[1], totals[2]))

    async def run(self) -> None:
        while True:
            self.sample()
            await trio.sleep(self.every)

    def series(self) -> list[dict[str, float]]:
        """Per sample: the time, queue depth, running jobs, and jobs per second
        submitted, completed and failed since the sample before."""
        out = []
        prev = None
        for t, queued, running, sub, done, failed in self.samples:
            rates = [0.0, 0.0, 0.0]
            if prev is not None and t > prev[0]:
                dt = t - prev[0]
                rates = [
                    max(0.0, (now - then) / dt)
                    for now, then in zip((sub, done, failed), prev[3:], strict=True)
                ]
            out.append(
                {
                    "t": round(t, 3),
                    "queued": queued,
                    "running": running,
                    "submitted": round(rates[0], 2),
                    "completed": round(rates[1], 2),
                    "failed": round(rates[2], 2),
                }
            )
            prev = (t, queued, running, sub, done, failed)
        return out


def _text(b: bytes) -> str:
    return b.decode(errors="replace")


def status(d: Dispatcher, history: History, store: str, started: float) -> dict[str, Any]:
    """The status page's data: see the module docstring."""
    d.scheduler.functions.settle()  # exact worker counts (Scheduler.drop_abilities)
    now_mono = trio.current_time()
    to_unix = time.time() - now_mono
    stats = d.stats
    functions = []
    busiest = sorted(
        d.funcs.items(), key=lambda item: (-(item[1].total + len(item[1].workers)), item[0])
    )
    for name, f in busiest[:LIMIT]:
        c = f.tally.counts
        functions.append(
            {
                "name": _text(name),
                "queued": f.counts[0] + f.counts[1] + f.counts[2],
                "high": f.counts[0],
                "normal": f.counts[1],
                "low": f.counts[2],
                "running": f.running,
                "workers": len(f.workers),
                "completed": c[COMPLETED] + c[COMPLETED + 1] + c[COMPLETED + 2],
                "failed": c[FAILED] + c[FAILED + 1] + c[FAILED + 2],
            }
        )
    peers = sorted(d.peers.values(), key=lambda p: (-len(p.held), p.id))
    workers = []
    running: list[tuple[float, dict[str, Any]]] = []
    for peer in peers:
        if peer.abilities:
            workers.append(
                {
                    "id": peer.id,
                    "ip": peer.ip,
                    "client_id": _text(peer.client_id),
                    "functions": [_text(n) for n in list(peer.abilities)[:10]],
                    "more_functions": max(0, len(peer.abilities) - 10),
                    "running": len(peer.held),
                    "sleeping": peer.sleeping,
                }
            )
        for job in peer.held.values():
            if job.state is JobState.RUNNING:
                seconds = round(max(0.0, now_mono - job.since), 3)
                running.append(
                    (
                        seconds,
                        {
                            "handle": _text(job.handle),
                            "function": _text(job.func.name),
                            "worker": f"{peer.ip} {_text(peer.client_id)}",
                            "seconds": seconds,
                            "progress": [job.numerator, job.denominator],
                            "attempts": job.attempts,
                        },
                    )
                )
    failures = [
        {
            "at": round(f.at + to_unix, 3),
            "function": f.function,
            "handle": f.handle,
            "kind": f.kind,
            "text": f.text,
        }
        for f in reversed(d.tallies.failures)
    ]
    return {
        "server": {
            "version": __version__,
            "store": store,
            "uptime": round(time.time() - started, 1),
            "connections": len(d.peers),
            "draining": d.scheduler.draining,
            "jobs": len(d.jobs),
        },
        "totals": {
            "submitted": stats.jobs_submitted,
            "coalesced": stats.jobs_coalesced,
            "completed": stats.jobs_completed,
            "failed": stats.jobs_failed,
            "requeued": stats.jobs_requeued,
            "timed_out": stats.jobs_timed_out,
            "protocol_errors": stats.protocol_errors,
        },
        "functions": functions,
        "more_functions": max(0, len(busiest) - LIMIT),
        "workers": workers[:LIMIT],
        "more_workers": max(0, len(workers) - LIMIT),
        "running": [r for _, r in sorted(running, key=lambda r: -r[0])[:LIMIT]],
        "more_running": max(0, len(running) - LIMIT),
        "failures": failures,
        "history": history.series(),
        "every": history.every,
    }
