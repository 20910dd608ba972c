"""What every ``trigear`` command shares: its argument parser, server flags, exit rules.

The rules every command keeps (``docs/operations.md`` lists the statuses):

* A user mistake -- a bad or missing flag, a server address that does not parse or that
  nothing answers on -- prints *one* line on stderr, ``trigear CMD: what is wrong``, and
  exits with status 2.  argparse's own errors go through :class:`Parser`, which prints
  the same one line instead of the usage block.
* Nothing the user can cause prints a traceback; Ctrl-C outside a command's own signal
  handling exits 130 with one line, as shells expect.
* The client commands run their anyio code on Trio (:func:`run`).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Sequence

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "add_server_flag",
    "client_tls",
    "run",
    "servers",
]

EXIT_OK = 0
#: The command ran, but what it did failed (a job failed, a server answered ERR).
EXIT_FAILED = 1
#: A user mistake: bad flags, no server to talk to.
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (128 + SIGINT), where the command does not drain.
EXIT_INTERRUPTED = 130

DEFAULT_SERVER = "127.0.0.1:4730"


class UsageError(Exception):
    """A mistake in the command line or its servers: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``trigear submit: ...``), status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def add_server_flag(parser: argparse.ArgumentParser) -> None:
    """``-s HOST:PORT``, and the TLS flags that say how to reach those servers."""
    parser.add_argument(
        "-s",
        "--server",
        action="append",
        metavar="HOST:PORT",
        help=(
            f"a Gearman server; repeat for several (default {DEFAULT_SERVER}). IPv6 as [::1]:4730"
        ),
    )
    tls = parser.add_argument_group("TLS (docs/security.md)")
    tls.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS, trusting the system's CAs (implied by the other --tls flags)",
    )
    tls.add_argument(
        "--tls-ca", metavar="PATH", help="connect with TLS, trusting this CA (PEM) for servers"
    )
    tls.add_argument(
        "--tls-cert",
        metavar="PATH",
        help="this side's certificate (PEM), for servers that require one (mutual TLS)",
    )
    tls.add_argument(
        "--tls-key",
        metavar="PATH",
        help="its private key (PEM; default: in the --tls-cert file)",
    )


def client_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context the ``--tls*`` flags ask for, or None (a bad file is a
    :class:`UsageError`)."""
    import ssl

    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return None
    if args.tls_key and not args.tls_cert:
        raise UsageError("--tls-key needs --tls-cert")
    try:
        context = ssl.create_default_context(cafile=args.tls_ca)
        if args.tls_cert:
            context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot use the TLS files: {exc}") from None
    return context


def servers(args: argparse.Namespace) -> tuple[str, ...]:
    """The ``-s`` addresses, checked (a bad one is a :class:`UsageError`)."""
    from ..client.placement import parse_address, parse_addresses

    given = tuple(args.server or (DEFAULT_SERVER,))
    try:
        addresses = parse_addresses(given)
    except ValueError as exc:
        raise UsageError(f"-s: {exc}") from None
    for text, address in zip(given, addresses, strict=True):
        # What does not read back as itself was not an address ("a:b]" as an IPv6 host).
        try:
            same = parse_address(str(address)) == address
        except ValueError:
            same = False
        if not same:
            raise UsageError(f"-s: not a server address: {text!r}")
    return tuple(str(a) for a in addresses)


def fail(prog: str, message: str, status: int = EXIT_USAGE) -> NoReturn:
    sys.stderr.write(f"{prog}: {message}\n")
    sys.stderr.flush()
    raise SystemExit(status)


def run(prog: str, func: Callable[..., Awaitable[int]], *args: Any) -> NoReturn:
    """Run ``func(*args)`` on Trio and exit with the status it returns.

    :class:`UsageError` becomes one line and status 2; Ctrl-C one line and status 130.
    """
    import anyio

    try:
        status = anyio.run(func, *args, backend="trio")
    except UsageError as exc:
        fail(prog, str(exc))
    except KeyboardInterrupt:
        fail(prog, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader of our output went away (``trigear admin status | head -1``).
        sys.stderr.close()
        raise SystemExit(EXIT_FAILED) from None
    raise SystemExit(status)


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``ARGS -- COMMAND...`` at the first ``--``."""
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []
