"""What the dispatcher counts for the metrics and the status page, per function.

The dispatcher's part is integer increments and, once per run, two subtractions and a
bisection: each function record (:class:`~trigear.server.state.Func`) holds a
:class:`FuncTally`, and the scheduler bumps its counters where it bumps the global ones
in :class:`~trigear.server.stats.ServerStats`.  Everything else -- labels, the bound on
how many functions get one, Prometheus' text format -- happens when somebody looks
(:mod:`trigear.server.metrics`, :mod:`trigear.server.status`), never on the hot path.

A function's tally outlives its record: :class:`Tallies` keeps it by name, so an admin
``drop function`` and a later first use of the same name keep counting up (Prometheus
counters must not go back), and :meth:`Tallies.retire` folds the tallies of functions
that are gone into one remnant so that many short-lived names do not pile up.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

__all__ = [
    "BUCKETS",
    "COALESCED",
    "COMPLETED",
    "EVENTS",
    "FAILED",
    "REQUEUED",
    "SUBMITTED",
    "TIMED_OUT",
    "Buckets",
    "Failure",
    "FuncTally",
    "Tallies",
]

#: Offsets into :attr:`FuncTally.counts`: ``counts[EVENT + priority]``.
SUBMITTED = 0
COALESCED = 3
COMPLETED = 6
FAILED = 9
REQUEUED = 12
TIMED_OUT = 15
#: The events in counter order, with their metric names (``trigear_jobs_<name>_total``).
EVENTS = (
    (SUBMITTED, "submitted"),
    (COALESCED, "coalesced"),
    (COMPLETED, "completed"),
    (FAILED, "failed"),
    (REQUEUED, "requeued"),
    (TIMED_OUT, "timed_out"),
)

#: Upper bounds (seconds) of the time-queued and time-running histograms: from a
#: millisecond (a job handed to a waiting worker) to an hour (a backlog).
BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)


class Buckets:
    """A histogram's raw counts: ``counts[i]`` observations fell at or below
    ``BUCKETS[i]`` and above the bound before it; the last one above every bound."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound falls in that bound's bucket (le).
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds

    def add(self, other: Buckets) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), ending with +Inf."""
        out = []
        total = 0
        for bound, n in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


class FuncTally:
    """One function's counters since the server started."""

    __slots__ = ("counts", "queued", "ran")

    def __init__(self) -> None:
        #: ``counts[EVENT + priority]``: the event offsets above, priority 0-2 (HIGH,
        #: NORMAL, LOW).
        self.counts = [0] * 18
        #: Time from queued (submitted, requeued, or an epoch job due) to handed out.
        self.queued = Buckets()
        #: Time from handed out to WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION.
        self.ran = Buckets()

    def add(self, other: FuncTally) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.queued.add(other.queued)
        self.ran.add(other.ran)

    @property
    def activity(self) -> int:
        """How much the function does: its submits, coalesced or not."""
        c = self.counts
        return sum(c[SUBMITTED : COALESCED + 3])


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed job, for the status page's list of recent failures."""

    #: When, in the server's monotonic seconds (:attr:`Scheduler.now
    #: <trigear.server.scheduler.Scheduler.now>`).
    at: float
    function: str
    handle: str
    #: "fail" (WORK_FAIL), "exception" (WORK_EXCEPTION), "retries" (S10).
    kind: str
    #: The exception's text, cut to 200 characters; empty otherwise.
    text: str = ""


class Tallies:
    """Every function's tally by name, the failures of late, and the remnant of the
    functions that are gone."""

    #: How many failures :attr:`failures` keeps.
    RECENT = 50

    def __init__(self) -> None:
        self.by_name: dict[bytes, FuncTally] = {}
        #: The summed tallies of functions retired by :meth:`retire`.
        self.retired = FuncTally()
        self.failures: deque[Failure] = deque(maxlen=self.RECENT)
        #: How long the store's successful commits took.
        self.commits = Buckets()
        #: Names :meth:`retire` keeps even when they are gone: those with a metrics
        #: label (:class:`trigear.server.metrics.FunctionLabels` adds them).
        self.keep: set[bytes] = set()

    def get(self, name: bytes, live: Collection[bytes]) -> FuncTally:
        """The tally of function ``name``, the same one every time it is asked for.

        ``live``: the functions that exist.  Function records come and go (the
        scheduler frees idle ones); when the tallies outnumber them by far, those of
        the gone ones are retired, so that one-off names cost no memory for ever
        whether or not anybody scrapes."""
        tally = self.by_name.get(name)
        if tally is None:
            if len(self.by_name) >= 2 * len(live) + len(self.keep) + 1024:
                self.retire(live)
            tally = self.by_name[name] = FuncTally()
        return tally

    def failed(
        self, at: float, function: bytes, handle: bytes, kind: str, text: bytes = b""
    ) -> None:
        self.failures.append(
            Failure(
                at,
                function.decode(errors="replace"),
                handle.decode(errors="replace"),
                kind,
                text[:200].decode(errors="replace"),
            )
        )

    def retire(self, live: Iterable[bytes]) -> None:
        """Fold the tallies of functions neither ``live`` nor in :attr:`keep` into
        :attr:`retired` and forget their names (the sums stay the same)."""
        stay = set(live)
        stay.update(self.keep)
        for name in [n for n in self.by_name if n not in stay]:
            self.retired.add(self.by_name.pop(name))
