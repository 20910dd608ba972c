"""``trigear work``: serve Gearman functions by running a command for each job (what
``gearman -w`` does).

Each job runs ``COMMAND ARGS...`` with the job's payload on standard input; what the
command writes to standard output is the job's result.  A command that exits non-zero
fails the job with WORK_EXCEPTION, its standard error (the last 8 KiB) and exit status as
the text, so a client sees why.  The command also finds the job in its environment:
``TRIGEAR_FUNCTION``, ``TRIGEAR_HANDLE`` and ``TRIGEAR_UNIQUE``.

* ``--concurrency N`` runs up to N commands at once, across every server.
* The commands run in their own session, so a Ctrl-C at the terminal reaches this
  process only: SIGINT or SIGTERM drains -- no new jobs, the running commands finish and
  report -- then it exits 0.  A second signal stops at once: the running commands are
  killed and their servers requeue the jobs.
* At start every server is tried once: if none answers (or a name does not resolve), that
  is a usage mistake (exit 2).  Once serving, a lost server is reconnected with backoff.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ..client import Job, NoServerAvailable, Worker
from ..client.connection import open_stream
from ..client.placement import parse_address
from ._common import (
    EXIT_OK,
    Parser,
    UsageError,
    add_server_flag,
    client_tls,
    fail,
    run,
    servers,
    split_command,
)

if TYPE_CHECKING:
    import argparse
    import ssl
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]

PROG = "trigear work"
#: The tail of a failed command's stderr that becomes the exception text.
MAX_ERROR_TEXT = 8192
log = logging.getLogger("trigear.work")


def build_parser() -> Parser:
    """The flags of ``trigear work``."""
    p = Parser(
        prog=PROG,
        usage=f"{PROG} -f FUNCTION [options] -- COMMAND [ARGS...]",
        description=(
            "Serve Gearman functions: run COMMAND for each job, the payload on its standard "
            "input, its standard output the result. A non-zero exit fails the job with "
            "its standard error as the exception text."
        ),
        epilog=(
            "SIGINT or SIGTERM drains (running commands finish, then exit 0); a second "
            "signal stops at once. Exit status 2: a usage mistake, or no server answering "
            "at start."
        ),
    )
    p.add_argument(
        "-f",
        "--function",
        action="append",
        required=True,
        help="a function to serve; repeat for several (the command gets TRIGEAR_FUNCTION)",
    )
    add_server_flag(p)
    p.add_argument(
        "-c",
        "--concurrency",
        type=_positive,
        default=1,
        metavar="N",
        help="commands run at once, across all servers (default 1)",
    )
    p.add_argument("--id", metavar="NAME", help="this worker's client id, shown by 'workers'")
    p.add_argument("-v", "--verbose", action="store_true", help="log every job on stderr")
    return p


def _positive(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main(argv: Sequence[str]) -> None:
    """Run ``trigear work ARGV`` until a signal drains it."""
    own, command = split_command(argv)
    parser = build_parser()
    args = parser.parse_args(own)
    if not command:
        parser.error("no command: give it after '--', as in: -f rev -- rev")
    if shutil.which(command[0]) is None:
        fail(PROG, f"command not found or not executable: {command[0]!r}")
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        addresses = servers(args)
        worker = Worker(*addresses, client_id=args.id, ssl_context=client_tls(args))
        handler = _handler(command)
        for name in args.function:
            worker.register(name, handler)
    except ValueError as exc:
        fail(PROG, str(exc))
    except UsageError as exc:
        fail(PROG, str(exc))
    run(PROG, _serve, args, worker, addresses)


def _handler(command: list[str]):  # type: ignore[no-untyped-def]
    async def run_command(job: Job) -> bytes:
        began = time.monotonic()
        env = {
            **os.environ,
            "TRIGEAR_FUNCTION": job.function,
            "TRIGEAR_HANDLE": job.handle.decode(errors="replace"),
            "TRIGEAR_UNIQUE": job.unique.decode(errors="replace"),
        }
        try:
            returncode, stdout, stderr = await _run(command, job.data, env)
        except OSError as exc:
            raise ChildProcessError(f"cannot run {command[0]!r}: {exc}") from None
        took = time.monotonic() - began
        if returncode != 0:
            status = (
                f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
            )
            text = stderr[-MAX_ERROR_TEXT:].decode(errors="replace").strip()
            log.debug("job %s (%s) failed in %.3f s: %s", _h(job), job.function, took, status)
            raise ChildProcessError(f"{text} ({status})" if text else status)
        log.debug(
            "job %s (%s) done in %.3f s, %d bytes out", _h(job), job.function, took, len(stdout)
        )
        return stdout

    return run_command


async def _run(command: list[str], data: bytes, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run ``command`` with ``data`` on its stdin; (exit status, stdout, stderr).

    A command may exit without reading its input (``printf``, ``date``): the unread rest
    is dropped, not an error.  Cancelled, the process is killed.
    """
    out, err = bytearray(), bytearray()
    async with await anyio.open_process(command, env=env, start_new_session=True) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        stdin = proc.stdin

        async def feed() -> None:
            try:
                await stdin.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the command closed its input early
            finally:
                await stdin.aclose()

        async def drain(stream: anyio.abc.ByteReceiveStream, into: bytearray) -> None:
            async for chunk in stream:
                into += chunk

        async with anyio.create_task_group() as tg:
            if data:
                tg.start_soon(feed)
            else:
                await stdin.aclose()
            tg.start_soon(drain, proc.stdout, out)
            tg.start_soon(drain, proc.stderr, err)
        returncode = await proc.wait()
    return returncode, bytes(out), bytes(err)


def _h(job: Job) -> str:
    return job.handle.decode(errors="replace")


async def _reachable(addresses: tuple[str, ...], tls: ssl.SSLContext | None) -> None:
    """Raise :class:`UsageError` unless at least one server accepts a connection (and
    its TLS handshake, with ``tls``)."""
    errors = []
    for text in addresses:
        address = parse_address(text)
        try:
            stream = await open_stream(address, tls)
        except OSError as exc:
            errors.append(f"{address}: cannot connect: {exc}")
            continue
        await stream.aclose()
        return
    raise UsageError(str(NoServerAvailable("no server available: " + "; ".join(errors))))


async def _serve(args: argparse.Namespace, worker: Worker, addresses: tuple[str, ...]) -> int:
    await _reachable(addresses, worker.ssl_context)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:

            async def serve() -> None:
                await worker.run(concurrency=args.concurrency)
                tg.cancel_scope.cancel()

            tg.start_soon(serve)
            names = ", ".join(args.function)
            log.info(
                "serving %s on %s, %d at a time, pid %d",
                names,
                ", ".join(addresses),
                args.concurrency,
                os.getpid(),
            )
            draining = False
            async for signum in signals:
                name = signal.Signals(signum).name
                if draining:
                    log.info("%s: stopping now", name)
                    tg.cancel_scope.cancel()
                    break
                draining = True
                running = worker.statistics().running
                log.info("%s: draining (%d job(s) running)", name, running)
                worker.stop()
    return EXIT_OK
