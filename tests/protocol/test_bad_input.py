"""One test per class of bad input (spec S20, limits of section 5).

A malformed packet gets an ERROR when the stream is still in sync (``close`` false: the
decoder goes on with the next packet), else the connection is closed (``close`` true).
Codes and texts are gearmand's where it has them (spec section 2, ERROR table).
"""

from __future__ import annotations

from typing import Any

import pytest

from trigear.protocol import (
    NEED_DATA,
    AdminCommand,
    CanDo,
    CanDoTimeout,
    Decoder,
    EchoReq,
    GetStatusUnique,
    JobCreated,
    Limits,
    RemoteProtocolError,
    Role,
    SetClientId,
    SubmitJob,
    SubmitJobEpoch,
    WorkComplete,
    WorkFail,
    encode_request,
    encode_response,
)

GOOD = encode_request(CanDo(b"next"))


def header(magic: bytes, ptype: int, size: int) -> bytes:
    return magic + ptype.to_bytes(4, "big") + size.to_bytes(4, "big")


def expect_error(dec: Decoder, data: bytes = b"") -> RemoteProtocolError:
    if data:
        dec.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        dec.receive_events()
    return info.value


def assert_closed(dec: Decoder, err: RemoteProtocolError) -> None:
    assert err.close
    dec.receive_data(GOOD)
    assert dec.buffered == 0
    with pytest.raises(RemoteProtocolError) as again:
        dec.next_event()
    assert again.value is err
    with pytest.raises(RemoteProtocolError):
        dec.receive_events()


def assert_in_sync(dec: Decoder, tail: bytes = b"") -> None:
    dec.receive_data(tail + GOOD)
    assert dec.receive_events() == [CanDo(b"next")]
    assert dec.buffered == 0


# --- magic ---------------------------------------------------------------------------


def test_response_magic_to_a_server_gets_invalid_magic_and_stays_in_sync() -> None:
    """S20: ``\\0RES`` gets ERROR INVALID_MAGIC "Request magic expected", connection usable."""
    dec = Decoder(Role.SERVER)
    wire = encode_response(WorkComplete(b"H:1", b"x" * 20))
    err = expect_error(dec, wire)
    assert (err.code, err.error_text, err.close) == (
        b"INVALID_MAGIC",
        b"Request magic expected",
        False,
    )
    assert_in_sync(dec)


def test_response_magic_body_arriving_later_in_pieces_is_skipped() -> None:
    dec = Decoder(Role.SERVER)
    body = b"H:1\0" + b"\0REQ" * 10  # looks like packets, but is the bad packet's body
    err = expect_error(dec, header(b"\0RES", 13, len(body)))
    assert err.code == b"INVALID_MAGIC"
    assert not err.close
    assert dec.mid_packet  # still dropping the body
    for i in range(0, len(body), 7):
        dec.receive_data(body[i : i + 7])
        assert dec.receive_events() == []
        assert dec.buffered == 0
    assert not dec.mid_packet
    assert_in_sync(dec)


def test_response_magic_between_good_packets_in_one_chunk() -> None:
    """The skipped packet is measured from where it starts, not from the buffer start."""
    dec = Decoder(Role.SERVER)
    first = encode_request(CanDo(b"first"))
    bad = encode_response(JobCreated(b"H:lap:123456"))
    dec.receive_data(first + bad + GOOD)
    assert dec.receive_events() == [CanDo(b"first")]  # the error is deferred
    err = expect_error(dec)
    assert err.code == b"INVALID_MAGIC"
    assert dec.receive_events() == [CanDo(b"next")]


def test_request_magic_to_a_client_gets_invalid_magic_and_stays_in_sync() -> None:
    dec = Decoder(Role.CLIENT)
    err = expect_error(dec, encode_request(SubmitJob(b"f", b"u", b"\0data")))
    assert err.code == b"INVALID_MAGIC"
    assert err.error_text == b"Response magic expected"
    assert not err.close
    dec.receive_data(encode_response(JobCreated(b"H:1")))
    assert dec.receive_events() == [JobCreated(b"H:1")]


@pytest.mark.parametrize("magic", [b"\0RRR", b"\0\0\0\0", b"\0req", b"\0RES"[:3] + b"\0"])
def test_garbage_magic_closes(magic: bytes) -> None:
    dec = Decoder(Role.SERVER)
    err = expect_error(dec, header(magic, 1, 3) + b"abc" + GOOD)
    assert err.code == b"INVALID_MAGIC"
    assert_closed(dec, err)


def test_text_on_a_client_decoder_closes() -> None:
    """Only a server's stream may carry admin text; a client's must start with NUL."""
    dec = Decoder(Role.CLIENT)
    err = expect_error(dec, b"OK\r\n")
    assert_closed(dec, err)


# --- packet types --------------------------------------------------------------------


@pytest.mark.parametrize("ptype", [0, 5, 43, 255, 2**32 - 1])
def test_unknown_type_gets_invalid_command_and_stays_in_sync(ptype: int) -> None:
    dec = Decoder(Role.SERVER)
    err = expect_error(dec, header(b"\0REQ", ptype, 5) + b"a\0b\0c")
    assert (err.code, err.error_text, err.close) == (
        b"INVALID_COMMAND",
        b"Command not expected",
        False,
    )
    assert_in_sync(dec)


@pytest.mark.parametrize("ptype", [6, 8, 10, 11, 17, 19, 20, 27, 31, 40, 42])
def test_server_only_type_sent_to_a_server(ptype: int) -> None:
    """A ``\\0REQ`` packet of a type only the server sends: INVALID_COMMAND, in sync."""
    dec = Decoder(Role.SERVER)
    body = b"H:1\0x"
    err = expect_error(dec, header(b"\0REQ", ptype, len(body)))
    assert err.code == b"INVALID_COMMAND"
    assert not err.close
    assert_in_sync(dec, body)  # the body, arriving after the error, is dropped


@pytest.mark.parametrize("ptype", [1, 7, 9, 22, 39])
def test_client_only_type_sent_to_a_client(ptype: int) -> None:
    dec = Decoder(Role.CLIENT)
    err = expect_error(dec, header(b"\0RES", ptype, 1) + b"x")
    assert err.code == b"INVALID_COMMAND"
    assert not err.close
    dec.receive_data(encode_response(JobCreated(b"H:1")))
    assert dec.receive_events() == [JobCreated(b"H:1")]


def test_unknown_type_with_a_big_body_is_rejected_from_the_header() -> None:
    dec = Decoder(Role.SERVER, Limits(max_body=1000))
    err = expect_error(dec, header(b"\0REQ", 99, 1000))
    assert not err.close
    dec.receive_data(b"\0" * 999)
    assert dec.receive_events() == []
    assert dec.buffered == 0
    assert_in_sync(dec, b"\0")


# --- arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ptype", "body"),
    [
        (7, b"reverse\0test"),  # SUBMIT_JOB: 2 of 3
        (7, b""),
        (36, b"f\0u\0123"),  # SUBMIT_JOB_EPOCH: 3 of 4
        (37, b"f\0u\0r\0data"),  # SUBMIT_REDUCE_JOB: 4 of 5 (gearmand's table)
        (35, b"f\0u\0" + b"\0".join([b"1"] * 4)),  # SUBMIT_JOB_SCHED: 6 of 8
        (23, b"f"),  # CAN_DO_TIMEOUT: 1 of 2
        (12, b"H:1\0" + b"5"),  # WORK_STATUS: 2 of 3
        (13, b"H:1"),  # WORK_COMPLETE: 1 of 2
    ],
)
def test_too_few_arguments_never_reads_into_the_next_packet(ptype: int, body: bytes) -> None:
    """Spec section 1: a short packet is malformed within its own frame."""
    dec = Decoder(Role.SERVER)
    dec.receive_data(header(b"\0REQ", ptype, len(body)) + body + GOOD)
    err = expect_error(dec)
    assert err.code == b"INVALID_PACKET"
    assert not err.close
    assert dec.receive_events() == [CanDo(b"next")]


def test_too_few_arguments_on_a_client_decoder() -> None:
    dec = Decoder(Role.CLIENT)
    body = b"H:1\0f"  # JOB_ASSIGN needs handle, function, data
    dec.receive_data(header(b"\0RES", 11, len(body)) + body + encode_response(JobCreated(b"H:2")))
    err = expect_error(dec)
    assert not err.close
    assert dec.receive_events() == [JobCreated(b"H:2")]


# --- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [101, 2**31, 2**32 - 1])
def test_body_over_the_limit_is_rejected_from_the_header_alone(size: int) -> None:
    """S20: never allocate what the peer declared before the bytes arrive."""
    dec = Decoder(Role.SERVER, Limits(max_body=100))
    err = expect_error(dec, header(b"\0REQ", 7, size))
    assert err.code == b"ARGUMENT_TOO_LARGE"
    assert dec.buffered == 0
    assert_closed(dec, err)


def test_body_at_the_limit_is_accepted() -> None:
    dec = Decoder(Role.SERVER, Limits(max_body=100))
    event = EchoReq(b"\0" * 100)
    dec.receive_data(encode_request(event))
    assert dec.receive_events() == [event]


def test_default_limit_rejects_a_64_mib_plus_one_header() -> None:
    dec = Decoder(Role.CLIENT)
    err = expect_error(dec, header(b"\0RES", 13, 64 * 1024 * 1024 + 1))
    assert err.close
    assert dec.buffered == 0


def test_unique_over_64_bytes() -> None:
    """S2: ERROR ARGUMENT_TOO_LARGE "Unique value too large", the stream stays in sync."""
    dec = Decoder(Role.SERVER)
    err = expect_error(dec, encode_request(SubmitJob(b"f", b"u" * 65, b"data")))
    assert (err.code, err.error_text, err.close) == (
        b"ARGUMENT_TOO_LARGE",
        b"Unique value too large",
        False,
    )
    assert_in_sync(dec)
    err = expect_error(dec, encode_request(GetStatusUnique(b"u" * 65)))
    assert err.error_text == b"Unique value too large"


def test_unique_of_exactly_64_bytes_is_kept_byte_exact() -> None:
    """S2: gearmand truncates a 64-byte unique to 63; trigear keeps all 64."""
    unique = bytes(range(1, 65))
    assert len(unique) == 64
    dec = Decoder(Role.SERVER)
    dec.receive_data(encode_request(SubmitJob(b"f", unique, b"d")))
    [event] = dec.receive_events()
    assert event.unique == unique


@pytest.mark.parametrize(
    ("role", "event", "text"),
    [
        (Role.SERVER, CanDo(b"f" * 513), b"Function name too large"),
        (Role.SERVER, SubmitJob(b"f" * 513, b"", b""), b"Function name too large"),
        (Role.SERVER, CanDoTimeout(b"f" * 513, 5), b"Function name too large"),
        (Role.SERVER, WorkComplete(b"H" * 65, b"x"), b"Job handle too large"),
        (Role.SERVER, SetClientId(b"c" * 129), b"Client id too large"),
        (Role.CLIENT, JobCreated(b"H" * 65), b"Job handle too large"),
    ],
)
def test_named_fields_over_their_limits(role: Role, event: Any, text: bytes) -> None:
    dec = Decoder(role)
    wire = encode_request(event) if role is Role.SERVER else encode_response(event)
    err = expect_error(dec, wire)
    assert (err.code, err.error_text, err.close) == (b"ARGUMENT_TOO_LARGE", text, False)


def test_named_fields_at_their_limits_are_accepted() -> None:
    events = [
        CanDo(b"f" * 512),
        WorkComplete(b"H" * 64, b"x"),
        SetClientId(b"c" * 128),
    ]
    dec = Decoder(Role.SERVER)
    dec.receive_data(b"".join(encode_request(e) for e in events))
    assert dec.receive_events() == events


# --- admin lines ---------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_admin_line_of_8_kib_is_accepted(ending: bytes) -> None:
    line = b"x" * 8192
    dec = Decoder(Role.SERVER)
    dec.receive_data(line + ending)
    assert dec.receive_events() == [AdminCommand(line)]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""])
def test_admin_line_over_8_kib_closes(ending: bytes) -> None:
    dec = Decoder(Role.SERVER)
    err = expect_error(dec, b"x" * 8193 + b"x" + ending)
    assert_closed(dec, err)


def test_admin_line_over_the_limit_closes_before_its_end_arrives() -> None:
    dec = Decoder(Role.SERVER, Limits(max_admin_line=10))
    for b in b"status-xxxx":  # 11 bytes, no line end yet: may still be "\r\n" next
        dec.receive_data(bytes([b]))
        assert dec.receive_events() == []
    err = expect_error(dec, b"y")
    assert_closed(dec, err)


def test_admin_line_endings() -> None:
    """Spec section 1: a line runs to ``\\n``; a ``\\r`` before it is dropped (one only)."""
    dec = Decoder(Role.SERVER)
    dec.receive_data(b"status\nworkers\r\nversion\r\r\nsh\row\n\n\r\n")
    assert dec.receive_events() == [
        AdminCommand(b"status"),
        AdminCommand(b"workers"),
        AdminCommand(b"version\r"),
        AdminCommand(b"sh\row"),
        AdminCommand(b""),
        AdminCommand(b""),
    ]


def test_admin_lines_and_packets_interleave() -> None:
    dec = Decoder(Role.SERVER)
    dec.receive_data(b"status\n" + GOOD + b"workers\r\n" + GOOD)
    assert dec.receive_events() == [
        AdminCommand(b"status"),
        CanDo(b"next"),
        AdminCommand(b"workers"),
        CanDo(b"next"),
    ]


# --- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"soon",
        b"-1",
        b"+1",
        b" 1",
        b"1 ",
        b"1e3",
        b"1_000",
        b"\xd9\xa1",
        b"9" * 21,
        str(2**64).encode(),
    ],
)
def test_bad_epoch_gets_an_error_and_stays_in_sync(value: bytes) -> None:
    """S15: a bad epoch is an ERROR, not "run now"."""
    body = b"f\0u\0" + value + b"\0data"
    dec = Decoder(Role.SERVER)
    err = expect_error(dec, header(b"\0REQ", 36, len(body)) + body)
    assert err.code == b"INVALID_ARGUMENT"
    assert not err.close
    assert_in_sync(dec)


@pytest.mark.parametrize("value", [b"", b"x", b"-5", b"1.5"])
def test_bad_timeout_gets_an_error_and_stays_in_sync(value: bytes) -> None:
    body = b"f\0" + value
    dec = Decoder(Role.SERVER)
    err = expect_error(dec, header(b"\0REQ", 23, len(body)) + body)
    assert err.code == b"INVALID_ARGUMENT"
    assert not err.close
    assert_in_sync(dec)


def test_numbers_with_leading_zeros_and_the_largest_number() -> None:
    body = b"f\0u\x000001700000000\0"
    big = str(2**64 - 1).encode()
    dec = Decoder(Role.SERVER)
    dec.receive_data(
        header(b"\0REQ", 36, len(body))
        + body
        + encode_request(SubmitJobEpoch(b"f", b"", 2**64 - 1, b""))
    )
    assert dec.receive_events() == [
        SubmitJobEpoch(b"f", b"u", 1700000000, b""),
        SubmitJobEpoch(b"f", b"", int(big), b""),
    ]


@pytest.mark.parametrize("body", [b"H:1\x002\x000\x000\x000", b"H:1\x001\x001\x00x\x001"])
def test_bad_status_res_on_a_client(body: bytes) -> None:
    dec = Decoder(Role.CLIENT)
    err = expect_error(dec, header(b"\0RES", 20, len(body)) + body)
    assert err.code == b"INVALID_ARGUMENT"
    assert not err.close


# --- gearmand quirks and error batching ----------------------------------------------


def test_work_fail_with_gearmands_stray_nul() -> None:
    """S7: gearmand 1.1.20 leaks a NUL after a WORK_FAIL handle; the handle is kept bare."""
    dec = Decoder(Role.CLIENT)
    dec.receive_data(header(b"\0RES", 14, 8) + b"H:lap:1\0")
    assert dec.receive_events() == [WorkFail(b"H:lap:1")]


def test_errors_after_good_events_are_deferred_to_the_next_call() -> None:
    dec = Decoder(Role.SERVER)
    bad = header(b"\0REQ", 5, 0)
    dec.receive_data(GOOD + GOOD + bad + GOOD)
    assert dec.receive_events() == [CanDo(b"next")] * 2
    err = expect_error(dec)
    assert err.code == b"INVALID_COMMAND"
    assert dec.receive_events() == [CanDo(b"next")]


def test_a_closing_error_after_good_events_is_deferred_then_repeated() -> None:
    dec = Decoder(Role.SERVER)
    dec.receive_data(GOOD + header(b"\0XXX", 1, 0))
    assert dec.receive_events() == [CanDo(b"next")]
    err = expect_error(dec)
    assert_closed(dec, err)


def test_next_event_raises_at_the_bad_packet_only() -> None:
    dec = Decoder(Role.SERVER)
    dec.receive_data(GOOD + header(b"\0REQ", 5, 0) + GOOD)
    assert dec.next_event() == CanDo(b"next")
    with pytest.raises(RemoteProtocolError):
        dec.next_event()
    assert dec.next_event() == CanDo(b"next")
    assert dec.next_event() is NEED_DATA


def test_rejected_packet_whose_body_came_while_a_reader_lagged_is_skipped() -> None:
    """A reader that takes one event at a time: the bad packet's header is buffered
    behind a good packet, and its body (with look-alike packets in it) arrives before
    the reader gets to it.  The skip must drop those bytes too, not only later ones."""
    dec = Decoder(Role.SERVER)
    first = encode_request(SubmitJob(b"f", b"u", b"x" * 100))
    body = GOOD * 3
    bad = header(b"\0REQ", 5, len(body))
    dec.receive_data(first[:50])
    assert dec.next_event() is NEED_DATA
    dec.receive_data(first[50:] + bad + body[:3])
    assert dec.next_event() == SubmitJob(b"f", b"u", b"x" * 100)
    dec.receive_data(body[3:] + encode_request(CanDo(b"after")))
    with pytest.raises(RemoteProtocolError) as info:
        dec.next_event()
    assert info.value.code == b"INVALID_COMMAND"
    assert dec.next_event() == CanDo(b"after")
    assert dec.next_event() is NEED_DATA


def test_status_res_with_empty_numbers_reads_as_zero() -> None:
    """The Perl Gearman::Server sends GET_STATUS answers with empty progress numbers."""
    from trigear.protocol import Decoder, Role, StatusRes, StatusResUnique

    d = Decoder(Role.CLIENT)
    body = b"H:x:1\x001\x000\x00\x00"
    d.receive_data(b"\0RES" + (20).to_bytes(4, "big") + len(body).to_bytes(4, "big") + body)
    body = b"u\x001\x000\x00\x00\x000"
    d.receive_data(b"\0RES" + (42).to_bytes(4, "big") + len(body).to_bytes(4, "big") + body)
    assert d.receive_events() == [
        StatusRes(b"H:x:1", True, False, 0, 0),
        StatusResUnique(b"u", True, False, 0, 0, 0),
    ]
