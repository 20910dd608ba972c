"""The admin text protocol (spec section 3): parsing command lines, formatting replies.

gearmand's admin replies are parsed by tools that expect its exact bytes (``gearadmin``,
python ``gear``, monitoring scripts), and a listing without its final ``.`` line hangs
them.  Every reply trigear sends is built here, from plain values, so the formats live in
one place and are tested against gearmand's captured output.

Listings end with a line holding only ``.``; ``OK``/``ERR`` replies end in ``\\r\\n``,
except ``getpid``, ``verbose`` and ``version``, which end in ``\\n`` (gearmand 1.1.20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AdminRequest",
    "format_error",
    "format_ok",
    "format_pid",
    "format_prioritystatus",
    "format_show_jobs",
    "format_show_unique_jobs",
    "format_status",
    "format_unknown_command",
    "format_verbose",
    "format_version",
    "format_workers",
    "leading_int",
    "parse_admin_line",
]

#: The largest magnitude :func:`leading_int` returns: gearmand keeps these numbers in 32
#: bits.
INT_LIMIT = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class AdminRequest:
    """A parsed admin line: the first word lower-cased, the rest as sent."""

    #: The command word, lower case (``b"status"``, ``b"show"``, ``b""`` for none).
    command: bytes
    #: The remaining words, as sent.
    args: tuple[bytes, ...]
    #: The first word as sent, for ``ERR UNKNOWN_COMMAND``.
    word: bytes


def parse_admin_line(line: bytes) -> AdminRequest:
    """Split an admin line into words the way gearmand does.

    Only the space character separates words (a tab is part of a word); a line that
    starts with a space has an empty command word.  Command words are case-insensitive.
    """
    words = line.split(b" ")
    first = words[0]
    return AdminRequest(first.lower(), tuple(w for w in words[1:] if w), first)


def leading_int(text: bytes, *, signed: bool) -> int:
    """The number ``text`` starts with, read the way gearmand reads numbers in text (C's
    ``atoi``): when ``signed``, an optional ``+`` or ``-``; then decimal digits up to the
    first other byte.  No digits read as 0.

    The magnitude saturates at :data:`INT_LIMIT`, so a long run of digits costs no more
    than ten of them.  The server reads WORK_STATUS's numerator and denominator unsigned
    (STATUS_RES reports them as unsigned 32-bit numbers) and the admin ``maxqueue`` sizes
    signed (a size <= 0 means no limit).
    """
    negative = False
    if signed and text[:1] in (b"-", b"+"):
        negative = text[:1] == b"-"
        text = text[1:]
    n = 0
    for b in text:
        if 48 <= b <= 57:
            n = n * 10 + b - 48
            if n > INT_LIMIT:
                n = INT_LIMIT
                break
        else:
            break
    return -n if negative else n


def _listing(lines: Iterable[bytes]) -> bytes:
    return b"".join(lines) + b".\n"


def format_status(rows: Iterable[tuple[bytes, int, int, int]]) -> bytes:
    """``status``: (function, total queued+running, running, workers) per row."""
    return _listing(b"%s\t%d\t%d\t%d\n" % row for row in rows)


def format_prioritystatus(rows: Iterable[tuple[bytes, int, int, int, int]]) -> bytes:
    """``prioritystatus``: (function, high, normal, low, workers) per row (queued only)."""
    return _listing(b"%s\t%d\t%d\t%d\t%d\n" % row for row in rows)


def format_workers(rows: Iterable[tuple[int, bytes, bytes, Iterable[bytes]]]) -> bytes:
    """``workers``: (fd, ip, client id or b"-", functions) per connection."""
    out = []
    for fd, ip, client_id, functions in rows:
        funcs = b"".join(b" " + f for f in functions)
        out.append(b"%d %s %s :%s\n" % (fd, ip, client_id or b"-", funcs))
    return _listing(out)


def format_show_jobs(rows: Iterable[tuple[bytes, int, int, int]]) -> bytes:
    """``show jobs``: (handle, retries, ignore, persisted) per job."""
    return _listing(b"%s\t%d\t%d\t%d\n" % row for row in rows)


def format_show_unique_jobs(uniques: Iterable[bytes]) -> bytes:
    """``show unique jobs``: one unique per line."""
    return _listing(u + b"\n" for u in uniques)


def format_ok() -> bytes:
    return b"OK\r\n"


def format_error(name: str, text: str = "") -> bytes:
    """``ERR NAME text`` with the text URL-encoded (``+`` for spaces), as gearmand does."""
    if text:
        return b"ERR %s %s\r\n" % (name.encode(), quote_plus(text).encode())
    return b"ERR %s\r\n" % name.encode()


def format_unknown_command(word: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + word + b"\r\n"


def format_pid(pid: int) -> bytes:
    return b"OK %d\n" % pid


def format_verbose(level: str) -> bytes:
    return b"OK %s\n" % level.encode()


def format_version(version: str) -> bytes:
    return b"OK %s\n" % version.encode()
