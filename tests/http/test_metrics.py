"""``GET /metrics`` of a real server (``--http``), parsed with prometheus_client's own
parser and checked against traffic whose every job is known."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

import trigear

from ..cli.cli_helpers import running, trigear_cli
from .http_helpers import http_server, sample, wait_until

if TYPE_CHECKING:
    from pathlib import Path


def _worker(address: str) -> trigear.Worker:
    worker = trigear.Worker(address, client_id="metrics-test")

    @worker.function("echo")
    def echo(job: trigear.Job) -> bytes:
        return job.data

    @worker.function("fail")
    def fail(job: trigear.Job) -> bytes:
        raise trigear.JobFailed()

    @worker.function("boom")
    def boom(job: trigear.Job) -> bytes:
        raise ValueError("it broke")

    return worker


def test_metrics_count_known_traffic() -> None:
    with http_server() as server, running(_worker(server.address)):
        with trigear.BlockingClient(server.address) as client:
            for i in range(3):
                assert client.submit("echo", f"n{i}", timeout=30) == f"n{i}".encode()
            for i in range(2):
                client.submit("echo", f"h{i}", priority=trigear.Priority.HIGH, timeout=30)
            with pytest.raises(trigear.JobFailed):
                client.submit("fail", "x", timeout=30)
            with pytest.raises(trigear.JobException):
                client.submit("boom", "x", timeout=30)
            # No worker for "idle": the second submit joins the first (S2).
            first = client.submit_background("idle", "x", unique="u1", timeout=30)
            second = client.submit_background("idle", "y", unique="u1", timeout=30)
            assert first == second
        # A packet of an unknown type is a protocol error (S20).
        host, port = server.address.split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"\0REQ\x00\x00\x03\xe7\x00\x00\x00\x00")
            sock.recv(1024)
        wait_until(
            lambda: sample(server.metrics(), "trigear_protocol_errors_total") >= 1,
            what="the protocol error counted",
        )
        m = server.metrics()

    def jobs(event: str, function: str, priority: str = "normal") -> float:
        name = f"trigear_jobs_{event}_total"
        return sample(m, name, function=function, priority=priority)

    assert jobs("submitted", "echo") == 3
    assert jobs("submitted", "echo", "high") == 2
    assert jobs("submitted", "echo", "low") == 0
    assert jobs("completed", "echo") == 3
    assert jobs("completed", "echo", "high") == 2
    assert jobs("submitted", "fail") == jobs("failed", "fail") == 1
    assert jobs("submitted", "boom") == jobs("failed", "boom") == 1
    assert jobs("completed", "boom") == 0
    assert jobs("submitted", "idle") == 1
    assert jobs("coalesced", "idle") == 1
    assert jobs("requeued", "echo") == jobs("timed_out", "echo") == 0
    # Gauges, read from the queues at scrape time.
    assert sample(m, "trigear_jobs_queued", function="idle", priority="normal") == 1
    assert sample(m, "trigear_jobs_running", function="echo") == 0
    assert sample(m, "trigear_workers", function="echo") == 1
    assert sample(m, "trigear_workers", function="idle") == 0
    # The histograms saw every run that was handed out, and only those.
    assert sample(m, "trigear_job_queued_seconds_count", function="echo") == 5
    assert sample(m, "trigear_job_running_seconds_count", function="echo") == 5
    assert sample(m, "trigear_job_running_seconds_count", function="boom") == 1
    assert sample(m, "trigear_job_queued_seconds_count", function="idle") == 0
    assert sample(m, "trigear_job_queued_seconds_bucket", function="echo", le="+Inf") == 5
    assert 0 <= sample(m, "trigear_job_running_seconds_sum", function="echo") < 30
    # Every counter series has an _other sibling, zero here: 4 functions, 50 labels.
    assert jobs("submitted", "_other") == 0
    assert sample(m, "trigear_protocol_errors_total") == 1
    assert sample(m, "trigear_connections") >= 1
    assert sample(m, "trigear_build_info", version=trigear.__version__) == 1
    # The memory store commits nothing.
    assert sample(m, "trigear_store_commits_total") == 0
    assert sample(m, "trigear_store_commit_seconds_count") == 0
    # prometheus_client's process collector rides along.
    assert sample(m, "process_cpu_seconds_total") > 0


def test_labels_stay_bounded_and_counters_never_go_down() -> None:
    with (
        http_server("--metrics-functions", "2") as server,
        trigear.BlockingClient(server.address) as client,
    ):
        for name, n in (("busy", 3), ("second", 2), ("third", 1), ("fourth", 1)):
            for i in range(n):
                client.submit_background(name, f"{i}", timeout=30)
        before = server.metrics()
        for i in range(40):
            client.submit_background(f"junk-{i}", "x", timeout=30)
        client.submit_background("busy", "more", timeout=30)
        after = server.metrics()

    def submitted(m: dict, function: str) -> float:  # type: ignore[type-arg]
        return sample(m, "trigear_jobs_submitted_total", function=function, priority="normal")

    # The two most active functions got labels; the others are summed as _other.
    labelled = {
        dict(labels)["function"] for name, labels in after if name == "trigear_jobs_submitted_total"
    }
    assert labelled == {"busy", "second", "_other"}
    assert submitted(before, "busy") == 3
    assert submitted(before, "second") == 2
    assert submitted(before, "_other") == 2
    assert submitted(after, "busy") == 4
    assert submitted(after, "_other") == 42
    queued = {
        dict(labels)["function"]: v
        for (name, labels), v in after.items()
        if name == "trigear_jobs_queued" and dict(labels)["priority"] == "normal"
    }
    assert queued == {"busy": 4, "second": 2, "_other": 42}
    for key, value in before.items():
        if key[0].endswith("_total") and key[0].startswith("trigear_"):
            assert after.get(key, 0) >= value, key


def test_store_commits_are_counted_and_timed(tmp_path: Path) -> None:
    with http_server("--store", f"sqlite:{tmp_path / 'q.db'}") as server:
        with trigear.BlockingClient(server.address) as client:
            for i in range(3):
                client.submit_background("stored", f"{i}", timeout=30)
        m = server.metrics()
    assert sample(m, "trigear_store_commits_total") >= 1
    assert sample(m, "trigear_store_commit_seconds_count") == sample(
        m, "trigear_store_commits_total"
    )
    assert sample(m, "trigear_store_commit_failures_total") == 0
    assert sample(m, "trigear_jobs_queued", function="stored", priority="normal") == 3


def test_http_flag_mistakes_exit_2_without_a_traceback() -> None:
    with http_server() as server:
        taken = server.url.removeprefix("http://")
        for flag, words in (
            (taken, "cannot listen for HTTP"),
            ("nonsense", "is not PORT or ADDRESS:PORT"),
            ("127.0.0.1:99999", "is not PORT or ADDRESS:PORT"),
        ):
            done = trigear_cli("-p", "0", "--http", flag)
            assert done.returncode == 2, done.stderr
            assert words in done.stderr.decode()
            assert b"Traceback" not in done.stderr
        done = trigear_cli("-p", "0", "--http", "0", "--http-timeout", "0")
        assert done.returncode == 2
        assert b"--http-timeout" in done.stderr
        server.proc.terminate()
        assert server.proc.wait(30) == 0
