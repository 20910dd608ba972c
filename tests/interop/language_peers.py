"""Run the PHP, Perl and Node Gearman peers in ``tests/interop/peers/`` from the tests.

Gearman's promise is that client, worker and server may each be in another language.
Each language here has a client script and a worker script built on that language's own
library (PHP: pecl gearman on libgearman; Perl: Gearman::Client and Gearman::Worker;
Node: the ``gearman`` npm package), and all six speak one contract, so a test is written
once and run with any client against any worker, through gearmand and through trigear.

Worker: ``worker PORT COUNT TIMEOUT_MS FUNCTION...`` registers the functions, runs COUNT
jobs and exits 0.  For each job it prints a JSON line ``{"fn", "unique", "payload",
"handle"}`` (``unique`` is null where the library grabs without it) and then runs the
steps the payload spells, separated by ``;``: ``data:X`` (WORK_DATA), ``warning:X``
(WORK_WARNING), ``status:N/D`` (WORK_STATUS), ``sleep:MS``, and one that ends the job:
``complete:X``, ``fail`` or ``exception:X``.  No ending step completes with the payload.

Client: ``client PORT`` reads a plan on stdin::

    {"exceptions": bool, "timeout_ms": int,
     "tasks": [{"fn", "payload", "unique" (or null), "priority": "high"|"normal"|"low",
                "background": bool}, ...],
     "poll": {"handle": str, "until_gone": bool}}          (optional)

submits the tasks as one task set on one connection and waits for the foreground ones;
then, with ``poll``, sends GET_STATUS for the handle (every 50 ms until the server no
longer knows it, with ``until_gone``).  It prints one JSON line per event: ``created``
(with ``handle``), ``data``, ``warning``, ``status`` (``num``, ``den``), ``complete``,
``fail``, ``exception`` (each with ``t``, the task's index in the plan), ``status_res``
(``known``, ``running``, ``num``, ``den``, printed when it changes), and ``done`` last.
Past ``timeout_ms`` it prints ``timeout`` and exits 3: a hang is a failure, never a stuck
run.  Every process also gets a subprocess timeout here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..peers import missing, require_binary

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

PEERS = Path(__file__).parent / "peers"
NODE_DIR = PEERS / "node"
LANGUAGES = ("php", "perl", "node")
#: How long a script may run before it gives up by itself (its own timeout).
SCRIPT_TIMEOUT_MS = 10_000
#: Seconds on top of a script's own timeout before the test kills it.
KILL_GRACE = 10.0

Event = dict[str, Any]


@dataclass(frozen=True)
class Language:
    """How to run one language's client and worker scripts."""

    name: str
    interpreter: tuple[str, ...]
    suffix: str

    def argv(self, role: str, *args: str) -> list[str]:
        return [*self.interpreter, str(PEERS / self.name / f"{role}.{self.suffix}"), *args]


def _runs(argv: Sequence[str]) -> bool:
    """Whether a one-line check of an installed library exits 0 (within 30 s)."""
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@functools.cache
def _find(name: str) -> Language | str:
    """The language, or why it cannot run here."""
    if name == "php":
        php = require_binary("php")
        if not _runs([php, "-r", "exit(extension_loaded('gearman') ? 0 : 1);"]):
            return "the PHP gearman extension is not loaded (Debian: php-gearman)"
        return Language("php", (php, "-d", "display_errors=stderr", "-d", "log_errors=0"), "php")
    if name == "perl":
        perl = require_binary("perl")
        if not _runs([perl, "-MGearman::Client", "-MGearman::Worker", "-e", "1"]):
            return "Gearman::Client is not installed (Debian: libgearman-client-perl)"
        return Language("perl", (perl,), "pl")
    if name == "node":
        node = require_binary("node")
        if not (NODE_DIR / "node_modules" / "gearman" / "package.json").exists():
            return f"the gearman npm package is not installed: npm ci --prefix {NODE_DIR}"
        return Language("node", (node,), "js")
    raise ValueError(f"no peer scripts for language {name!r}")


def require_language(name: str) -> Language:
    """The language's peers, or a skip (a failure in CI) when they are not installed."""
    found = _find(name)
    if isinstance(found, str):
        missing(found)
        raise AssertionError("unreachable")
    return found


# --- plans --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    fn: str
    payload: str
    unique: str | None = None
    priority: str = "normal"
    background: bool = False

    def plan(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan(
    *tasks: Task,
    exceptions: bool = False,
    poll: str | None = None,
    until_gone: bool = False,
    timeout_ms: int = SCRIPT_TIMEOUT_MS,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "exceptions": exceptions,
        "timeout_ms": timeout_ms,
        "tasks": [t.plan() for t in tasks],
    }
    if poll is not None:
        out["poll"] = {"handle": poll, "until_gone": until_gone}
    return out


# --- processes ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a client printed, and how it exited."""

    events: list[Event]
    rc: int
    stderr: str

    def of(self, task: int) -> list[tuple[Any, ...]]:
        """Task ``task``'s events in order, as tuples: ``("created", handle)``,
        ``("data", X)``, ``("status", N, D)``, ``("complete", X)``, ``("fail",)``..."""
        out: list[tuple[Any, ...]] = []
        for e in self.events:
            if e.get("t") != task:
                continue
            if e["ev"] == "created":
                out.append(("created", e["handle"]))
            elif e["ev"] == "status":
                out.append(("status", e["num"], e["den"]))
            elif e["ev"] in ("data", "warning", "complete", "exception"):
                out.append((e["ev"], e["data"]))
            else:
                out.append((e["ev"],))
        return out

    def handle(self, task: int) -> str:
        (created,) = [e for e in self.events if e.get("t") == task and e["ev"] == "created"]
        return str(created["handle"])

    def statuses(self) -> list[tuple[int, int, int, int]]:
        return [
            (e["known"], e["running"], e["num"], e["den"])
            for e in self.events
            if e["ev"] == "status_res"
        ]

    def check_done(self) -> None:
        """The script ended on its own, cleanly."""
        assert self.rc == 0, f"exit {self.rc}: {self.events} {self.stderr}"
        assert self.events[-1] == {"ev": "done"}, self.events


@dataclass
class Client:
    """A client script running in the background, its output read as it comes."""

    proc: subprocess.Popen[bytes]
    stderr_file: IO[bytes]
    timeout: float
    events: list[Event] = field(default_factory=list)
    _lines: queue.Queue[bytes | None] = field(default_factory=queue.Queue)
    _eof: bool = False

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _take(self, line: bytes | None) -> bool:
        if line is None:
            self._eof = True
            return False
        try:
            self.events.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line on stdout: {line!r}") from None
        return True

    def wait_for(self, pred: Callable[[list[Event]], bool], what: str) -> None:
        """Read events until ``pred(events)`` holds; fail at the timeout or at exit."""
        deadline = time.monotonic() + self.timeout
        while not pred(self.events):
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"no {what} within {self.timeout}s: {self.events}") from None
            if not self._take(line):
                raise AssertionError(f"client exited before {what}: {self.finish()}")

    def wait_created(self, n: int = 1) -> None:
        self.wait_for(lambda ev: sum(e["ev"] == "created" for e in ev) >= n, f"{n} JOB_CREATED")

    def finish(self) -> Outcome:
        try:
            rc = self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"client still running after {self.timeout}s") from None
        while not self._eof and self._take(self._lines.get(timeout=self.timeout)):
            pass
        self.stderr_file.seek(0)
        return Outcome(self.events, rc, self.stderr_file.read().decode(errors="replace"))


@contextlib.contextmanager
def client(lang: Language, port: int, the_plan: dict[str, Any]) -> Iterator[Client]:
    """Start ``lang``'s client with ``the_plan``; it is killed if still running after."""
    timeout = the_plan["timeout_ms"] / 1000 + KILL_GRACE
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            lang.argv("client", str(port)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        c = Client(proc, err, timeout)
        reader = threading.Thread(target=c._read, daemon=True)
        reader.start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(the_plan).encode())
            proc.stdin.close()
            yield c
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            reader.join(KILL_GRACE)
            assert proc.stdout is not None
            proc.stdout.close()


def run_client(lang: Language, port: int, the_plan: dict[str, Any]) -> Outcome:
    """Run ``lang``'s client to its end."""
    with client(lang, port, the_plan) as c:
        return c.finish()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]
    timeout: float

    def finish(self) -> list[Event]:
        """Wait for the worker to run its COUNT jobs and exit; the jobs it saw, in order."""
        try:
            rc = self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker still running after {self.timeout}s") from None
        self.out.seek(0)
        self.err.seek(0)
        lines = [json.loads(line) for line in self.out.read().splitlines()]
        assert rc == 0, f"worker exit {rc}: {lines} {self.err.read().decode(errors='replace')}"
        return lines


@contextlib.contextmanager
def worker(
    lang: Language, port: int, count: int, *functions: str, timeout_ms: int = SCRIPT_TIMEOUT_MS
) -> Iterator[Worker]:
    """Start ``lang``'s worker for ``count`` jobs; it is killed if still running after."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        argv = lang.argv("worker", str(port), str(count), str(timeout_ms), *functions)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            yield Worker(proc, out, err, timeout_ms / 1000 + KILL_GRACE)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
