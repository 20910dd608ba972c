"""The row mapping both SQL stores share (``store/rows.py``)."""

from __future__ import annotations

import dataclasses

import pytest

from trigear.store import Priority, StoredJob
from trigear.store.rows import COLUMNS, SELECT_LIST, UPDATE_FROM_EXCLUDED, from_row, to_row

from .store_helpers import job

JOBS = [
    job(1),
    job(2, unique=b"", data=b"\x00nul\x00", priority=Priority.HIGH),
    job(3, priority=Priority.LOW, when=1_900_000_000, attempts=4),
    job(4, unique=b"-", reducer=b"sum\x00it", when=0),
]


def test_every_field_of_a_stored_job_has_a_column() -> None:
    assert len(COLUMNS) == len(dataclasses.fields(StoredJob))
    assert all(len(to_row(j)) == len(COLUMNS) for j in JOBS)
    assert COLUMNS[0] == "handle"  # the key, left out of the upsert's SET list
    assert SELECT_LIST.split(", ") == list(COLUMNS)
    assert "handle" not in UPDATE_FROM_EXCLUDED
    assert UPDATE_FROM_EXCLUDED.count("excluded.") == len(COLUMNS) - 1


@pytest.mark.parametrize("stored", JOBS, ids=lambda j: j.handle.decode())
def test_a_job_survives_the_round_trip(stored: StoredJob) -> None:
    back = from_row(to_row(stored))
    assert back == stored
    assert type(back.priority) is Priority


def test_row_columns_in_order() -> None:
    row = to_row(JOBS[3])
    assert dict(zip(COLUMNS, row, strict=True)) == {
        "handle": b"H:test:4",
        "function": b"resize",
        "unique_key": b"-",
        "data": b"payload 4",
        "priority": 1,
        "run_at": 0,
        "reducer": b"sum\x00it",
        "attempts": 0,
    }
    assert type(row[4]) is int  # not the enum: drivers store plain integers


def test_bytes_like_fields_become_bytes_going_in() -> None:
    given = StoredJob(
        handle=bytearray(b"H:x:1"),  # type: ignore[arg-type]
        function=memoryview(b"f"),  # type: ignore[arg-type]
        unique=bytearray(b"u"),  # type: ignore[arg-type]
        data=memoryview(b"d\x00"),  # type: ignore[arg-type]
        reducer=bytearray(b"r"),  # type: ignore[arg-type]
    )
    row = to_row(given)
    assert row == (b"H:x:1", b"f", b"u", b"d\x00", 1, None, b"r", 0)
    assert all(type(v) is bytes for v in (*row[:4], row[6]))


def test_blobs_a_driver_returns_as_memoryview_become_bytes_coming_out() -> None:
    row = (memoryview(b"H:x:1"), memoryview(b"f"), b"u", bytearray(b"d"), 2, 7, None, 1)
    back = from_row(row)
    assert back == StoredJob(b"H:x:1", b"f", b"u", b"d", Priority.LOW, 7, None, 1)
    assert all(type(v) is bytes for v in (back.handle, back.function, back.data))


def test_a_row_with_an_unknown_priority_is_refused() -> None:
    with pytest.raises(ValueError, match="Priority"):
        from_row((b"H:x:1", b"f", b"u", b"d", 9, None, None, 0))
