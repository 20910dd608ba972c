"""A real trigear server process for the HTTP tests: ``python -m trigear -p 0 --http
127.0.0.1:0``, both ports learnt from its log, and the helpers the tests share."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ..cli.cli_helpers import plain_env

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_STATUS_PAGE = re.compile(r"status page (http://\S+)/,")


class HttpServer:
    """A started server: ``address`` (Gearman, host:port) and ``url`` (HTTP)."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Any, address: str, url: str) -> None:
        self.proc = proc
        self.log = log
        self.address = address
        self.url = url
        # A connection per request: a kept-alive one that the server closes as idle
        # (Hypercorn, after 5 s) just as a POST goes out on it fails that POST, which
        # httpx rightly does not retry; a busy machine can stall a test that long.
        self.http = httpx.Client(
            base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def log_text(self) -> str:
        self.log.seek(0)
        return str(self.log.read().decode(errors="replace"))

    def status(self) -> dict[str, Any]:
        reply = self.http.get("/api/status")
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def function(self, name: str) -> dict[str, Any] | None:
        """The status page's row for function ``name``, if it has one."""
        for row in self.status()["functions"]:
            if row["name"] == name:
                return dict(row)
        return None

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``, parsed by prometheus_client's own parser:
        (sample name, sorted labels) -> value."""
        reply = self.http.get("/metrics")
        reply.raise_for_status()
        out = {}
        for family in text_string_to_metric_families(reply.text):
            for s in family.samples:
                out[s.name, tuple(sorted(s.labels.items()))] = s.value
        return out


def sample(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """One sample's value; 0 when there is no such series yet."""
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(predicate: Callable[[], object], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


@contextmanager
def http_server(*args: str) -> Iterator[HttpServer]:
    """``python -m trigear -p 0 --http 127.0.0.1:0 ARGS`` until the block ends."""
    log = tempfile.NamedTemporaryFile(prefix="trigear-http-", suffix=".log")  # noqa: SIM115
    argv = [sys.executable, "-m", "trigear", "-p", "0", "--http", "127.0.0.1:0", *args]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=plain_env())
    try:
        deadline = time.monotonic() + 20
        while True:
            log.seek(0)
            text = log.read().decode(errors="replace")
            gearman, page = _LISTENING.search(text), _STATUS_PAGE.search(text)
            if gearman and page:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{text}")
            time.sleep(0.05)
        server = HttpServer(proc, log, f"127.0.0.1:{gearman.group(1)}", page.group(1))
        try:
            yield server
        finally:
            server.http.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
