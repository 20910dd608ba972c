"""``trigear submit``: a Gearman client on the command line (what ``gearman`` does).

Jobs come from the arguments (each one a job, as with ``gearman``), or from standard
input (all of it one job, or with ``-n`` one job per line).  Foreground jobs stream their
WORK_DATA to standard output as it arrives, then their result; background jobs print
their handle.  Jobs run one after another, in order, so the output is in input order.

Exit status: 0 when every job completed (or was queued, with ``-b``); 1 when any job
failed (WORK_FAIL), raised (WORK_EXCEPTION), was refused by its server (ERROR), lost its
server after being accepted, or ran past ``--timeout`` -- each reported on standard error,
and the remaining jobs still run; 2 for a usage mistake or when no server can be
reached; 130 on Ctrl-C.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import TYPE_CHECKING

import anyio

from ..client import (
    ConnectionLost,
    DataUpdate,
    JobException,
    JobFailed,
    NoServerAvailable,
    ServerError,
    StatusUpdate,
    open_client,
)
from ..protocol.packets import Priority
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    Parser,
    UsageError,
    add_server_flag,
    client_tls,
    fail,
    run,
    servers,
)
from ._output import Output

if TYPE_CHECKING:
    import argparse
    import ssl
    from collections.abc import Sequence

    from ..client import Client

__all__ = ["build_parser", "main"]

PROG = "trigear submit"


def build_parser() -> Parser:
    """The flags of ``trigear submit``."""
    p = Parser(
        prog=PROG,
        description=(
            "Submit jobs to Gearman servers and print their results. Each DATA argument "
            "is one job; with none, standard input is (one job, or one per line with -n)."
        ),
        epilog=(
            "Exit status: 0 every job completed (or was queued, with -b); 1 a job failed, "
            "raised an exception, was refused, lost its server or timed out; 2 a usage "
            "mistake or no server reachable; 130 interrupted."
        ),
    )
    p.add_argument("data", nargs="*", metavar="DATA", help="the payload of a job")
    p.add_argument("-f", "--function", required=True, help="the function to run")
    p.add_argument(
        "-n",
        "--lines",
        action="store_true",
        help="one job per line (line ending removed); each result printed on its own line",
    )
    p.add_argument(
        "-b",
        "--background",
        action="store_true",
        help="queue the jobs and print their handles, without waiting for them",
    )
    prio = p.add_mutually_exclusive_group()
    prio.add_argument("-I", "--high", action="store_true", help="high priority")
    prio.add_argument("-L", "--low", action="store_true", help="low priority")
    p.add_argument("-u", "--unique", help="the unique id (equal ids coalesce into one job)")
    add_server_flag(p)
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="give up on a job after this long (it may still run; exit status 1)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar, even on a terminal",
    )
    return p


def _seconds(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _jobs(args: argparse.Namespace) -> list[tuple[str, bytes]]:
    """(label, payload) per job, in order; the label names it in messages."""
    if args.data:
        sources = [(f"argument {i}", a.encode()) for i, a in enumerate(args.data, 1)]
    else:
        sources = [("", sys.stdin.buffer.read())]
    if not args.lines:
        if len(sources) == 1:
            return [("", sources[0][1])]
        return sources
    jobs = []
    n = 0
    for _, text in sources:
        for line in text.splitlines():
            n += 1
            jobs.append((f"line {n}", line))
    return jobs


def main(argv: Sequence[str]) -> None:
    """Run ``trigear submit ARGV``; exits with the status described above."""
    args = build_parser().parse_args(argv)
    try:
        addresses = servers(args)
        tls = client_tls(args)
    except UsageError as exc:
        fail(PROG, str(exc))
    if args.unique is not None and not args.unique:
        fail(PROG, "-u: the unique id must not be empty")
    jobs = _jobs(args)
    progress = not (args.no_progress or args.background) and sys.stderr.isatty()
    out = Output(PROG, progress=progress, jobs=len(jobs))
    try:
        run(PROG, _submit_all, args, addresses, jobs, out, tls)
    finally:
        out.close()


async def _submit_all(
    args: argparse.Namespace,
    addresses: tuple[str, ...],
    jobs: list[tuple[str, bytes]],
    out: Output,
    tls: ssl.SSLContext | None,
) -> int:
    priority = Priority.HIGH if args.high else Priority.LOW if args.low else Priority.NORMAL
    status = EXIT_OK
    async with open_client(*addresses, ssl_context=tls) as client:
        for label, data in jobs:
            where = f"{label}: " if label else ""
            try:
                with anyio.fail_after(args.timeout) if args.timeout else nullcontext():
                    await _one(client, args, priority, data, out)
            except NoServerAvailable as exc:
                raise UsageError(str(exc)) from None
            except JobException as exc:
                out.message(f"{where}job {_text(exc.handle)} raised: {_text(exc.data)}")
            except JobFailed as exc:
                out.message(f"{where}job {_text(exc.handle)} failed")
            except ServerError as exc:
                out.message(f"{where}the server refused the job: {_server_error(exc)}")
            except ConnectionLost as exc:
                out.message(f"{where}{exc} (the job may or may not have run)")
            except TimeoutError:
                out.message(f"{where}no result after {args.timeout:g} s (the job may still run)")
            else:
                continue
            status = EXIT_FAILED
            out.job_ended(newline=args.lines)
    return status


async def _one(
    client: Client, args: argparse.Namespace, priority: Priority, data: bytes, out: Output
) -> None:
    if args.background:
        handle = await client.submit_background(
            args.function, data, unique=args.unique, priority=priority
        )
        out.data(handle + b"\n")
        return
    async with client.submit_stream(
        args.function, data, unique=args.unique, priority=priority
    ) as job:
        out.job_started(f"{args.function} {_text(job.handle)}")
        async for update in job:
            if isinstance(update, DataUpdate):
                out.data(update.data)
            elif isinstance(update, StatusUpdate):
                out.status(update.numerator, update.denominator)
            else:
                out.message(f"warning from job {_text(job.handle)}: {_text(update.data)}")
        out.data(job.result)
    out.job_ended(newline=args.lines)


def _text(value: bytes) -> str:
    return value.decode(errors="replace")


def _server_error(exc: ServerError) -> str:
    text = _text(exc.text)
    return f"{_text(exc.code)} {text}".strip() if exc.code else text
