"""``trigear admin``: the admin protocol (spec section 3) as tables, JSON, or a live view.

Every command of the spec, against one server or several (``-s``, repeatable): each
server is asked in turn and the answers are shown as one table (with a *server* column
when there are several) or, with ``--json``, as a JSON list with one object per server.
The spec's spellings work as well as the dashed ones: ``show jobs`` is ``show-jobs``,
``cancel job H`` is ``cancel-job H``.  ``trigear admin top`` is the live view
(:mod:`.top`).

Exit status: 0 when every server answered OK; 1 when a server answered ``ERR``, broke
off, or did not answer within ``--timeout`` (the other servers' answers are still
shown); 2 for a usage mistake, or when no server could be reached at all.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ..client import ConnectionLost, NoServerAvailable, ServerError
from ..client.admin import AdminClient
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_server_flag,
    client_tls,
    run,
    servers,
)
from ._tables import LISTINGS, render_listing, to_json

if TYPE_CHECKING:
    import argparse
    import ssl
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]

PROG = "trigear admin"

#: The spec's two-word commands -> this command line's names.
_SPELLINGS = {
    ("show", "jobs"): "show-jobs",
    ("show", "unique"): "show-unique-jobs",
    ("cancel", "job"): "cancel-job",
    ("create", "function"): "create-function",
    ("drop", "function"): "drop-function",
}


def build_parser() -> Parser:
    """The flags and commands of ``trigear admin``."""
    p = Parser(
        prog=PROG,
        description="Ask Gearman servers (trigear, gearmand, ...) what they hold, or change it.",
        epilog=(
            "Exit status: 0 every server answered OK; 1 a server answered ERR, broke off or "
            "timed out; 2 a usage mistake, or no server reachable."
        ),
    )
    add_server_flag(p)
    p.add_argument("--json", action="store_true", help="JSON for scripts instead of tables")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for each server's answer (default 10)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    sub.add_parser("status", help="jobs (queued + running), running, workers per function")
    sub.add_parser(
        "prioritystatus",
        aliases=["priority-status"],
        help="queued jobs per priority, workers per function",
    )
    sub.add_parser("workers", help="every connection and the functions it can do")
    sub.add_parser("show-jobs", help="every job: handle, retries, ignore, persisted")
    sub.add_parser("show-unique-jobs", help="the unique of every job")
    c = sub.add_parser("cancel-job", help="remove a queued job")
    c.add_argument("handle")
    c = sub.add_parser("create-function", help="list a function before any worker has it")
    c.add_argument("function")
    c = sub.add_parser("drop-function", help="forget a function no worker or job uses")
    c.add_argument("function")
    c = sub.add_parser(
        "maxqueue", help="limit a function's queue: no size (unlimited), N, or H N L"
    )
    c.add_argument("function")
    c.add_argument("sizes", nargs="*", type=int, metavar="SIZE")
    sub.add_parser("getpid", help="the server's process id")
    sub.add_parser("verbose", help="the server's log level")
    sub.add_parser("version", help="the server's version")
    c = sub.add_parser("shutdown", help="stop the server (trigear: from loopback only)")
    c.add_argument("--graceful", action="store_true", help="let running jobs finish first")
    c = sub.add_parser("top", help="a live full-screen view of queues, jobs and workers")
    c.add_argument(
        "-i",
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="time between refreshes (default 1)",
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


def normalise(argv: Sequence[str]) -> list[str]:
    """Join the spec's two-word commands (``show jobs``) into this parser's names."""
    args = list(argv)
    i = 0
    while i < len(args):
        word = args[i]
        if word in ("-s", "--server", "--timeout", "--tls-ca", "--tls-cert", "--tls-key"):
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        key = (word.lower(), args[i + 1].lower() if i + 1 < len(args) else "")
        name = _SPELLINGS.get(key)
        if name is None:
            return args
        drop = (
            3 if name == "show-unique-jobs" and i + 2 < len(args) and args[i + 2] == "jobs" else 2
        )
        return [*args[:i], name, *args[i + drop :]]
    return args


def main(argv: Sequence[str]) -> None:
    """Run ``trigear admin ARGV``; exits with the status described above."""
    parser = build_parser()
    args = parser.parse_args(normalise(argv))
    try:
        addresses = servers(args)
        tls = client_tls(args)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"{PROG}: {exc}\n")
    if args.command == "maxqueue" and len(args.sizes) not in (0, 1, 3):
        parser.error("maxqueue takes no size, one size, or three (HIGH NORMAL LOW)")
    if args.command == "top":
        from .top import top

        run(PROG, top, addresses, args.interval, args.timeout, tls)
    run(PROG, _ask_all, args, addresses, tls)


async def _ask(client: AdminClient, args: argparse.Namespace) -> Any:
    """One server's answer to the command: rows, a value, or None for a bare OK."""
    cmd = args.command
    if cmd == "status":
        return await client.status()
    if cmd in ("prioritystatus", "priority-status"):
        return await client.prioritystatus()
    if cmd == "workers":
        return await client.workers()
    if cmd == "show-jobs":
        return await client.show_jobs()
    if cmd == "show-unique-jobs":
        return await client.show_unique_jobs()
    if cmd == "cancel-job":
        return await client.cancel_job(args.handle)
    if cmd == "create-function":
        return await client.create_function(args.function)
    if cmd == "drop-function":
        return await client.drop_function(args.function)
    if cmd == "maxqueue":
        return await client.maxqueue(args.function, *args.sizes)
    if cmd == "getpid":
        return await client.getpid()
    if cmd == "verbose":
        return await client.verbose()
    if cmd == "version":
        return await client.version()
    assert cmd == "shutdown"
    return await client.shutdown(graceful=args.graceful)


async def _ask_all(
    args: argparse.Namespace, addresses: tuple[str, ...], tls: ssl.SSLContext | None
) -> int:
    answers: list[tuple[str, Any, str | None]] = []
    unreachable = 0
    for address in addresses:
        client = AdminClient(address, ssl_context=tls)
        error: str | None = None
        value: Any = None
        try:
            with anyio.fail_after(args.timeout):
                value = await _ask(client, args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except NoServerAvailable as exc:
            unreachable += 1
            error = str(exc)
        except ServerError as exc:
            error = _err_text(exc)
        except ConnectionLost as exc:
            error = str(exc)
        except TimeoutError:
            error = f"{address}: no answer within {args.timeout:g} s"
        finally:
            await client.aclose()
        answers.append((address, value, error))
    command = "prioritystatus" if args.command == "priority-status" else args.command
    if args.json:
        print(json.dumps([to_json(command, a, v, e) for a, v, e in answers], indent=2))
    else:
        _print_human(command, answers)
    if unreachable == len(addresses):
        return EXIT_USAGE
    return EXIT_FAILED if any(e is not None for _, _, e in answers) else EXIT_OK


def _err_text(exc: ServerError) -> str:
    code = exc.code.decode(errors="replace")
    text = exc.text.decode(errors="replace")
    return f"ERR {code} {text}".replace("  ", " ").strip() if code else f"ERR {text}"


def _print_human(command: str, answers: list[tuple[str, Any, str | None]]) -> None:
    from rich.console import Console

    out = Console(width=None if sys.stdout.isatty() else 4096, highlight=False)
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 4096)
    several = len(answers) > 1
    for address, _, error in answers:
        if error is not None:
            err.print(
                f"{PROG}: {address}: {error}" if address not in error else f"{PROG}: {error}",
                markup=False,
            )
    good = [(a, v) for a, v, e in answers if e is None]
    if command in LISTINGS:
        if good:
            out.print(render_listing(command, good, several))
        return
    for address, value in good:
        text = "OK" if value is None else str(value)
        out.print(f"{address}: {text}" if several else text, markup=False)
