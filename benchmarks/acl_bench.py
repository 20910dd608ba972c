"""What the access checks cost the dispatcher: jobs per second through
``Dispatcher.handle`` with no ACL, and with one whose rules match every packet.

Not a test: run it and read the figures (docs/security.md, "What the checks cost").

    python benchmarks/acl_bench.py [--jobs 200000] [--repeat 7]

Each job is the packets a server handles for it, fed straight to the dispatcher (no
sockets, no trio): SUBMIT_JOB_BG from a client, GRAB_JOB_UNIQ and WORK_COMPLETE from a
worker, and a GET_STATUS.  The best of ``--repeat`` runs is printed for each setting,
timed in CPU time (``time.process_time``) so that other load on the machine disturbs it
less.
Run it with an older checkout's Python too (one without ACL support) to compare the
"no ACL" line against code that had no checks at all: the script skips the ACL line
there.
"""

from __future__ import annotations

import argparse
import json
import time

from trigear.protocol.packets import (
    CanDo,
    GetStatus,
    GrabJobUniq,
    SubmitJobBg,
    WorkComplete,
)
from trigear.server.config import ServerConfig
from trigear.server.dispatcher import Dispatcher
from trigear.server.state import Peer

RULES = """
[identity.client]
submit = ["resize", "thumbnail-*"]
admin = ["read"]

[identity.worker]
register = ["resize", "thumbnail-*"]
"""


def run(jobs: int, acl: object | None) -> float:
    d = Dispatcher(ServerConfig(job_handle_prefix="b"))
    if acl is not None:
        d.set_acl(acl)  # type: ignore[attr-defined]
    client = Peer(1, 1, "127.0.0.1", True, ("client",)) if acl is not None else Peer(1, 1, "x")
    worker = Peer(2, 2, "127.0.0.1", True, ("worker",)) if acl is not None else Peer(2, 2, "x")
    d.connect(client)
    d.connect(worker)
    handle = d.handle
    handle(worker, CanDo(b"resize"))
    submit = SubmitJobBg(b"resize", b"", b"x" * 64)
    grab = GrabJobUniq()
    start = time.process_time()
    for _ in range(jobs):
        handle(client, submit)
        handle(worker, grab)
        job_handle = next(reversed(d.jobs))  # the job just submitted
        handle(client, GetStatus(job_handle))
        handle(worker, WorkComplete(job_handle, b"done"))
        client.out.clear()
        worker.out.clear()
        d.take_output()
    elapsed = time.process_time() - start
    assert not d.jobs
    return jobs / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    settings: dict[str, object | None] = {"no ACL": None}
    if hasattr(Dispatcher, "set_acl"):
        from trigear.server.acl import Acl

        settings["ACL"] = Acl.from_toml(RULES)
    best = {name: 0.0 for name in settings}
    for _ in range(a.repeat):
        for name, acl in settings.items():  # interleaved, so both see the same machine
            best[name] = max(best[name], run(a.jobs, acl))
    for name, rate in best.items():
        print(f"{name:7s} {rate:10.0f} jobs/s through the dispatcher")
    print(json.dumps({"jobs": a.jobs, **best}))


if __name__ == "__main__":
    main()
