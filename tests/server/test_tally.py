"""What the scheduler counts for the metrics (server/tally.py), and the collector's
bounded labels (server/metrics.py), without sockets: through the dispatcher harness."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trigear.protocol.packets import (
    CanDo,
    CanDoTimeout,
    CantDo,
    SubmitJob,
    SubmitJobBg,
    SubmitJobLowBg,
    WorkComplete,
    WorkException,
)
from trigear.server.config import ServerConfig
from trigear.server.metrics import registry_for
from trigear.server.tally import BUCKETS, COALESCED, COMPLETED, FAILED, REQUEUED, TIMED_OUT, Buckets

from .dispatcher_harness import Harness

NORMAL, LOW = 1, 2


def _set_now(h: Harness, now: float) -> None:
    h.d.now = h.d.scheduler.now = now


def test_runs_are_counted_and_timed() -> None:
    h = Harness()
    _set_now(h, 10.0)
    c = h.peer()
    w = h.peer(b"f")
    h.send(c, SubmitJob(b"f", b"u", b"x"), SubmitJob(b"f", b"u", b"x"))
    _set_now(h, 10.5)
    handle = h.grab(w)
    _set_now(h, 12.0)
    h.send(w, WorkComplete(handle, b"ok"))
    t = h.d.funcs[b"f"].tally
    assert t.counts[NORMAL] == 1
    assert t.counts[COALESCED + NORMAL] == 1
    assert t.counts[COMPLETED + NORMAL] == 1
    assert t.queued.count == 1
    assert t.queued.sum == 0.5
    assert t.ran.sum == 1.5
    # 0.5 s falls in the 0.5 bucket (le), 1.5 s in the 2.5 one.
    assert t.queued.counts[BUCKETS.index(0.5)] == 1
    assert t.ran.counts[BUCKETS.index(2.5)] == 1


def test_requeues_timeouts_exceptions_and_spent_retries() -> None:
    h = Harness(ServerConfig(job_handle_prefix="t", job_retries=1))
    c = h.peer()
    w = h.peer()
    h.send(w, CanDoTimeout(b"f", 1000))
    h.send(c, SubmitJobLowBg(b"f", b"", b"x"))
    h.grab(w)
    _set_now(h, 11.0)
    h.d.tick()  # timed out: requeued (attempt 1)
    t = h.d.funcs[b"f"].tally
    assert t.counts[TIMED_OUT + LOW] == t.counts[REQUEUED + LOW] == 1
    h.grab(w)
    _set_now(h, 12.0)
    h.d.tick()  # the retry is spent (S10)
    assert t.counts[FAILED + LOW] == 1
    assert [f.kind for f in h.d.tallies.failures] == ["retries"]
    h.send(c, SubmitJobBg(b"f", b"", b"y"))
    handle = h.grab(w)
    h.send(w, WorkException(handle, b"bad input"))
    assert t.counts[FAILED + NORMAL] == 1
    last = h.d.tallies.failures[-1]
    assert (last.function, last.handle, last.kind, last.text) == (
        "f",
        handle.decode(),
        "exception",
        "bad input",
    )


def _scrape(h: Harness, registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def test_a_dropped_function_keeps_counting_and_labels_stay_bounded() -> None:
    h = Harness()
    registry = registry_for(h.d, limit=1)
    c = h.peer()
    w = h.peer(b"a")
    h.send(c, SubmitJob(b"a", b"", b"1"))
    h.send(w, WorkComplete(h.grab(w), b""))
    h.send(c, SubmitJobBg(b"b", b"", b"1"))
    first = _scrape(h, registry)
    key = "trigear_jobs_submitted_total"
    assert first[key, (("function", "a"), ("priority", "normal"))] == 1
    assert first[key, (("function", "_other"), ("priority", "normal"))] == 1
    # "b" is dropped once its job is gone; its count stays in _other.
    (job,) = [j for j in h.d.jobs.values() if j.func.name == b"b"]
    h.d.cancel(job.handle)
    assert h.d.drop_function(b"b") is None
    second = _scrape(h, registry)
    assert second[key, (("function", "_other"), ("priority", "normal"))] == 1
    assert b"b" not in h.d.tallies.by_name
    assert h.d.tallies.retired.counts[NORMAL] == 1
    # "a" is dropped and comes back: its label and its count carry on.
    h.d.disconnect(w)
    assert h.d.drop_function(b"a") is None
    h.send(c, SubmitJobBg(b"a", b"", b"2"))
    third = _scrape(h, registry)
    assert third[key, (("function", "a"), ("priority", "normal"))] == 2


def test_buckets_cumulate() -> None:
    b = Buckets()
    for seconds in (0.0005, 0.001, 4000.0):
        b.observe(seconds)
    cumulative = b.cumulative()
    assert cumulative[0] == (0.001, 2)
    assert cumulative[-2] == (3600.0, 2)
    assert cumulative[-1] == (float("inf"), 3)
    assert b.count == 3


def test_one_off_names_do_not_pile_up_tallies_without_scrapes() -> None:
    h = Harness(ServerConfig(job_handle_prefix="t", max_idle_functions=10))
    c = h.peer()
    w = h.peer()
    for i in range(3000):
        name = b"once-%d" % i
        h.send(w, CanDo(name))
        h.send(c, SubmitJobBg(name, b"", b"x"))
        h.send(w, WorkComplete(h.grab(w), b""))
        h.send(w, CantDo(name))
    tallies = h.d.tallies
    assert len(h.d.funcs) <= 11
    assert len(tallies.by_name) <= 2 * 11 + 1024 + 1
    # Nothing counted is lost: the gone functions' counts are in the remnant.
    submitted = sum(t.counts[NORMAL] for t in tallies.by_name.values())
    assert submitted + tallies.retired.counts[NORMAL] == 3000
    completed = sum(t.ran.count for t in tallies.by_name.values()) + tallies.retired.ran.count
    assert completed == 3000
