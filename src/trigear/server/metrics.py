"""Prometheus metrics, read from the dispatcher when scraped (``GET /metrics``).

A :class:`ServerCollector` is a ``prometheus_client`` custom collector: nothing is
counted through the library on the hot path.  The dispatcher bumps plain integers
(:mod:`trigear.server.tally`, :mod:`trigear.server.stats`); a scrape reads them, and the
gauges straight from the queues, in the server's own Trio thread between two dispatcher
passes, so every number of one scrape comes from the same moment.

**Bounded labels.**  A client may send any number of function names, and each label
value is a time series Prometheus keeps.  So at most ``limit`` functions
(``ServerConfig.metrics_functions``) get a ``function`` label of their own; everything
else is summed under ``function="_other"``.  A function gets its label at the first
scrape that sees it active (it counted anything, or has jobs or workers) while labels
are free, the most active first, and keeps it while the server runs.  Labels are never
taken back or moved, so no series ever goes down (a counter that drops looks like a
restart to ``rate()``): see :meth:`FunctionLabels.update`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from .._version import __version__
from .tally import EVENTS, Buckets, FuncTally

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from .dispatcher import Dispatcher

__all__ = ["OTHER", "FunctionLabels", "ServerCollector", "registry_for"]

#: The ``function`` label of everything without a label of its own.
OTHER = "_other"
_PRIORITIES = ("high", "normal", "low")
_EVENT_HELP = {
    "submitted": "Jobs submitted (new jobs; joins of a live job are coalesced)",
    "coalesced": "Submits that joined a live job with the same unique (S2)",
    "completed": "Jobs ended by WORK_COMPLETE",
    "failed": "Jobs ended by WORK_FAIL, WORK_EXCEPTION or spent retries (S10)",
    "requeued": "Runs lost (worker gone, CANT_DO, timeout) and queued again (S9)",
    "timed_out": "Runs that outlived their CAN_DO_TIMEOUT (S11)",
}


def _copy(tally: FuncTally) -> FuncTally:
    out = FuncTally()
    out.add(tally)
    return out


class FunctionLabels:
    """Which functions have a ``function`` label of their own (see the module
    docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: The labelled functions, in the order they got their label.
        self.names: dict[bytes, None] = {}

    def update(self, d: Dispatcher) -> None:
        """Give free labels to the most active functions without one; fold the tallies
        of unlabelled functions that no longer exist into one remnant.

        A function is a candidate once it counted anything or has jobs or workers.
        While labels are free every candidate gets one, so a function that gets its
        label later had counted nothing before: no counter under ``_other`` ever
        loses what a function counted, and none starts from a value it had before."""
        tallies = d.tallies
        free = self.limit - len(self.names)
        if free > 0:
            funcs = d.funcs
            candidates = []
            for name, tally in tallies.by_name.items():
                if name in self.names:
                    continue
                f = funcs.get(name)
                live = f.total + len(f.workers) if f is not None else 0
                if live or any(tally.counts) or tally.queued.sum or tally.ran.sum:
                    candidates.append((-(tally.activity + live), name))
            candidates.sort()
            for _, name in candidates[:free]:
                self.names[name] = None
                tallies.keep.add(name)
        tallies.retire(d.funcs.keys())

    def split(self, d: Dispatcher) -> tuple[dict[str, FuncTally], FuncTally]:
        """Each labelled function's tally, and the sum of the others (``_other``)."""
        tallies = d.tallies
        own: dict[str, FuncTally] = {}
        other = _copy(tallies.retired)
        for name, tally in tallies.by_name.items():
            if name in self.names:
                own[_label(name)] = tally
            else:
                other.add(tally)
        return own, other

    def label(self, name: bytes) -> str:
        return _label(name) if name in self.names else OTHER


def _label(name: bytes) -> str:
    return name.decode(errors="replace")


def _histogram(
    family: HistogramMetricFamily, labels: list[str], buckets: Buckets
) -> HistogramMetricFamily:
    cumulative = [(_le(bound), n) for bound, n in buckets.cumulative()]
    family.add_metric(labels, cumulative, buckets.sum)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class ServerCollector(Collector):
    """The server's metrics for a ``prometheus_client`` registry."""

    def __init__(self, dispatcher: Dispatcher, limit: int = 50) -> None:
        self.dispatcher = dispatcher
        self.labels = FunctionLabels(limit)

    def collect(self) -> Iterator[Metric]:
        d = self.dispatcher
        # Worker gauges are exact: a departed worker's functions are let go of first.
        d.scheduler.functions.settle()
        self.labels.update(d)
        own, other = self.labels.split(d)
        series = [*sorted(own.items()), (OTHER, other)]
        for offset, name in EVENTS:
            family = CounterMetricFamily(
                f"trigear_jobs_{name}", _EVENT_HELP[name], labels=["function", "priority"]
            )
            for label, tally in series:
                for prio, prio_name in enumerate(_PRIORITIES):
                    family.add_metric([label, prio_name], tally.counts[offset + prio])
            yield family
        queued_s = HistogramMetricFamily(
            "trigear_job_queued_seconds",
            "Time from queued (submitted, requeued, or due) to handed to a worker",
            labels=["function"],
        )
        running_s = HistogramMetricFamily(
            "trigear_job_running_seconds",
            "Time from handed to a worker to its WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION",
            labels=["function"],
        )
        for label, tally in series:
            _histogram(queued_s, [label], tally.queued)
            _histogram(running_s, [label], tally.ran)
        yield queued_s
        yield running_s
        yield from self._gauges(d)
        yield from self._server(d)

    def _gauges(self, d: Dispatcher) -> Iterator[Metric]:
        queued: dict[tuple[str, int], int] = {}
        running: dict[str, int] = {}
        workers: dict[str, int] = {}
        for label in [*self.labels.names, None]:
            key = OTHER if label is None else _label(label)
            running[key] = workers[key] = 0
            for prio in range(3):
                queued[key, prio] = 0
        for name, f in d.funcs.items():
            key = self.labels.label(name)
            for prio in range(3):
                queued[key, prio] += f.counts[prio]
            running[key] += f.running
            workers[key] += len(f.workers)
        q = GaugeMetricFamily(
            "trigear_jobs_queued",
            "Jobs waiting to run (queued, scheduled, or being stored)",
            labels=["function", "priority"],
        )
        for (key, prio), n in sorted(queued.items()):
            q.add_metric([key, _PRIORITIES[prio]], n)
        yield q
        r = GaugeMetricFamily("trigear_jobs_running", "Jobs running", labels=["function"])
        for key, n in sorted(running.items()):
            r.add_metric([key], n)
        yield r
        w = GaugeMetricFamily(
            "trigear_workers", "Connections that registered the function", labels=["function"]
        )
        for key, n in sorted(workers.items()):
            w.add_metric([key], n)
        yield w

    def _server(self, d: Dispatcher) -> Iterator[Metric]:
        s = d.stats
        yield GaugeMetricFamily("trigear_connections", "Open connections", len(d.peers))
        yield GaugeMetricFamily(
            "trigear_draining", "1 while a graceful shutdown drains", int(d.scheduler.draining)
        )
        info = GaugeMetricFamily("trigear_build_info", "The server's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        for name, value, text in (
            ("protocol_errors", s.protocol_errors, "Malformed or unexpected input (S20)"),
            ("internal_errors", s.internal_errors, "Packets that hit a bug in the server"),
            ("retries_exhausted", s.retries_exhausted, "Jobs failed as their retries ran out"),
            ("acl_refusals", s.acl_refusals, "Packets and admin commands the ACL refused"),
            ("tls_failures", s.tls_failures, "TLS handshakes that failed or took too long"),
            ("store_commits", s.store_commits, "Batches the store committed"),
            ("store_commit_failures", s.store_failures, "Store commits that failed"),
        ):
            yield CounterMetricFamily(f"trigear_{name}", text, value)
        commit = HistogramMetricFamily(
            "trigear_store_commit_seconds", "How long the store's successful commits took"
        )
        yield _histogram(commit, [], d.tallies.commits)


def registry_for(dispatcher: Dispatcher, limit: int = 50) -> CollectorRegistry:
    """A registry with the server's metrics and the process's (CPU, memory, files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(dispatcher, limit))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
