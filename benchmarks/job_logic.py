"""The job logic alone: what a background job costs the server without sockets or Trio.

    python benchmarks/job_logic.py [--jobs 200000]

Drives the dispatcher directly, as the dispatcher task would: a client's SUBMIT_JOB_BGs
arrive as wire bytes in batches of 200 (the bg workload of bench-vs-gearmand) and are
decoded by a server decoder; a worker grabs with GRAB_JOB_UNIQ and answers each
JOB_ASSIGN_UNIQ with WORK_COMPLETE and the next GRAB_JOB_UNIQ in one read.  Decoding,
dispatching and encoding the replies are all counted (and encoding the worker's
requests, a small part); reading and writing sockets, and Trio, are not.  Set against
the server's CPU per job (benchmarks/cpu_per_job.py), it says how much of that is
trigear's own job logic.
"""

from __future__ import annotations

import argparse
import time

import trigear
from trigear.protocol import Decoder, Role
from trigear.protocol.encoder import encode_request
from trigear.protocol.packets import CanDo, GrabJobUniq, SubmitJobBg, WorkComplete
from trigear.server.dispatcher import Dispatcher
from trigear.server.state import Peer

BATCH = 200


def run(jobs: int) -> float:
    """Seconds for ``jobs`` background jobs, submitted and completed."""
    d = Dispatcher()
    client, worker = Peer(1, 5, "127.0.0.1"), Peer(2, 6, "127.0.0.1")
    d.connect(client)
    d.connect(worker)
    d.handle(worker, CanDo(b"f"))
    submits = encode_request(SubmitJobBg(b"f", b"", b"x" * 64)) * BATCH
    grab = encode_request(GrabJobUniq())
    from_client, from_worker = Decoder(Role.SERVER), Decoder(Role.SERVER)
    start = time.perf_counter()
    for _ in range(jobs // BATCH):
        from_client.receive_data(submits)
        for event in from_client.receive_events():
            d.handle(client, event)
        client.out.clear()
        d.handle(worker, GrabJobUniq())
        for _ in range(BATCH):
            assign = worker.out[-1]
            worker.out.clear()
            d.take_output()
            handle = assign[12 : assign.index(b"\0", 12)]
            from_worker.receive_data(encode_request(WorkComplete(handle, b"")) + grab)
            for event in from_worker.receive_events():
                d.handle(worker, event)
        worker.out.clear()
        d.take_output()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=200_000)
    a = ap.parse_args()
    jobs = a.jobs // BATCH * BATCH
    kind = "compiled" if trigear.compiled else "pure Python"
    print(f"trigear {kind}: {run(jobs) / jobs * 1e6:.1f} us per background job")


if __name__ == "__main__":
    main()
