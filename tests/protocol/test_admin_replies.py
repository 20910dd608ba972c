"""Reading admin replies (spec section 3): where a reply ends, and listings parsed back into
the rows their formatter was given."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trigear.protocol import RemoteProtocolError
from trigear.protocol.admin import (
    JobRow,
    WorkerRow,
    format_error,
    format_ok,
    format_pid,
    format_prioritystatus,
    format_show_jobs,
    format_show_unique_jobs,
    format_status,
    format_unknown_command,
    format_workers,
    parse_error,
    parse_prioritystatus,
    parse_show_jobs,
    parse_show_unique_jobs,
    parse_status,
    parse_workers,
    reply_end,
)

SETTINGS = settings(max_examples=100, deadline=None)

#: A name in a listing: any bytes but a line break (a tab is fine: the numbers are split
#: off from the right), and not the ``.`` line that ends the listing.
names = st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b and b != b".")
counts = st.integers(min_value=0, max_value=2**31)
words = st.binary(min_size=1, max_size=10).filter(
    lambda b: not any(c in b for c in b" \t\r\n") and b != b"."
)


@SETTINGS
@given(st.lists(st.tuples(names, counts, counts, counts)))
def test_status_round_trips(rows: list[tuple[bytes, int, int, int]]) -> None:
    assert parse_status(format_status(rows)) == rows


@SETTINGS
@given(st.lists(st.tuples(names, counts, counts, counts, counts)))
def test_prioritystatus_round_trips(rows: list[tuple[bytes, int, int, int, int]]) -> None:
    assert parse_prioritystatus(format_prioritystatus(rows)) == rows


@SETTINGS
@given(st.lists(st.tuples(names, counts, counts, counts)))
def test_show_jobs_round_trips(rows: list[tuple[bytes, int, int, int]]) -> None:
    assert parse_show_jobs(format_show_jobs(rows)) == [JobRow(*r) for r in rows]


@SETTINGS
@given(st.lists(names))
def test_show_unique_jobs_round_trips(uniques: list[bytes]) -> None:
    assert parse_show_unique_jobs(format_show_unique_jobs(uniques)) == uniques


@SETTINGS
@given(st.lists(st.tuples(counts, words, words, st.lists(words, max_size=4))))
def test_workers_round_trips(rows: list[tuple[int, bytes, bytes, list[bytes]]]) -> None:
    got = parse_workers(format_workers(rows))
    assert got == [WorkerRow(fd, ip, cid, tuple(fs)) for fd, ip, cid, fs in rows]


def test_workers_as_the_perl_server_writes_them() -> None:
    """Gearman::Server joins the functions with spaces after ``" : "``: a client has a
    trailing space and no function."""
    reply = b"5 127.0.0.1 - : \n6 127.0.0.1 w1 : a b\n.\n"
    assert parse_workers(reply) == [
        WorkerRow(5, b"127.0.0.1", b"-", ()),
        WorkerRow(6, b"127.0.0.1", b"w1", (b"a", b"b")),
    ]


def test_a_client_id_with_spaces_stays_whole() -> None:
    assert parse_workers(b"7 ::1 my worker : f\n.\n") == [
        WorkerRow(7, b"::1", b"my worker", (b"f",))
    ]


@pytest.mark.parametrize(
    ("parse", "reply"),
    [
        (parse_status, b"f\t1\t2\n.\n"),  # a column short
        (parse_status, b"f\tx\t0\t0\n.\n"),  # not a number
        (parse_status, b"f\t1\t0\t0\n"),  # no final '.'
        (parse_prioritystatus, b"f\t1\t0\t0\n.\n"),
        (parse_show_jobs, b"H:x:1\n.\n"),
        (parse_workers, b"7 127.0.0.1\n.\n"),
        (parse_workers, b"x 127.0.0.1 - :\n.\n"),
        (parse_show_unique_jobs, b"u\n"),
    ],
)
def test_a_malformed_listing_is_a_remote_protocol_error(parse: object, reply: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse(reply)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("reply", "listing"),
    [
        (format_status([(b"f", 1, 0, 0), (b"g", 0, 0, 1)]), True),
        (format_status([]), True),
        (format_workers([(3, b"127.0.0.1", b"-", [])]), True),
        (b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n", True),
        (format_unknown_command(b"bogus"), True),
        (format_ok(), False),
        (format_pid(42), False),
        (format_error("UNKNOWN_JOB"), False),
        (b"1.11\n", False),  # the Perl server's version: no OK
    ],
)
def test_reply_end_finds_the_end_however_the_bytes_arrive(reply: bytes, listing: bool) -> None:
    following = b"OK\r\n"
    stream = reply + following
    # Whole, and one byte at a time (each call told how much it has already seen).
    assert reply_end(stream, listing) == len(reply)
    buf = bytearray()
    searched = 0
    for i, byte in enumerate(stream):
        buf.append(byte)
        end = reply_end(buf, listing, searched)
        if i + 1 < len(reply):
            assert end == -1, (i, bytes(buf))
        else:
            assert end == len(reply)
            break
        searched = len(buf)


def test_a_listing_row_starting_with_err_is_not_an_error_line() -> None:
    """Listing lines end in a bare ``\\n``; only ``ERR ...\\r\\n`` ends a listing early."""
    reply = format_show_unique_jobs([b"ERR looks like one", b"u2"])
    assert reply_end(reply, True) == len(reply)


def test_parse_error_decodes_the_text() -> None:
    assert parse_error(format_error("SHUTDOWN_NOT_ALLOWED", "shutdown only from loopback")) == (
        "SHUTDOWN_NOT_ALLOWED",
        "shutdown only from loopback",
    )
    assert parse_error(format_unknown_command(b"bogus")) == (
        "UNKNOWN_COMMAND",
        "Unknown server commandbogus",
    )
    assert parse_error(b"ERR UNKNOWN_JOB\r\n") == ("UNKNOWN_JOB", "")
    assert parse_error(b"ERR function not found\r\n") == ("", "function not found")
    assert parse_error(b"ERR unknown_args Unknown+arguments\r\n") == (
        "unknown_args",
        "Unknown arguments",
    )
    assert parse_error(b"OK\r\n") is None
    assert parse_error(b"ERRATIC\n") is None
