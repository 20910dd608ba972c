"""Helpers for the real-peer interop tests: server processes, CLI runs, raw sockets.

Every wait here is bounded: subprocesses get a timeout, sockets a timeout, polls a
deadline.  Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from ..peers import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

HOST = "127.0.0.1"
GEARMAND = "/usr/sbin/gearmand"
#: Seconds any one CLI run may take.
RUN_TIMEOUT = 15.0
#: Seconds a server may take to start listening.
START_TIMEOUT = 15.0


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    """Wait until something accepts on ``port``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listening on {HOST}:{port} after {timeout}s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, wait (bounded), SIGKILL if need be; return the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
            raise AssertionError(f"{proc.args!r} ignored SIGTERM for {timeout}s") from None
    return proc.wait(timeout)


@dataclass
class ServerProc:
    """A job server running in its own process."""

    kind: str  # "trigear" or "gearmand"
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_trigear(tmp: Path, *args: str) -> ServerProc:
    port = free_port()
    log = tmp / f"trigear-{port}.stderr"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trigear", "-p", str(port), "--shutdown-timeout", "5", *args],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    server = ServerProc("trigear", port, proc, log)
    try:
        wait_port(port, proc)
    except BaseException:
        stop(proc)
        raise
    return server


def start_gearmand(tmp: Path, binary: str, *args: str) -> ServerProc:
    port = free_port()
    log = tmp / f"gearmand-{port}.log"
    pidfile = tmp / f"gearmand-{port}.pid"
    proc = subprocess.Popen(
        [binary, "-p", str(port), "-L", HOST, "-l", str(log), "-P", str(pidfile), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = ServerProc("gearmand", port, proc, log)
    try:
        wait_port(port, proc)
    except BaseException:
        stop(proc)
        raise
    return server


# --- running the CLIs -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one CLI run printed."""

    stdout: bytes
    stderr: bytes
    rc: int


def run(argv: Sequence[str], stdin: bytes = b"", timeout: float = RUN_TIMEOUT) -> Run:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout)
    return Run(done.stdout, done.stderr, done.returncode)


def gearadmin(port: int, *args: str) -> Run:
    return run(["gearadmin", "-h", HOST, "-p", str(port), *args])


def gearman(port: int, *args: str, stdin: bytes = b"") -> Run:
    return run(["gearman", "-h", HOST, "-p", str(port), *args], stdin=stdin)


@dataclass
class CliWorker:
    """A ``gearman -w`` worker process."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    result: Run | None = field(default=None)

    def finish(self, timeout: float = RUN_TIMEOUT) -> Run:
        """Wait for a worker that exits by itself (``-c N``)."""
        rc = self.proc.wait(timeout)
        self.result = Run(self.out.read_bytes(), self.err.read_bytes(), rc)
        return self.result


@contextmanager
def cli_worker(tmp: Path, port: int, *args: str) -> Iterator[CliWorker]:
    """Run ``gearman -w ARGS`` for the duration of the block (terminated after it)."""
    n = len(list(tmp.glob("worker-*.out")))
    out, err = tmp / f"worker-{n}.out", tmp / f"worker-{n}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            ["gearman", "-h", HOST, "-p", str(port), "-w", *args],
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
        )
    w = CliWorker(proc, out, err)
    try:
        yield w
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(RUN_TIMEOUT)


# --- raw sockets ------------------------------------------------------------------------


def req(ptype: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return b"\0REQ" + struct.pack(">II", ptype, len(body)) + body


def res(ptype: int, *args: bytes) -> bytes:
    body = b"\0".join(args)
    return b"\0RES" + struct.pack(">II", ptype, len(body)) + body


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes: {buf!r}")
        buf += chunk
    return buf


def recv_packet(sock: socket.socket) -> tuple[int, bytes]:
    """One binary reply: (type, body)."""
    head = recv_exact(sock, 12)
    assert head[:4] == b"\0RES", head
    ptype, size = struct.unpack(">II", head[4:])
    return ptype, recv_exact(sock, size)


def read_admin_reply(f: BinaryIO) -> bytes:
    """One admin reply from a buffered socket file: an ``OK``/``ERR`` line, or a listing
    up to its ``.`` line."""
    reply = f.readline()
    if reply.startswith((b"OK", b"ERR")) or reply == b".\n":
        if not reply.endswith(b"\n"):
            raise EOFError(f"closed after {reply!r}")
        return reply
    while True:
        line = f.readline()
        if not line.endswith(b"\n"):
            raise EOFError(f"closed after {reply + line!r}")
        reply += line
        if line == b".\n":
            return reply


def admin(port: int, line: bytes) -> bytes:
    """One admin command on its own connection; a listing is read to its ``.`` line."""
    with connect(port) as s, s.makefile("rb") as f:
        s.sendall(line + b"\n")
        return read_admin_reply(f)


def is_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout`` without more data."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return data == b""


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def status_rows(port: int) -> dict[str, list[int]]:
    out = admin(port, b"status").decode()
    rows = {}
    for line in out.splitlines():
        if line == ".":
            break
        name, *nums = line.split("\t")
        rows[name] = [int(n) for n in nums]
    return rows


def wait_workers(port: int, function: str, n: int, timeout: float = 10.0) -> None:
    """Wait until ``status`` shows exactly ``n`` workers for ``function``."""
    wait_until(
        lambda: status_rows(port).get(function, [0, 0, 0])[2] == n,
        timeout,
        f"{n} worker(s) for {function!r} on port {port}",
    )


def wait_connections(port: int, n: int, timeout: float = 10.0) -> None:
    """Wait until ``workers`` lists exactly ``n`` connections besides the asking one,
    so a listing taken next is not raced by a connection still closing."""
    wait_until(
        lambda: admin(port, b"workers").count(b"\n") - 2 == n,
        timeout,
        f"{n} other connection(s) on port {port}",
    )


# --- normalising ------------------------------------------------------------------------

_HANDLE = re.compile(rb"H:[^:\s]+:(\d+)")
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def handle_numbers(blobs: Sequence[bytes]) -> dict[bytes, bytes]:
    """Each handle seen in ``blobs`` -> ``H:<n>``, n its rank by number.

    S17: trigear numbers handles from a start that never repeats across restarts, gearmand
    from 1; both count up in submit order, so the rank of a handle is the same on both.
    """
    seen = sorted({int(m.group(1)) for b in blobs for m in _HANDLE.finditer(b)})
    rank = {str(n).encode(): b"H:#%d" % (i + 1) for i, n in enumerate(seen)}
    return rank


def norm_handles(blob: bytes, ranks: dict[bytes, bytes]) -> bytes:
    return _HANDLE.sub(lambda m: ranks[m.group(1)], blob)


def norm_uuids(blob: bytes) -> bytes:
    """The gearman CLI makes a fresh UUID unique for every submit without ``-u``."""
    return _UUID.sub(b"<uuid>", blob)


def sort_listing(blob: bytes) -> bytes:
    """Sort a listing's lines (keeping the final ``.``): the order is gearmand's hash
    order, which no client may rely on."""
    lines = blob.split(b"\n")
    if lines[-2:] == [b".", b""]:
        return b"".join(line + b"\n" for line in sorted(lines[:-2])) + b".\n"
    return blob
