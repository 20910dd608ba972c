"""A worker cut off silently, run inside a network namespace of its own (as root).

Run as ``unshare --net -- python keepalive_cut.py DEADLINE [server flags...]``.  In the
new namespace: a trigear server on 0.0.0.0:4730, a client on loopback, and a worker in a
second namespace joined by a veth pair.  The worker grabs the client's job and goes
silent; then its end of the veth goes down, so nothing it sent or would send arrives,
and no FIN or RST either: its host has vanished, as far as the server can tell.  A
second worker on loopback polls for the job.  Prints one JSON line: how long after the
cut the client got the job's result (null: not within DEADLINE seconds).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time

PORT = 4730
SERVER_IP = "10.213.0.1"
WORKER_IP = "10.213.0.2"

WORKER = f"""
import socket, struct, sys, time
def pkt(t, body): return b"\\0REQ" + struct.pack(">II", t, len(body)) + body
sys.stdin.readline()
s = socket.create_connection(("{SERVER_IP}", {PORT}), timeout=10)
s.sendall(pkt(1, b"f"))
while True:
    s.sendall(pkt(9, b""))
    head = s.recv(12, socket.MSG_WAITALL)
    t, n = struct.unpack(">II", head[4:])
    body = s.recv(n, socket.MSG_WAITALL) if n else b""
    if t == 11:
        print("assigned", flush=True)
        break
    time.sleep(0.1)
time.sleep(3600)
"""


def pkt(t: int, body: bytes) -> bytes:
    return b"\0REQ" + struct.pack(">II", t, len(body)) + body


def recv_packet(s: socket.socket) -> tuple[int, bytes]:
    head = s.recv(12, socket.MSG_WAITALL)
    if len(head) < 12:
        raise EOFError
    t, n = struct.unpack(">II", head[4:])
    return t, s.recv(n, socket.MSG_WAITALL) if n else b""


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def main() -> None:
    deadline = float(sys.argv[1])
    run("ip", "link", "set", "lo", "up")
    run("ip", "link", "add", "ka0", "type", "veth", "peer", "name", "ka1")
    run("ip", "addr", "add", f"{SERVER_IP}/24", "dev", "ka0")
    run("ip", "link", "set", "ka0", "up")
    server = subprocess.Popen(
        [sys.executable, "-m", "trigear", "-p", str(PORT), "-L", "0.0.0.0", *sys.argv[2:]],
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        ["unshare", "--net", "--", sys.executable, "-c", WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wpid = str(worker.pid)
        # unshare makes the worker's namespace, then runs python: wait for the first.
        ours = os.readlink("/proc/self/ns/net")
        for _ in range(500):
            if os.readlink(f"/proc/{wpid}/ns/net") != ours:
                break
            time.sleep(0.01)
        run("ip", "link", "set", "ka1", "netns", wpid)
        run("nsenter", "-t", wpid, "-n", "ip", "addr", "add", f"{WORKER_IP}/24", "dev", "ka1")
        run("nsenter", "-t", wpid, "-n", "ip", "link", "set", "ka1", "up")
        for _ in range(100):
            try:
                client = socket.create_connection(("127.0.0.1", PORT), timeout=60)
                break
            except OSError:
                time.sleep(0.1)
        client.sendall(pkt(7, b"f\0\0payload"))
        t, handle = recv_packet(client)
        assert t == 8, t
        assert worker.stdin is not None
        assert worker.stdout is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "assigned"
        run("nsenter", "-t", wpid, "-n", "ip", "link", "set", "ka1", "down")
        cut = time.monotonic()
        other = socket.create_connection(("127.0.0.1", PORT), timeout=60)
        other.sendall(pkt(1, b"f"))
        recovered = None
        while time.monotonic() - cut < deadline:
            other.sendall(pkt(9, b""))
            t, body = recv_packet(other)
            if t == 11:
                assert body.startswith(handle + b"\0"), body
                other.sendall(pkt(13, handle + b"\0done"))
                t, body = recv_packet(client)
                assert t == 13, t
                assert body == handle + b"\0done", body
                recovered = round(time.monotonic() - cut, 2)
                break
            time.sleep(0.2)
        print(json.dumps({"recovered_after": recovered}), flush=True)
    finally:
        worker.kill()
        server.kill()
        worker.wait()
        server.wait()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
