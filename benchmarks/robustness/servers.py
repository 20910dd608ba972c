"""Shared by the robustness benchmarks: start trigear or gearmand side by side, read a
process's memory, and speak just enough raw Gearman to measure (docs/robustness.md)."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

GEARMAND = shutil.which("gearmand") or "/usr/sbin/gearmand"
#: The descriptors the benchmarks raise their own and the servers' limit to.
FDS = 65536


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(FDS, hard)) if hard != resource.RLIM_INFINITY else FDS
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(name: str, port: int, extra: list[str]) -> list[str]:
    if name == "trigear":
        return [sys.executable, "-m", "trigear", "-p", str(port), "--log-level", "ERROR", *extra]
    return [GEARMAND, "-p", str(port), "-L", "127.0.0.1", "--log-file=none", *extra]


@contextlib.contextmanager
def server(name: str, extra: list[str] | None = None) -> Iterator[tuple[int, int]]:
    """Run server ``name`` ("trigear" or "gearmand"); yield (port, pid)."""
    raise_fd_limit()
    port = free_port()
    proc = subprocess.Popen(
        command(name, port, extra or []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.kill()
        proc.wait()


def rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pkt(ptype: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return b"\0REQ" + struct.pack(">II", ptype, len(body)) + body


def recv_packet(s: socket.socket) -> tuple[int, bytes]:
    head = b""
    while len(head) < 12:
        chunk = s.recv(12 - len(head))
        if not chunk:
            raise EOFError("closed")
        head += chunk
    ptype, n = struct.unpack(">II", head[4:])
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise EOFError("closed")
        body += chunk
    return ptype, body


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


CAN_DO, GRAB_JOB, NO_JOB, JOB_ASSIGN = 1, 9, 10, 11
SUBMIT_JOB, JOB_CREATED, WORK_COMPLETE = 7, 8, 13
ECHO_REQ, ECHO_RES = 16, 17
SUBMIT_JOB_BG, GET_STATUS_UNIQUE, STATUS_RES_UNIQUE = 18, 41, 42


def echo_time(s: socket.socket) -> float:
    start = time.perf_counter()
    s.sendall(pkt(ECHO_REQ, b"ping"))
    ptype, _ = recv_packet(s)
    assert ptype == ECHO_RES, ptype
    return time.perf_counter() - start


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]
