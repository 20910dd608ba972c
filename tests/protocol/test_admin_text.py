"""Numbers in text, read as gearmand reads them (C's ``atoi``): WORK_STATUS's numerator
and denominator unsigned, the admin ``maxqueue`` sizes signed."""

from __future__ import annotations

import pytest

from trigear.protocol.admin import INT_LIMIT, leading_int


@pytest.mark.parametrize(
    ("text", "number"),
    [
        (b"0", 0),
        (b"42", 42),
        (b"007", 7),
        (b"7x", 7),
        (b"12 34", 12),
        (b"", 0),
        (b"x", 0),
        (b" 5", 0),
        (b"-5", 0),
        (b"+5", 0),
        (b"4294967295", INT_LIMIT),
        (b"4294967296", INT_LIMIT),
        (b"9" * 100, INT_LIMIT),
        (b"0" * 100 + b"3", 3),
    ],
)
def test_unsigned_reads_leading_digits_and_saturates(text: bytes, number: int) -> None:
    assert leading_int(text, signed=False) == number


@pytest.mark.parametrize(
    ("text", "number"),
    [
        (b"3", 3),
        (b"-5", -5),
        (b"+4", 4),
        (b"-", 0),
        (b"+", 0),
        (b"--1", 0),
        (b"-7x", -7),
        (b"x", 0),
        (b"-" + b"9" * 100, -INT_LIMIT),
        (b"9" * 100, INT_LIMIT),
    ],
)
def test_signed_takes_one_sign(text: bytes, number: int) -> None:
    assert leading_int(text, signed=True) == number


def test_a_huge_number_costs_no_more_than_a_small_one() -> None:
    """Python's int() refuses strings of more than 4300 digits; the reader never builds
    one, so an admin line or a WORK_STATUS full of digits is still answered."""
    assert leading_int(b"1" * 100_000, signed=True) == INT_LIMIT
    assert leading_int(b"1" * 100_000, signed=False) == INT_LIMIT
