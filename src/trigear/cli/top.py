"""``trigear admin top``: a live full-screen view of Gearman servers, refreshed until quit.

Each refresh asks every server, concurrently, for ``status``, ``prioritystatus``,
``workers`` and ``show jobs`` (one admin connection per server, kept open and reopened
when it breaks), and redraws: per server, its queues (queued per priority, running,
workers per function), its workers and the functions they serve, and its jobs.  A server
that is down, or lacks a command (the Perl server has no ``prioritystatus``), is shown as
such and asked again next time.

It quits on ``q``, on Ctrl-C, or on SIGTERM, and restores the terminal (it draws on the
alternate screen, in cbreak mode so keys arrive one at a time).  It needs a terminal on
standard output: scripts use ``trigear admin --json status`` instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import time
import tty
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import trio

from ..client import ConnectionLost, NoServerAvailable, ServerError
from ..client.admin import AdminClient
from ._common import EXIT_OK, UsageError
from ._tables import cells, table, text

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator

    from rich.console import RenderableType

    from ..protocol.admin import JobRow, PriorityStatusRow, StatusRow, WorkerRow

__all__ = ["Snapshot", "render", "top"]

#: Jobs listed per server (the rest are counted).
MAX_JOBS = 10


@dataclass
class Snapshot:
    """What one server said in one refresh."""

    address: str
    error: str | None = None
    status: list[StatusRow] = field(default_factory=list)
    priorities: list[PriorityStatusRow] | None = None
    workers: list[WorkerRow] = field(default_factory=list)
    jobs: list[JobRow] | None = None


async def _optional(call: Any) -> Any:
    """A command the server may not have (ERR): None instead."""
    try:
        return await call()
    except ServerError:
        return None


async def snapshot(client: AdminClient, within: float) -> Snapshot:
    """Ask one server; what it said, or why it said nothing within ``within`` seconds."""
    snap = Snapshot(str(client.address))
    try:
        with anyio.fail_after(within):
            snap.status = await client.status()
            snap.priorities = await _optional(client.prioritystatus)
            snap.workers = await client.workers()
            snap.jobs = await _optional(client.show_jobs)
    except (NoServerAvailable, ConnectionLost, ServerError) as exc:
        snap.error = str(exc)
    except TimeoutError:
        snap.error = f"no answer within {within:g} s"
    return snap


async def snapshots(clients: list[AdminClient], within: float) -> list[Snapshot]:
    """Ask every server at once."""
    snaps = [Snapshot(str(c.address)) for c in clients]

    async def ask(i: int, client: AdminClient) -> None:
        snaps[i] = await snapshot(client, within)

    async with anyio.create_task_group() as tg:
        for i, client in enumerate(clients):
            tg.start_soon(ask, i, client)
    return snaps


def render(snaps: list[Snapshot], interval: float, now: float) -> RenderableType:
    """The whole screen for one refresh."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    clock = time.strftime("%H:%M:%S", time.localtime(now))
    n = len(snaps)
    header = Text.assemble(
        ("trigear admin top", "bold"),
        f"  {n} server{'s' if n != 1 else ''}, every {interval:g} s, at {clock}",
        ("   q or Ctrl-C to quit", "dim"),
    )
    panels: list[RenderableType] = [header]
    for snap in snaps:
        if snap.error is not None:
            body: RenderableType = Text(snap.error, style="red")
        else:
            body = Group(_queues(snap), Text(), _workers(snap), Text(), _jobs(snap))
        panels.append(Panel(body, title=snap.address, title_align="left"))
    return Group(*panels)


def _queues(snap: Snapshot) -> RenderableType:
    t = table("queues", title="queues")
    prio = {r.function: r for r in snap.priorities or ()}
    for row in snap.status:
        p = prio.get(row.function)
        if p is not None:
            queued = (str(p.high), str(p.normal), str(p.low))
        else:
            queued = ("?", str(row.total - row.running), "?")
        t.add_row(text(row.function), *queued, str(row.running), str(row.workers))
    return t


def _workers(snap: Snapshot) -> RenderableType:
    serving = [w for w in snap.workers if w.functions]
    others = len(snap.workers) - len(serving)
    t = table("workers", title=f"workers ({len(serving)}; {others} other connections)")
    for w in serving:
        t.add_row(*cells("workers", w))
    return t


def _jobs(snap: Snapshot) -> RenderableType:
    from rich.text import Text

    if snap.jobs is None:
        return Text("jobs: this server has no 'show jobs'", style="dim")
    t = table("show-jobs", title=f"jobs ({len(snap.jobs)})")
    for job in snap.jobs[:MAX_JOBS]:
        t.add_row(*cells("show-jobs", job))
    if len(snap.jobs) > MAX_JOBS:
        t.caption = f"and {len(snap.jobs) - MAX_JOBS} more"
        t.caption_justify = "left"
    return t


@contextlib.contextmanager
def _cbreak(fd: int | None) -> Iterator[None]:
    """Keys one at a time, no echo (Ctrl-C still signals); the terminal restored after."""
    if fd is None:
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def top(
    addresses: tuple[str, ...],
    interval: float,
    within: float,
    tls: ssl.SSLContext | None = None,
) -> int:
    """Draw until ``q``, Ctrl-C or SIGTERM; exit status 0."""
    if not sys.stdout.isatty():
        raise UsageError("top needs a terminal; for scripts: trigear admin --json status")
    from rich.console import Console
    from rich.live import Live

    keys_fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    clients = [AdminClient(a, ssl_context=tls) for a in addresses]
    quit_now = anyio.Event()
    console = Console()
    with (
        anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
        _cbreak(keys_fd),
        Live(console=console, screen=True, auto_refresh=False) as live,
    ):
        async with anyio.create_task_group() as tg:

            async def on_signal() -> None:
                async for _ in signals:
                    quit_now.set()

            async def on_key(fd: int) -> None:
                while True:
                    await trio.lowlevel.wait_readable(fd)
                    if b"q" in os.read(fd, 64).lower():
                        quit_now.set()

            tg.start_soon(on_signal)
            if keys_fd is not None:
                tg.start_soon(on_key, keys_fd)
            while not quit_now.is_set():
                snaps = await snapshots(clients, within)
                live.update(render(snaps, interval, time.time()), refresh=True)
                with anyio.move_on_after(interval):
                    await quit_now.wait()
            tg.cancel_scope.cancel()
    for client in clients:
        await client.aclose()
    return EXIT_OK
