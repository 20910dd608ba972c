"""Admin listings as Rich tables (``trigear admin`` and ``top``) and as JSON.

Names, uniques and client ids are bytes on the wire; they are shown as UTF-8, with any
byte that is not escaped (``\\xff``), so nothing is lost or mistaken in either form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from ..protocol.admin import JobRow, PriorityStatusRow, StatusRow, WorkerRow

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["LISTINGS", "render_listing", "text", "to_json"]

#: The commands whose answer is a listing (a table); the others answer with one value.
LISTINGS = frozenset({"status", "prioritystatus", "workers", "show-jobs", "show-unique-jobs"})

_COLUMNS: dict[str, tuple[str, ...]] = {
    "status": ("function", "queued", "running", "workers"),
    "prioritystatus": ("function", "high", "normal", "low", "workers"),
    "workers": ("fd", "ip", "client id", "functions"),
    "show-jobs": ("handle", "retries", "ignore", "persisted"),
    "show-unique-jobs": ("unique",),
    # trigear admin top: status and prioritystatus in one.
    "queues": ("function", "high", "normal", "low", "running", "workers"),
}
_NUMERIC = {
    "queued",
    "running",
    "workers",
    "high",
    "normal",
    "low",
    "fd",
    "retries",
    "ignore",
    "persisted",
}


def text(value: bytes) -> str:
    return value.decode("utf-8", errors="backslashreplace")


def cells(command: str, row: Any) -> tuple[str, ...]:
    """One listing row as table cells (``queued`` is ``status``'s total minus running)."""
    if isinstance(row, StatusRow):
        return (
            text(row.function),
            str(row.total - row.running),
            str(row.running),
            str(row.workers),
        )
    if isinstance(row, PriorityStatusRow):
        return (text(row.function), *(str(n) for n in row[1:]))
    if isinstance(row, WorkerRow):
        return (
            str(row.fd),
            text(row.ip),
            text(row.client_id),
            " ".join(text(f) for f in row.functions),
        )
    if isinstance(row, JobRow):
        return (text(row.handle), str(row.retries), str(row.ignore), str(row.persisted))
    assert isinstance(row, bytes), (command, row)
    return (text(row),)


def table(command: str, title: str | None = None, server_column: bool = False) -> Table:
    """An empty table with the columns of ``command``'s listing."""
    t = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False
    )
    if server_column:
        t.add_column("server", no_wrap=True)
    for name in _COLUMNS[command]:
        t.add_column(name, justify="right" if name in _NUMERIC else "left", overflow="fold")
    return t


def render_listing(
    command: str, answers: Sequence[tuple[str, Sequence[Any]]], several: bool
) -> Table:
    """One table of every server's rows (a server column when there are several)."""
    t = table(command, server_column=several)
    for address, rows in answers:
        for row in rows:
            t.add_row(*((address,) if several else ()), *cells(command, row))
    return t


def to_json(command: str, address: str, value: Any, error: str | None) -> dict[str, Any]:
    """One server's answer as a JSON object: ``{"server": ..., "<command>": ...}``, or
    ``{"server": ..., "error": ...}``."""
    if error is not None:
        return {"server": address, "error": error}
    key = command.replace("-", "_")
    if command in LISTINGS:
        return {"server": address, key: [_row_json(row) for row in value]}
    return {"server": address, key: "OK" if value is None else value}


def _row_json(row: Any) -> Any:
    if isinstance(row, bytes):
        return text(row)
    if isinstance(row, WorkerRow):
        return {
            "fd": row.fd,
            "ip": text(row.ip),
            "client_id": text(row.client_id),
            "functions": [text(f) for f in row.functions],
        }
    out: dict[str, Any] = {}
    for name, value in row._asdict().items():
        out[name] = text(value) if isinstance(value, bytes) else value
    if isinstance(row, StatusRow):
        out["queued"] = row.total - row.running
    return out
