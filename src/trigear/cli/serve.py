"""``trigear [serve]``: run the job server in the foreground.

``trigear`` with no command, ``python -m trigear`` and ``trigear serve`` all land here.
Flags follow gearmand's where gearmand has one (``-p``, ``-L``, ``--job-retries``,
``--worker-wakeup``, ``-l``, ``-P``), so trigear can stand in for it in scripts.  A user
mistake gets one readable line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import socket
import ssl
import sys
from typing import TYPE_CHECKING

import trio

from .. import compiled
from .._version import __version__
from ..protocol.limits import Limits
from ..server.acl import Acl, AclError
from ..server.config import ListenError, ServerConfig
from ..server.serve import Server
from ..server.tls import TLSListener, server_ssl_context
from ..store.base import StoreError
from ._common import Parser, UsageError
from ._limits import add_limit_flags, limit_config, size_or_zero

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..store.base import Store

__all__ = ["build_parser", "main"]

LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def _int(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{value} is out of range ({bound})")
        return value

    parse.__name__ = "number"
    return parse


def _size(text: str) -> int:
    value = size_or_zero(text)
    if value < 1024:
        raise argparse.ArgumentTypeError(f"{text!r} is too small (at least 1K)")
    return value


def build_parser(prog: str = "trigear serve") -> argparse.ArgumentParser:
    """The server's flags (``trigear --help``)."""
    from . import COMMANDS

    commands = "".join(f"  {name:<8}{what}\n" for name, what in COMMANDS.items())
    p = Parser(
        prog=prog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "A Gearman job server. Serves any Gearman client or worker (libgearman, PHP,\n"
            "Perl, Python, Go, Java) in place of gearmand."
        ),
        epilog=(
            "Signals: SIGTERM, SIGINT or SIGUSR1 drain gracefully (stop accepting and\n"
            "assigning, let running jobs finish, write the store, exit 0); a second\n"
            "signal exits at once.\n\n"
            f"commands (trigear COMMAND --help):\n{commands}"
        ),
    )
    net = p.add_argument_group("listening")
    net.add_argument(
        "-p", "--port", type=_int(0, 65535), default=4730, help="TCP port (default 4730)"
    )
    net.add_argument(
        "-L",
        "--listen",
        action="append",
        metavar="ADDRESS",
        help="address to listen on; repeat for more (IPv6 too). Default 127.0.0.1",
    )
    web = p.add_argument_group("HTTP: metrics, status page, submits (docs/operations.md)")
    web.add_argument(
        "--http",
        metavar="[ADDRESS:]PORT",
        help=(
            "serve Prometheus metrics at /metrics, a live status page at / and job "
            "submits at POST /job/NAME here (address default 127.0.0.1); off by default"
        ),
    )
    web.add_argument(
        "--http-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long an HTTP submit waits for its result unless it says (default 30)",
    )
    web.add_argument(
        "--metrics-functions",
        type=_int(0),
        default=50,
        metavar="N",
        help="functions with a metrics label of their own; the rest are '_other' (default 50)",
    )
    sec = p.add_argument_group("security (docs/security.md)")
    sec.add_argument(
        "--tls-cert",
        metavar="PATH",
        help="serve TLS on every -L address with this certificate chain (PEM)",
    )
    sec.add_argument(
        "--tls-key",
        metavar="PATH",
        help="the certificate's private key (PEM; default: in the --tls-cert file)",
    )
    sec.add_argument(
        "--tls-ca",
        metavar="PATH",
        help="mutual TLS: require a client certificate signed by this CA (PEM)",
    )
    sec.add_argument(
        "--tls-handshake-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="close a connection that has not finished its TLS handshake by then (default 10)",
    )
    sec.add_argument(
        "--plain-listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help=(
            "also listen here without TLS (say 127.0.0.1:4731 for local tools that "
            "cannot speak TLS); repeat for more"
        ),
    )
    sec.add_argument(
        "--acl",
        metavar="PATH",
        help=(
            "access control by identity: a TOML file, or geard's ACL file; SIGHUP reads it again"
        ),
    )
    jobs = p.add_argument_group("jobs")
    jobs.add_argument(
        "--store",
        default="memory",
        metavar="URL",
        help=(
            "where background jobs are kept: memory (default; they die with the process), "
            "sqlite:PATH, or postgresql://..."
        ),
    )
    jobs.add_argument(
        "--name",
        metavar="NAME",
        help=(
            "this server's name in a PostgreSQL store shared with other servers (each"
            " server owns its jobs; a dead server's jobs are adopted by the others); also"
            " the host part of its job handles H:NAME:N"
        ),
    )
    jobs.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help=(
            "with --name: the address clients use for this server, as they list it"
            " (default: the first listening address)"
        ),
    )
    jobs.add_argument(
        "--job-retries",
        type=_int(-1),
        default=-1,
        metavar="N",
        help="re-runs after a worker loses a job: -1 unlimited (default), 0 none",
    )
    jobs.add_argument(
        "--exceptions",
        action="store_true",
        help="send WORK_EXCEPTION to every client, not only those that ask for it",
    )
    jobs.add_argument(
        "--worker-wakeup",
        type=_int(0),
        default=0,
        metavar="N",
        help="sleeping workers woken per new job; 0 wakes every one that can do it",
    )
    jobs.add_argument(
        "--job-handle-prefix",
        metavar="TEXT",
        help="the host part of job handles H:TEXT:N (default: this host's name)",
    )
    jobs.add_argument(
        "--max-packet-size",
        type=_size,
        default=64 * 1024 * 1024,
        metavar="SIZE",
        help="largest packet body accepted, like 64M (default)",
    )
    jobs.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a graceful shutdown waits for running jobs (default 30)",
    )
    jobs.add_argument(
        "--remote-shutdown",
        action="store_true",
        help="accept the admin 'shutdown' command from any address, not only loopback",
    )
    add_limit_flags(p)
    ops = p.add_argument_group("operation")
    ops.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LEVELS,
        help="INFO by default",
    )
    ops.add_argument("-l", "--log-file", metavar="PATH", help="log here instead of stderr")
    ops.add_argument("-P", "--pid-file", metavar="PATH", help="write the process id here")
    build = "compiled with mypyc" if compiled else "pure Python"
    ops.add_argument("--version", action="version", version=f"trigear {__version__} ({build})")
    return p


def _config(args: argparse.Namespace) -> ServerConfig:
    prefix = args.job_handle_prefix
    if args.name is not None:
        if prefix is not None and prefix != args.name:
            raise UsageError("--name is the handle prefix: leave out --job-handle-prefix")
        if not args.name or ":" in args.name or "\0" in args.name or " " in args.name:
            raise UsageError(f"--name {args.name!r} must be non-empty, without ':' or spaces")
        prefix = args.name
    elif args.advertise is not None:
        raise UsageError("--advertise goes with --name")
    elif prefix is None:
        prefix = socket.gethostname()
    if not prefix or ":" in prefix or "\0" in prefix:
        raise UsageError(f"--job-handle-prefix {prefix!r} must be non-empty, without ':'")
    if len(prefix) > 40:
        raise UsageError("--job-handle-prefix must be at most 40 characters")
    if not 0 < args.http_timeout < float("inf"):
        raise UsageError("--http-timeout must be more than 0 seconds")
    return ServerConfig(
        job_retries=args.job_retries,
        exceptions=args.exceptions,
        worker_wakeup=args.worker_wakeup,
        job_handle_prefix=prefix,
        limits=Limits(max_body=args.max_packet_size),
        shutdown_timeout=args.shutdown_timeout,
        remote_shutdown=args.remote_shutdown,
        log_level=args.log_level,
        handshake_timeout=args.tls_handshake_timeout,
        http=_http(args.http),
        http_timeout=args.http_timeout,
        metrics_functions=args.metrics_functions,
        **limit_config(args),
    )


def _http(text: str | None) -> tuple[str, int] | None:
    """``--http``: ``PORT`` (on loopback), ``ADDRESS:PORT`` or ``[IPv6]:PORT``."""
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--http: {text!r} is not PORT or ADDRESS:PORT")
    for module in ("hypercorn", "prometheus_client"):
        if importlib.util.find_spec(module) is None:
            raise UsageError("--http needs the HTTP extra: pip install 'trigear[http]'")
    return host, int(port)


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server's TLS context from the ``--tls-*`` flags, or None without them."""
    if args.tls_cert is None:
        for flag in ("tls_key", "tls_ca"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} needs --tls-cert")
        return None
    if not args.tls_handshake_timeout > 0:
        raise UsageError("--tls-handshake-timeout must be more than 0 seconds")
    try:
        return server_ssl_context(args.tls_cert, args.tls_key, args.tls_ca)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot use the TLS files: {exc}") from None


def _acl(path: str | None) -> Acl | None:
    if path is None:
        return None
    try:
        acl = Acl.load(path)
    except AclError as exc:
        raise UsageError(f"--acl: {exc}") from None
    _log_acl(acl)
    return acl


def _log_acl(acl: Acl) -> None:
    log = logging.getLogger("trigear")
    named = [name for name in acl.rules if name != "*"]
    log.info("access control from %s: %d identities", acl.source, len(named))
    for note in acl.notes:
        log.warning("%s: %s", acl.source, note)


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:4731`` for IPv6) of ``--plain-listen``."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--plain-listen: {text!r} is not HOST:PORT")
    return host, int(port)


async def _listeners(
    args: argparse.Namespace, tls: ssl.SSLContext | None
) -> list[trio.SocketListener | TLSListener]:
    out: list[trio.SocketListener | TLSListener] = []
    places = [(h, args.port, tls) for h in args.listen or ["127.0.0.1"]]
    places += [(*_host_port(text), None) for text in args.plain_listen]
    for host, port, context in places:
        try:
            opened = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise UsageError(f"cannot listen on port {port} at {host}: {exc}") from None
        for listener in opened:
            out.append(listener if context is None else TLSListener(listener, context))
    return out


def _store(url: str, name: str | None = None, advertise: str | None = None) -> Store:
    try:
        from ..store import open_store
    except ImportError:  # pragma: no cover - only before the durable stores exist
        if url == "memory":
            from ..store.memory import MemoryStore

            return MemoryStore()
        raise UsageError(f"--store {url!r}: only 'memory' is available") from None
    try:
        store = open_store(url, name=name)
    except ValueError as exc:
        raise UsageError(f"--store: {exc}") from None
    if advertise is not None:
        from .._placement import parse_address
        from ..store.cluster import ClusterStore

        try:
            address = parse_address(advertise)
        except ValueError as exc:
            raise UsageError(f"--advertise: {exc}") from None
        assert isinstance(store, ClusterStore)
        assert store.member is not None
        store.member.address = str(address)
    return store


async def _run(
    args: argparse.Namespace,
    config: ServerConfig,
    store: Store,
    tls: ssl.SSLContext | None,
    acl: Acl | None,
) -> None:
    server = Server(config, store, acl=acl)
    signums = [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1]
    if args.acl:
        signums.append(signal.SIGHUP)
    with trio.open_signal_receiver(*signums) as signals:
        listeners = await _listeners(args, tls)
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(task_status: trio.TaskStatus[Server]) -> None:
                await server.serve(listeners, task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(serve_then_stop)
            where = ", ".join(_addr(lst, server) for lst in server.listeners)
            logging.getLogger("trigear").info(
                "trigear %s listening on %s, store: %s, pid %d",
                __version__,
                where,
                store.description,
                os.getpid(),
            )
            if server.http_urls:
                logging.getLogger("trigear").info(
                    "status page %s/, metrics %s/metrics",
                    server.http_urls[0],
                    server.http_urls[0],
                )

            async def watch_signals() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGHUP:
                        await _reload_acl(server, args.acl)
                        continue
                    graceful = not server.shutting_down
                    logging.getLogger("trigear").info(
                        "%s: %s", name, "draining" if graceful else "exiting now"
                    )
                    server.shutdown(graceful=graceful)

            nursery.start_soon(watch_signals)


async def _reload_acl(server: Server, path: str) -> None:
    """SIGHUP: read the ACL file again; keep the one in force if the new one is bad."""
    log = logging.getLogger("trigear")
    try:
        acl = await trio.to_thread.run_sync(Acl.load, path)
    except AclError as exc:
        log.error("SIGHUP: the access control list in force stays: %s", exc)
        return
    await server.set_acl(acl)
    log.info("SIGHUP: access control list reloaded")
    _log_acl(acl)


def _addr(listener: trio.SocketListener, server: Server) -> str:
    host, port = listener.socket.getsockname()[:2]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    context = server.tls.get(listener)
    if context is None:
        return where
    mutual = context.verify_mode == ssl.CERT_REQUIRED
    return f"{where} (TLS{', client certificates required' if mutual else ''})"


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and in the groups nested in it (a listener that
    failed inside the server's nurseries arrives nested)."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def main(argv: Sequence[str] | None = None, *, prog: str = "trigear serve") -> None:
    """Run the server until a signal drains it; exit 0, or 2 for a user mistake."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    handlers: list[logging.Handler]
    try:
        handlers = [logging.FileHandler(args.log_file)] if args.log_file else []
    except OSError as exc:
        parser.exit(2, f"{prog}: cannot open log file: {exc}\n")
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers or None,
    )
    try:
        config = _config(args)
        tls = _tls(args)
        acl = _acl(args.acl)
        store = _store(args.store, args.name, args.advertise)
        if args.pid_file:
            try:
                with open(args.pid_file, "w") as f:
                    f.write(f"{os.getpid()}\n")
            except OSError as exc:
                raise UsageError(f"cannot write pid file: {exc}") from None
        trio.run(_run, args, config, store, tls, acl)
    except* (UsageError, ListenError) as group:
        parser.exit(2, "".join(f"{prog}: {e}\n" for e in _leaves(group)))
    except* StoreError as group:
        parser.exit(1, "".join(f"{prog}: cannot start: {e}\n" for e in group.exceptions))
    sys.exit(0)
