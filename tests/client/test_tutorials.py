"""The tutorials of docs/client.md and docs/worker.md run as written (only the server's
port is changed, to a trigear server of the test's own)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

import trigear

DOCS = Path(__file__).resolve().parents[2] / "docs"


def tutorial(page: str) -> str:
    text = (DOCS / page).read_text()
    section = text.split("## Tutorial", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block in the tutorial of {page}"
    return match.group(1)


def write(tmp_path: Path, page: str, server: Any) -> Path:
    code = tutorial(page).replace("127.0.0.1:4730", server.address)
    assert server.address in code
    path = tmp_path / page.replace(".md", ".py")
    path.write_text(code)
    return path


def test_client_tutorial_runs_as_written(tmp_path: Path, make_server: Any) -> None:
    server = make_server("trigear")
    script = write(tmp_path, "client.md", server)
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for expected in (
        "b'olleh'",
        "b'cba'",
        "StatusUpdate",
        "DataUpdate",
        "b'enecs'",
        "b'ValueError: cannot do this'",
        "b'ping'",
    ):
        assert expected in out, (expected, out)


def test_worker_tutorial_serves_then_stops_on_sigint(tmp_path: Path, make_server: Any) -> None:
    server = make_server("trigear")
    script = write(tmp_path, "worker.md", server)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:

        async def use_it() -> tuple[bytes, bytes]:
            with trio.fail_after(30):
                async with trigear.open_client(server.address) as client:
                    # A foreground submit waits until the worker has registered.
                    return (
                        await client.submit("resize", b"hello"),
                        await client.submit("checksum", b"abc"),
                    )

        resized, checksum = trio.run(use_it)
        assert resized == b"olleh"
        assert checksum == b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
