"""The server's robustness flags (docs/robustness.md): keepalive, deadlines, output
budgets and limits.  Kept apart from ``serve.py``'s other flags; each maps onto one
:class:`~trigear.server.ServerConfig` field."""

from __future__ import annotations

import argparse
from typing import Any

from .._keepalive import Keepalive
from ..server.config import ServerConfig

__all__ = ["add_limit_flags", "limit_config", "size_or_zero"]

_D = ServerConfig.__dataclass_fields__


def _default(name: str) -> Any:
    return _D[name].default


def _number(kind: type[int] | type[float], lo: float) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value} is out of range (at least {lo:g})")
        return value

    parse.__name__ = "number"
    return parse


def size_or_zero(text: str) -> int:
    """A byte count like ``64M``, ``4GiB`` or ``0`` (K, M, G are powers of 1024)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("b").removesuffix("i")
    mult = units.get(t[-1:], 1)
    if mult > 1:
        t = t[:-1]
    try:
        value = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (like 64M)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def add_limit_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("limits and liveness (docs/robustness.md)")
    ka = _default("keepalive")
    g.add_argument(
        "--keepalive-idle",
        type=_number(int, 0),
        default=ka.idle,
        metavar="SECONDS",
        help=f"TCP keepalive: idle time before the first probe; 0 turns it off ({ka.idle})",
    )
    g.add_argument(
        "--keepalive-interval",
        type=_number(int, 1),
        default=ka.interval,
        metavar="SECONDS",
        help=f"TCP keepalive: seconds between probes ({ka.interval})",
    )
    g.add_argument(
        "--keepalive-count",
        type=_number(int, 1),
        default=ka.count,
        metavar="N",
        help=f"TCP keepalive: unanswered probes before the peer is dropped ({ka.count})",
    )
    g.add_argument(
        "--stall-timeout",
        type=_number(float, 0.001),
        default=_default("stall_timeout"),
        metavar="SECONDS",
        help="time a packet may take from its first byte, plus its size at --min-upload-rate (30)",
    )
    g.add_argument(
        "--min-upload-rate",
        type=size_or_zero,
        default=_default("min_upload_rate"),
        metavar="SIZE",
        help="bytes per second a large packet is given on top of --stall-timeout (1M)",
    )
    g.add_argument(
        "--max-output",
        type=size_or_zero,
        default=_default("max_output"),
        metavar="SIZE",
        help="output one peer may leave unread before it is cut off (64M)",
    )
    g.add_argument(
        "--max-output-total",
        type=size_or_zero,
        default=_default("max_output_total"),
        metavar="SIZE",
        help="output all peers may leave unread; beyond it the biggest non-readers are"
        " cut off (256M)",
    )
    g.add_argument(
        "--max-connections",
        type=_number(int, 0),
        default=_default("max_connections"),
        metavar="N",
        help="connections in all; more are closed at once; 0: no limit"
        f" ({_default('max_connections')})",
    )
    g.add_argument(
        "--max-connections-per-address",
        type=_number(int, 0),
        default=_default("max_connections_per_address"),
        metavar="N",
        help="connections from one address; 0: no limit"
        f" ({_default('max_connections_per_address')})",
    )
    g.add_argument(
        "--max-functions-per-connection",
        type=_number(int, 0),
        default=_default("max_functions_per_connection"),
        metavar="N",
        help="functions one connection may register; 0: no limit"
        f" ({_default('max_functions_per_connection')})",
    )
    g.add_argument(
        "--max-idle-functions",
        type=_number(int, 0),
        default=_default("max_idle_functions"),
        metavar="N",
        help="unused function records kept (admin status lists them, as gearmand's);"
        f" beyond, the oldest are freed ({_default('max_idle_functions')})",
    )
    g.add_argument(
        "--max-jobs",
        type=_number(int, 0),
        default=_default("max_jobs"),
        metavar="N",
        help="live jobs in the whole server; a submit beyond gets QUEUE_ERROR; 0: no limit"
        f" ({_default('max_jobs')})",
    )
    g.add_argument(
        "--max-job-bytes",
        type=size_or_zero,
        default=_default("max_job_bytes"),
        metavar="SIZE",
        help="bytes of job data in the whole server; a submit beyond gets QUEUE_ERROR;"
        " 0: no limit (4G)",
    )


def limit_config(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`ServerConfig` fields the flags of :func:`add_limit_flags` set."""
    return {
        "keepalive": Keepalive(args.keepalive_idle, args.keepalive_interval, args.keepalive_count),
        "stall_timeout": args.stall_timeout,
        "min_upload_rate": args.min_upload_rate,
        "max_output": args.max_output,
        "max_output_total": args.max_output_total,
        "max_connections": args.max_connections,
        "max_connections_per_address": args.max_connections_per_address,
        "max_functions_per_connection": args.max_functions_per_connection,
        "max_idle_functions": args.max_idle_functions,
        "max_jobs": args.max_jobs,
        "max_job_bytes": args.max_job_bytes,
    }
