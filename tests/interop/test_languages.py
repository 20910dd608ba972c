"""PHP, Perl and Node clients and workers, through gearmand and through trigear.

Every check runs against both servers: what passes against gearmand must pass against
trigear.  Where gearmand is wrong (its stray NUL after WORK_FAIL, S7) the test asserts
gearmand's bug and trigear's right answer.

The peers and the contract their scripts speak: ``language_peers.py``.  The module
shares one gearmand and one trigear; each test keeps to its own function names.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pytest

from .language_peers import (
    LANGUAGES,
    Language,
    Task,
    client,
    plan,
    require_language,
    run_client,
    worker,
)

if TYPE_CHECKING:
    from .interop_helpers import ServerProc

pytestmark = pytest.mark.interop

BOTH = pytest.mark.parametrize("server", ["gearmand", "trigear"], indirect=True)
EACH = pytest.mark.parametrize("lang", LANGUAGES, indirect=True)


@pytest.fixture
def server(request: pytest.FixtureRequest, module_servers: dict[str, ServerProc]) -> ServerProc:
    return module_servers[request.param]


@pytest.fixture
def lang(request: pytest.FixtureRequest) -> Language:
    return require_language(request.param)


@pytest.fixture
def fn(request: pytest.FixtureRequest) -> str:
    """A function name of this test's own on the shared servers."""
    return f"{request.node.originalname.removeprefix('test_')}-{secrets.token_hex(4)}"


PROGRESS = "data:d1;warning:w1;status:1/3;data:d2;complete:r"
PROGRESS_EVENTS = [
    ("data", "d1"),
    ("warning", "w1"),
    ("status", 1, 3),
    ("data", "d2"),
    ("complete", "r"),
]


@BOTH
@EACH
def test_foreground_priorities(server: ServerProc, lang: Language, fn: str) -> None:
    """Three foreground tasks queued before any worker run HIGH, NORMAL, LOW (S3), and
    each gets its own result back."""
    tasks = [Task(fn, f"complete:{p}", priority=p) for p in ("low", "normal", "high")]
    with client(lang, server.port, plan(*tasks)) as c:
        c.wait_created(3)
        with worker(lang, server.port, 3, fn) as w:
            jobs = w.finish()
        out = c.finish()
    out.check_done()
    assert [j["payload"] for j in jobs] == ["complete:high", "complete:normal", "complete:low"]
    for i, p in enumerate(("low", "normal", "high")):
        assert out.of(i) == [("created", out.handle(i)), ("complete", p)]


@BOTH
@EACH
def test_progress_is_forwarded(server: ServerProc, lang: Language, fn: str) -> None:
    """WORK_DATA, WORK_WARNING and WORK_STATUS reach the client in order (S6)."""
    with worker(lang, server.port, 1, fn) as w:
        out = run_client(lang, server.port, plan(Task(fn, PROGRESS, unique="u1")))
        (job,) = w.finish()
    out.check_done()
    assert out.of(0) == [("created", job["handle"]), *PROGRESS_EVENTS]
    assert job["fn"] == fn
    assert job["payload"] == PROGRESS
    # Gearman::Worker grabs with GRAB_JOB, which carries no unique.
    assert job["unique"] == (None if lang.name == "perl" else "u1")


@BOTH
@EACH
def test_work_fail(server: ServerProc, lang: Language, fn: str) -> None:
    with worker(lang, server.port, 1, fn) as w:
        out = run_client(lang, server.port, plan(Task(fn, "data:d;fail")))
        w.finish()
    out.check_done()
    assert out.of(0) == [("created", out.handle(0)), ("data", "d"), ("fail",)]


@BOTH
@EACH
def test_work_exception_with_option(server: ServerProc, lang: Language, fn: str) -> None:
    """A client that asked for exceptions gets WORK_EXCEPTION with its data (S7)."""
    with worker(lang, server.port, 1, fn) as w:
        out = run_client(lang, server.port, plan(Task(fn, "exception:boom"), exceptions=True))
        w.finish()
    out.check_done()
    assert out.of(0) == [("created", out.handle(0)), ("exception", "boom")]


@BOTH
@EACH
def test_work_exception_without_option(server: ServerProc, lang: Language, fn: str) -> None:
    """A client that did not ask for exceptions gets WORK_FAIL with the bare handle (S7).

    gearmand's WORK_FAIL here carries a stray NUL after the handle (a gearmand bug): the
    Perl taskset knows no such handle and dies, and the Node client sees a handle ending
    in NUL.  trigear sends the bare handle and both fail the task cleanly.  libgearman
    (PHP) sends OPTION_REQ "exceptions" on every connection whatever the caller asks, so
    a PHP client always gets the exception, from either server.
    """
    with worker(lang, server.port, 1, fn) as w:
        out = run_client(lang, server.port, plan(Task(fn, "exception:boom"), exceptions=False))
        w.finish()
    handle = out.handle(0)
    if lang.name == "php":
        out.check_done()
        assert out.of(0) == [("created", handle), ("exception", "boom")]
    elif server.kind == "trigear":
        out.check_done()
        assert out.of(0) == [("created", handle), ("fail",)]
    elif lang.name == "perl":  # gearmand bug: WORK_FAIL "H:...\0"
        assert out.rc != 0
        assert f"Got work_fail for unknown handle: {handle}\0" in out.stderr
    else:  # gearmand bug, as the Node client sees it
        assert out.rc == 2
        assert out.events[-1] == {"ev": "unmatched", "type": "WORK_FAIL", "handle": handle + "\0"}


@BOTH
@EACH
def test_background_and_status(server: ServerProc, lang: Language, fn: str) -> None:
    """Background jobs at the three priorities: JOB_CREATED comes back at once, GET_STATUS
    follows each job from queued to running (with the worker's WORK_STATUS) to unknown
    (S13), and the jobs run HIGH, NORMAL, LOW (S3)."""
    body = "status:1/2;sleep:400;complete:x"
    tasks = [
        Task(fn, f"data:{p};{body}", unique=f"bg-{p}", priority=p, background=True)
        for p in ("low", "normal", "high")
    ]
    submitted = run_client(lang, server.port, plan(*tasks))
    submitted.check_done()
    assert [e["ev"] for e in submitted.events] == ["created"] * 3 + ["done"]
    normal = submitted.handle(1)
    queued = run_client(lang, server.port, plan(poll=normal))
    queued.check_done()
    assert queued.statuses() == [(1, 0, 0, 0)]
    with worker(lang, server.port, 3, fn) as w:
        polled = run_client(lang, server.port, plan(poll=normal, until_gone=True))
        jobs = w.finish()
    polled.check_done()
    statuses = polled.statuses()
    assert (1, 1, 1, 2) in statuses, statuses
    assert statuses[-1] == (0, 0, 0, 0), statuses
    order = [(1, 0, 0, 0), (1, 1, 0, 0), (1, 1, 1, 2), (0, 0, 0, 0)]
    assert all(s in order for s in statuses), statuses
    assert statuses == sorted(statuses, key=order.index), statuses
    assert [j["payload"].split(";")[0] for j in jobs] == ["data:high", "data:normal", "data:low"]
    assert [j["handle"] for j in jobs] == [submitted.handle(i) for i in (2, 1, 0)]


@BOTH
@EACH
def test_coalescing_two_connections(server: ServerProc, lang: Language, fn: str) -> None:
    """Two clients submit one unique: one job runs, with the first payload, and both get
    every packet of it (S2)."""
    first = plan(Task(fn, "data:d;complete:first", unique="same"))
    second = plan(Task(fn, "data:d;complete:second", unique="same"))
    with client(lang, server.port, first) as a:
        a.wait_created()
        with client(lang, server.port, second) as b:
            b.wait_created()
            with worker(lang, server.port, 1, fn) as w:
                (job,) = w.finish()
            out_a, out_b = a.finish(), b.finish()
    out_a.check_done()
    out_b.check_done()
    assert job["payload"] == "data:d;complete:first"
    assert out_a.handle(0) == out_b.handle(0) == job["handle"]
    assert out_a.of(0)[1:] == out_b.of(0)[1:] == [("data", "d"), ("complete", "first")]


#: WORK_STATUS callbacks per WORK_STATUS packet: Gearman::Taskset calls every task that
#: waits on the handle, libgearman and the Node script only the oldest.
STATUS_FANOUT = {"php": 1, "perl": 2, "node": 1}


@BOTH
@EACH
def test_coalescing_one_connection(server: ServerProc, lang: Language, fn: str) -> None:
    """One connection submits one unique twice: it gets JOB_CREATED twice and every
    packet once per submit, so each of its two tasks ends exactly once (S2)."""
    body = "data:d;warning:w;status:1/2;complete:r"
    tasks = [Task(fn, body, unique="twice"), Task(fn, body, unique="twice")]
    with client(lang, server.port, plan(*tasks)) as c:
        c.wait_created(2)
        with worker(lang, server.port, 1, fn) as w:
            w.finish()
        out = c.finish()
    out.check_done()
    assert out.handle(0) == out.handle(1)
    events = out.of(0) + out.of(1)
    for i in (0, 1):
        assert [e for e in out.of(i) if e[0] in ("complete", "fail", "exception")] == [
            ("complete", "r")
        ]
    assert events.count(("data", "d")) == 2
    assert events.count(("warning", "w")) == 2
    assert events.count(("status", 1, 2)) == 2 * STATUS_FANOUT[lang.name]


@BOTH
@EACH
def test_twenty_tasks_in_one_set(server: ServerProc, lang: Language, fn: str) -> None:
    tasks = [Task(fn, f"data:d{i};complete:r{i}") for i in range(20)]
    with worker(lang, server.port, 20, fn) as w:
        out = run_client(lang, server.port, plan(*tasks))
        jobs = w.finish()
    out.check_done()
    assert sorted(j["payload"] for j in jobs) == sorted(t.payload for t in tasks)
    assert len({out.handle(i) for i in range(20)}) == 20
    for i in range(20):
        assert out.of(i) == [("created", out.handle(i)), ("data", f"d{i}"), ("complete", f"r{i}")]


#: (client, worker): each language is the client of another's worker.
MIXES = [("php", "perl"), ("perl", "node"), ("node", "php")]


@BOTH
@pytest.mark.parametrize(("client_lang", "worker_lang"), MIXES)
def test_client_and_worker_in_other_languages(
    server: ServerProc, client_lang: str, worker_lang: str, fn: str
) -> None:
    """One task set: progress and a result, a WORK_FAIL and a WORK_EXCEPTION, each from a
    worker in another language than the client."""
    c_lang, w_lang = require_language(client_lang), require_language(worker_lang)
    tasks = [Task(fn, PROGRESS), Task(fn, "fail"), Task(fn, "exception:boom")]
    with worker(w_lang, server.port, 3, fn) as w:
        out = run_client(c_lang, server.port, plan(*tasks, exceptions=True))
        jobs = w.finish()
    out.check_done()
    assert sorted(j["payload"] for j in jobs) == sorted(t.payload for t in tasks)
    assert out.of(0)[1:] == PROGRESS_EVENTS
    assert out.of(1)[1:] == [("fail",)]
    assert out.of(2)[1:] == [("exception", "boom")]


#: (first client, second client, worker)
COALESCE_MIXES = [("php", "node", "perl"), ("perl", "php", "node"), ("node", "perl", "php")]


@BOTH
@pytest.mark.parametrize(("first_lang", "second_lang", "worker_lang"), COALESCE_MIXES)
def test_coalescing_across_languages(
    server: ServerProc, first_lang: str, second_lang: str, worker_lang: str, fn: str
) -> None:
    """Clients in two languages submit one unique and share the run of a worker in a
    third (S2)."""
    first, second, w_lang = map(require_language, (first_lang, second_lang, worker_lang))
    body = "data:d;status:1/2;complete:r"
    with client(first, server.port, plan(Task(fn, body, unique="mixed"))) as a:
        a.wait_created()
        with client(second, server.port, plan(Task(fn, "ignored", unique="mixed"))) as b:
            b.wait_created()
            with worker(w_lang, server.port, 1, fn) as w:
                (job,) = w.finish()
            out_a, out_b = a.finish(), b.finish()
    out_a.check_done()
    out_b.check_done()
    assert job["payload"] == body
    assert out_a.handle(0) == out_b.handle(0) == job["handle"]
    expected = [("data", "d"), ("status", 1, 2), ("complete", "r")]
    assert out_a.of(0)[1:] == out_b.of(0)[1:] == expected
