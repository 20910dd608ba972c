"""Answers to the admin text protocol (spec section 3), byte for byte as gearmand 1.1.20.

Where gearmand is wrong on purpose-free details, trigear differs and ``docs/server.md``
says so: ``cancel job`` really removes the job, ``create function`` keeps the whole name
when the line ends in a bare ``\\n``, a ``maxqueue`` set before the function exists still
applies (S18), and ``shutdown [graceful]`` works, from loopback only (S21).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..protocol import admin as fmt

if TYPE_CHECKING:
    from ..protocol.admin import AdminRequest
    from .dispatcher import Dispatcher
    from .state import Peer

__all__ = ["answer", "parse_maxqueue"]


def _incomplete(word: bytes) -> bytes:
    return (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
        + word
        + b"\r\n"
    )


def _atoi(word: bytes) -> int:
    sign = 1
    if word[:1] in (b"-", b"+"):
        sign = -1 if word[:1] == b"-" else 1
        word = word[1:]
    digits = b""
    for b in word:
        if 48 <= b <= 57:
            digits += bytes([b])
        else:
            break
    return sign * int(digits) if digits else 0


def parse_maxqueue(args: tuple[bytes, ...]) -> tuple[int, int, int]:
    """``maxqueue F [N | HIGH NORMAL LOW]`` as gearmand reads it: one number sets every
    priority, two set HIGH and NORMAL, three set each; a value <= 0 is unlimited."""
    nums = [max(_atoi(a), 0) for a in args[1:4]]
    if len(nums) == 0:
        return (0, 0, 0)
    if len(nums) == 1:
        return (nums[0], nums[0], nums[0])
    if len(nums) == 2:
        return (nums[0], nums[1], 0)
    return (nums[0], nums[1], nums[2])


def answer(d: Dispatcher, peer: Peer, req: AdminRequest) -> bytes:
    """The reply to one admin line."""
    cmd, args = req.command, req.args
    if cmd == b"status":
        return fmt.format_status(
            (f.name, f.total, f.running, len(f.workers)) for f in reversed(d.funcs.values())
        )
    if cmd == b"prioritystatus":
        return fmt.format_prioritystatus(
            (f.name, f.counts[0], f.counts[1], f.counts[2], len(f.workers))
            for f in reversed(d.funcs.values())
        )
    if cmd == b"workers":
        return fmt.format_workers(
            (p.fd, p.ip.encode(), p.client_id, reversed(p.abilities)) for p in d.peers.values()
        )
    if cmd == b"show":
        words = tuple(a.lower() for a in args)
        if words == (b"jobs",):
            return fmt.format_show_jobs((j.handle, j.attempts, 0, 1) for j in d.all_jobs())
        if words == (b"unique", b"jobs"):
            return fmt.format_show_unique_jobs(j.unique for j in d.all_jobs())
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
        return fmt.format_version(d.version())
    if cmd == b"shutdown":
        if not (peer.loopback or d.config.remote_shutdown):
            return fmt.format_error("SHUTDOWN_NOT_ALLOWED", "shutdown only from loopback")
        if args and args[0].lower() != b"graceful":
            return fmt.format_unknown_command(req.word)
        d.shutdown_request = "graceful" if args else "now"
        return fmt.format_ok()
    return fmt.format_unknown_command(req.word)
