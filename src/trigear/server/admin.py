"""Answers to the admin text protocol (spec section 3), byte for byte as gearmand 1.1.20.

Where gearmand is wrong on purpose-free details, trigear differs and ``docs/server.md``
says so: ``cancel job`` really removes the job, ``create function`` keeps the whole name
when the line ends in a bare ``\\n``, a ``maxqueue`` set before the function exists still
applies (S18), and ``shutdown [graceful]`` works, from loopback only (S21).

The answers read and change server state through :class:`AdminView`, the few things an
admin may see and do.  The dispatcher satisfies it; this module never imports the
dispatcher, so the two do not depend on each other in a circle, and the answers can be
tested against any object with those members.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from .._version import __version__
from ..protocol import admin as fmt
from ..protocol.admin import leading_int

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..protocol.admin import AdminRequest
    from .config import ServerConfig
    from .jobindex import JobIndex
    from .state import Func, Peer

__all__ = ["AdminView", "answer", "parse_maxqueue"]


class AdminView(Protocol):
    """What the admin commands see of the server, and what they may change."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def funcs(self) -> Mapping[bytes, Func]:
        """Functions by name, oldest first."""
        ...

    @property
    def peers(self) -> Mapping[int, Peer]:
        """Connections by id, oldest first."""
        ...

    @property
    def jobs(self) -> JobIndex:
        """Live jobs by handle."""
        ...

    def cancel(self, handle: bytes) -> bool:
        """End a job now (waiting clients get WORK_FAIL); False if there is none."""
        ...

    def create_function(self, name: bytes) -> None: ...

    def drop_function(self, name: bytes) -> str | None:
        """Forget a function nobody uses: None on success, else the error text."""
        ...

    def set_maxqueue(self, name: bytes, limits: tuple[int, int, int]) -> None: ...

    def request_shutdown(self, *, graceful: bool) -> None: ...


def _incomplete(word: bytes) -> bytes:
    return (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
        + word
        + b"\r\n"
    )


def parse_maxqueue(args: tuple[bytes, ...]) -> tuple[int, int, int]:
    """``maxqueue F [N | HIGH NORMAL LOW]`` as gearmand reads it: one number sets every
    priority, two set HIGH and NORMAL, three set each; a value <= 0 is unlimited."""
    nums = [max(leading_int(a, signed=True), 0) for a in args[1:4]]
    if len(nums) == 0:
        return (0, 0, 0)
    if len(nums) == 1:
        return (nums[0], nums[0], nums[0])
    if len(nums) == 2:
        return (nums[0], nums[1], 0)
    return (nums[0], nums[1], nums[2])


def answer(d: AdminView, peer: Peer, req: AdminRequest) -> bytes:
    """The reply to one admin line."""
    cmd, args = req.command, req.args
    if cmd == b"status":
        return fmt.format_status(
            (f.name, f.total, f.running, len(f.workers)) for f in reversed(list(d.funcs.values()))
        )
    if cmd == b"prioritystatus":
        return fmt.format_prioritystatus(
            (f.name, f.counts[0], f.counts[1], f.counts[2], len(f.workers))
            for f in reversed(list(d.funcs.values()))
        )
    if cmd == b"workers":
        return fmt.format_workers(
            (p.fd, p.ip.encode(), p.client_id, reversed(p.abilities)) for p in d.peers.values()
        )
    if cmd == b"show":
        words = tuple(a.lower() for a in args)
        if words == (b"jobs",):
            return fmt.format_show_jobs((j.handle, j.attempts, 0, 1) for j in d.jobs.records())
        if words == (b"unique", b"jobs"):
            return fmt.format_show_unique_jobs(j.unique for j in d.jobs.records())
        if not args:
            return fmt.format_unknown_command(req.word)
        return b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
    if cmd == b"cancel":
        if len(args) < 2:
            return fmt.format_unknown_command(req.word)
        if len(args) > 2 or args[0].lower() != b"job":
            return b"ERR UNKNOWN_ERROR\r\n"
        return fmt.format_ok() if d.cancel(args[1]) else b"ERR UNKNOWN_JOB\r\n"
    if cmd in (b"create", b"drop"):
        if len(args) != 2 or args[0].lower() != b"function":
            return _incomplete(req.word)
        if cmd == b"create":
            d.create_function(args[1])
            return fmt.format_ok()
        error = d.drop_function(args[1])
        return fmt.format_ok() if error is None else b"ERR " + error.encode() + b"\r\n"
    if cmd == b"maxqueue":
        if not args:
            return _incomplete(req.word)
        d.set_maxqueue(args[0], parse_maxqueue(args))
        return fmt.format_ok()
    if cmd == b"getpid":
        return fmt.format_pid(os.getpid())
    if cmd == b"verbose":
        return fmt.format_verbose(d.config.log_level)
    if cmd == b"version":
        return fmt.format_version(f"trigear-{__version__}")
    if cmd == b"shutdown":
        if not (peer.loopback or d.config.remote_shutdown):
            return fmt.format_error("SHUTDOWN_NOT_ALLOWED", "shutdown only from loopback")
        if args and args[0].lower() != b"graceful":
            return fmt.format_unknown_command(req.word)
        d.request_shutdown(graceful=bool(args))
        return fmt.format_ok()
    return fmt.format_unknown_command(req.word)
