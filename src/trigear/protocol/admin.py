"""The admin text protocol (spec section 3): parsing command lines, formatting replies.

gearmand's admin replies are parsed by tools that expect its exact bytes (``gearadmin``,
python ``gear``, monitoring scripts), and a listing without its final ``.`` line hangs
them.  Every reply trigear sends is built here, from plain values, so the formats live in
one place and are tested against gearmand's captured output.

Listings end with a line holding only ``.``; ``OK``/``ERR`` replies end in ``\\r\\n``,
except ``getpid``, ``verbose`` and ``version``, which end in ``\\n`` (gearmand 1.1.20).

The other direction, for admin *clients* (``trigear admin``, monitoring): :func:`reply_end`
finds where one reply ends in the bytes read so far, and the ``parse_*`` functions turn
a listing back into the rows its formatter was given (``parse_status(format_status(rows))
== rows``).  They accept what the Perl Gearman::Server sends too: its ``workers`` lines
end in ``": "`` with no function, and its ``version`` is a bare line without ``OK``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote_plus, unquote_plus

from .errors import RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "LISTING_COMMANDS",
    "AdminRequest",
    "JobRow",
    "PriorityStatusRow",
    "StatusRow",
    "WorkerRow",
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
    "parse_error",
    "parse_prioritystatus",
    "parse_show_jobs",
    "parse_show_unique_jobs",
    "parse_status",
    "parse_workers",
    "reply_end",
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


# --- reading replies (the client side) ------------------------------------------------

#: Command words whose reply is a listing ending in a ``.`` line (``show`` takes
#: ``jobs`` or ``unique jobs``); every other command answers with one line.
LISTING_COMMANDS = frozenset({b"status", b"prioritystatus", b"workers", b"show"})


class StatusRow(NamedTuple):
    """A ``status`` line: ``total`` counts queued plus running jobs."""

    function: bytes
    total: int
    running: int
    workers: int


class PriorityStatusRow(NamedTuple):
    """A ``prioritystatus`` line: jobs queued (not running) at each priority."""

    function: bytes
    high: int
    normal: int
    low: int
    workers: int


class WorkerRow(NamedTuple):
    """A ``workers`` line: one connection, worker or client (no functions)."""

    fd: int
    ip: bytes
    client_id: bytes
    functions: tuple[bytes, ...]


class JobRow(NamedTuple):
    """A ``show jobs`` line."""

    handle: bytes
    retries: int
    ignore: int
    persisted: int


def reply_end(buffer: bytes | bytearray, listing: bool, searched: int = 0) -> int:
    """Where the first reply in ``buffer`` ends (an index), or -1 if it is not all there.

    ``listing`` says the command answers with a listing: then the reply runs to the line
    holding only ``.``, unless its first line is an ``ERR ...\\r\\n`` line (a listing's
    lines end in a bare ``\\n``).  Otherwise the reply is one line.  ``searched`` is how
    much of ``buffer`` an earlier call already saw, so a reader that calls this after each
    receive scans a long listing once, not once per receive.
    """
    first = buffer.find(b"\n")
    if first < 0:
        return -1
    if not listing or buffer[:first] == b"." or _is_error_line(bytes(buffer[: first + 1])):
        return first + 1
    end = buffer.find(b"\n.\n", max(first, searched - 2))
    return -1 if end < 0 else end + 3


def _is_error_line(line: bytes) -> bool:
    return line.startswith(b"ERR ") and line.endswith(b"\r\n")


def parse_error(line: bytes) -> tuple[str, str] | None:
    """``(NAME, text)`` of an ``ERR NAME text`` line (text URL-decoded), else None.

    gearmand also sends free text after ``ERR`` (``ERR function not found``): a first
    word that is not a code (upper case, or with an underscore as the Perl server's
    ``unknown_command``) is part of the text, and the name is ``""``.
    """
    words = line.strip().split(b" ", 1)
    if words[0] != b"ERR":
        return None
    rest = words[1].decode(errors="replace") if len(words) > 1 else ""
    name, _, text = rest.partition(" ")
    if not (name.isupper() or "_" in name):
        return "", rest
    return name, unquote_plus(text)


def _lines(reply: bytes, what: str) -> list[bytes]:
    if reply != b".\n" and not reply.endswith(b"\n.\n"):
        raise RemoteProtocolError(f"{what}: the listing does not end in a '.' line")
    return reply[:-2].split(b"\n")[:-1]


def _ints(fields: list[bytes], what: str, line: bytes) -> list[int]:
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise RemoteProtocolError(f"{what}: not a number in {line!r}") from None


def _columns(reply: bytes, what: str, n: int) -> list[tuple[bytes, list[int]]]:
    rows = []
    for line in _lines(reply, what):
        # The name (or handle) is everything before the numbers: it may hold a tab.
        fields = line.rsplit(b"\t", n - 1)
        if len(fields) != n:
            raise RemoteProtocolError(f"{what}: expected {n} columns in {line!r}")
        rows.append((fields[0], _ints(fields[1:], what, line)))
    return rows


def parse_status(reply: bytes) -> list[StatusRow]:
    """The rows of a ``status`` listing (the inverse of :func:`format_status`)."""
    return [StatusRow(name, *nums) for name, nums in _columns(reply, "status", 4)]


def parse_prioritystatus(reply: bytes) -> list[PriorityStatusRow]:
    """The rows of a ``prioritystatus`` listing."""
    return [PriorityStatusRow(name, *nums) for name, nums in _columns(reply, "prioritystatus", 5)]


def parse_show_jobs(reply: bytes) -> list[JobRow]:
    """The rows of a ``show jobs`` listing."""
    return [JobRow(handle, *nums) for handle, nums in _columns(reply, "show jobs", 4)]


def parse_show_unique_jobs(reply: bytes) -> list[bytes]:
    """The uniques of a ``show unique jobs`` listing."""
    return _lines(reply, "show unique jobs")


def parse_workers(reply: bytes) -> list[WorkerRow]:
    """The rows of a ``workers`` listing: ``FD IP CLIENT-ID : FUNC...`` per connection."""
    rows = []
    for line in _lines(reply, "workers"):
        fd, sep1, rest = line.partition(b" ")
        ip, sep2, rest = rest.partition(b" ")
        client_id, sep3, functions = rest.partition(b" :")
        if not (sep1 and sep2 and sep3):
            raise RemoteProtocolError(f"workers: not a 'FD IP ID : FUNCS' line: {line!r}")
        (number,) = _ints([fd], "workers", line)
        rows.append(WorkerRow(number, ip, client_id, tuple(f for f in functions.split(b" ") if f)))
    return rows
