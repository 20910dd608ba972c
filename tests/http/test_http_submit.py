"""HTTP submits (``POST /job/FUNCTION``) to a real server with a plain HTTP client
(httpx): results, background jobs, priorities, uniques, failures, timeouts, bad
requests, an HTTP client that leaves mid-request (S12), and the ACL (403)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import trio

import trigear

from ..cli.cli_helpers import running
from .http_helpers import HttpServer, http_server, sample, wait_until

if TYPE_CHECKING:
    from pathlib import Path


def _worker(address: str) -> trigear.Worker:
    worker = trigear.Worker(address, client_id="http-test")

    @worker.function("reverse")
    def reverse(job: trigear.Job) -> bytes:
        return job.data[::-1]

    @worker.function("chunks")
    async def chunks(job: trigear.Job) -> bytes:
        await job.send_status(1, 2)
        await job.send_data(b"one,")
        await job.send_data(b"two,")
        return b"three"

    @worker.function("fail")
    def fail(job: trigear.Job) -> bytes:
        raise trigear.JobFailed()

    @worker.function("boom")
    def boom(job: trigear.Job) -> bytes:
        raise ValueError("it broke")

    @worker.function("slow")
    async def slow(job: trigear.Job) -> bytes:
        await trio.sleep(float(job.data))
        return b"late"

    return worker


def _still_serving(server: HttpServer) -> None:
    reply = server.http.post("/job/reverse", content=b"abc")
    assert (reply.status_code, reply.content) == (200, b"cba")


def test_foreground_background_priority_and_unique() -> None:
    with http_server() as server, running(_worker(server.address)):
        reply = server.http.post("/job/reverse", content=b"hello")
        assert reply.status_code == 200
        assert reply.content == b"olleh"
        assert reply.headers["x-gearman-job-handle"].startswith("H:")
        # WORK_DATA chunks, then WORK_COMPLETE's data; WORK_STATUS is left out.
        reply = server.http.post("/job/chunks", content=b"")
        assert (reply.status_code, reply.content) == (200, b"one,two,three")
        # A function name is the URL path, percent-decoded.
        reply = server.http.post("/job/no%20worker%2Fhere", headers=_bg())
        assert reply.status_code == 202
        handle = reply.headers["x-gearman-job-handle"]
        assert reply.content == handle.encode() + b"\n"
        row = server.function("no worker/here")
        assert row is not None
        assert row["queued"] == 1
        # The same unique joins the live job (S2): same handle, still one job.
        again = server.http.post(
            "/job/no%20worker%2Fhere", headers={**_bg(), "X-Gearman-Unique": "u"}
        )
        third = server.http.post(
            "/job/no%20worker%2Fhere", headers={**_bg(), "X-Gearman-Unique": "u"}
        )
        assert again.headers["x-gearman-job-handle"] == third.headers["x-gearman-job-handle"]
        for prio in ("high", "low", "HIGH"):
            reply = server.http.post(
                "/job/queued-only", content=prio, headers={**_bg(), "X-Gearman-Priority": prio}
            )
            assert reply.status_code == 202
        row = server.function("queued-only")
        assert row is not None
        assert (row["high"], row["normal"], row["low"]) == (2, 0, 1)
        m = server.metrics()
        assert (
            sample(m, "trigear_jobs_coalesced_total", function="no worker/here", priority="normal")
            == 1
        )
        assert sample(m, "trigear_jobs_completed_total", function="reverse", priority="normal") == 1
        # HTTP submits are connections like others, closed once answered.
        wait_until(lambda: server.status()["server"]["connections"] == 1, what="1 connection")


def _bg() -> dict[str, str]:
    return {"X-Gearman-Background": "true"}


def test_failures_map_to_statuses() -> None:
    with http_server("--max-packet-size", "4K") as server, running(_worker(server.address)):
        reply = server.http.post("/job/fail", content=b"x")
        assert reply.status_code == 500
        assert b"WORK_FAIL" in reply.content
        assert reply.headers["x-gearman-job-handle"].startswith("H:")
        reply = server.http.post("/job/boom", content=b"x")
        assert reply.status_code == 500
        assert b"it broke" in reply.content
        # No worker within the timeout: 504, and the job is cancelled with its
        # submit (S12): nobody waits for it any more.
        reply = server.http.post("/job/nobody", content=b"x", headers={"X-Gearman-Timeout": "0.3"})
        assert reply.status_code == 504
        assert reply.headers["x-gearman-job-handle"].startswith("H:")
        wait_until(lambda: (server.function("nobody") or {}).get("queued") == 0, what="dropped")
        # A running job whose HTTP submit timed out runs on; its result goes nowhere.
        reply = server.http.post("/job/slow", content=b"1", headers={"X-Gearman-Timeout": "0.2"})
        assert reply.status_code == 504
        bad = [
            ({"X-Gearman-Priority": "urgent"}, "X-Gearman-Priority"),
            ({"X-Gearman-Background": "maybe"}, "X-Gearman-Background"),
            ({"X-Gearman-Timeout": "soon"}, "X-Gearman-Timeout"),
            ({"X-Gearman-Timeout": "-1"}, "X-Gearman-Timeout"),
            ({"X-Gearman-Timeout": "inf"}, "X-Gearman-Timeout"),
            ({"X-Gearman-Unique": "u" * 65}, "X-Gearman-Unique"),
        ]
        for headers, word in bad:
            reply = server.http.post("/job/reverse", content=b"x", headers=headers)
            assert reply.status_code == 400, headers
            assert word in reply.text
        assert server.http.post("/job/", content=b"x").status_code == 400
        assert server.http.post("/job/" + "f" * 600, content=b"x").status_code == 400
        assert server.http.post("/job/reverse", content=b"x" * 5000).status_code == 413
        # Chunked, without a Content-Length: counted as it arrives.
        reply = server.http.post("/job/reverse", content=iter([b"x" * 3000, b"y" * 3000]))
        assert reply.status_code == 413
        assert server.http.get("/job/reverse").status_code == 405
        assert server.http.post("/metrics").status_code == 405
        assert server.http.get("/nothing-here").status_code == 404
        _still_serving(server)
        m = server.metrics()
        assert sample(m, "trigear_jobs_failed_total", function="boom", priority="normal") == 1
        assert sample(m, "trigear_protocol_errors_total") == 0
        assert "Traceback" not in server.log_text()


def test_a_client_leaving_mid_request_cancels_its_submit() -> None:
    with http_server() as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /job/left HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"X-Gearman-Timeout: 300\r\n\r\nhi"
            )
            wait_until(lambda: (server.function("left") or {}).get("queued") == 1, what="queued")
        # The HTTP client is gone: its foreground job goes as for a Gearman client (S12).
        wait_until(lambda: (server.function("left") or {}).get("queued") == 0, what="dropped")
        assert server.status()["server"]["jobs"] == 0
        # A background submit outlives its HTTP client, as over Gearman.
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /job/stays HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"X-Gearman-Background: true\r\n\r\nhi"
            )
            assert b"202" in sock.recv(4096).split(b"\r\n")[0]
        assert (server.function("stays") or {}).get("queued") == 1


def test_the_acl_applies_to_http_submits(tmp_path: Path) -> None:
    acl = tmp_path / "acl.toml"
    acl.write_text('[identity.loopback]\nsubmit = ["allowed"]\nadmin = ["*"]\n')
    with http_server("--acl", str(acl)) as server:
        reply = server.http.post("/job/refused", content=b"x", headers=_bg())
        assert reply.status_code == 403
        assert "PERMISSION_DENIED" in reply.text
        reply = server.http.post("/job/allowed", content=b"x", headers=_bg())
        assert reply.status_code == 202


def test_while_draining_submits_get_503_and_metrics_still_answer() -> None:
    with http_server("--shutdown-timeout", "20") as server, running(_worker(server.address)):
        reply = server.http.post("/job/slow", content=b"3", headers=_bg())
        assert reply.status_code == 202
        wait_until(lambda: (server.function("slow") or {}).get("running") == 1, what="running")
        server.proc.terminate()  # SIGTERM: a graceful drain (S21)
        wait_until(lambda: sample(server.metrics(), "trigear_draining") == 1, what="draining shown")
        reply = server.http.post("/job/reverse", content=b"x")
        assert reply.status_code == 503
        assert "shutting down" in reply.text
        assert server.proc.wait(30) == 0
