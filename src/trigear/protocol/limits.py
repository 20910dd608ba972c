"""Size limits the codec enforces (spec section 5).

gearmand allocates whatever a packet header declares; trigear checks every declared size
against these limits *before* buffering the bytes, so a hostile header costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds on what a peer may send.  Every field is in bytes."""

    #: Largest packet body accepted (gearmand has none).
    max_body: int = 64 * 1024 * 1024
    #: Longest unique id.  gearmand truncates a 64-byte unique to 63; trigear keeps it (S2).
    max_unique: int = 64
    #: Longest job handle.
    max_handle: int = 64
    #: Longest function name.
    max_function: int = 512
    #: Longest client id given with SET_CLIENT_ID.
    max_client_id: int = 128
    #: Longest admin text line, without its line ending.
    max_admin_line: int = 8 * 1024

    def __post_init__(self) -> None:
        for name in (
            "max_body",
            "max_unique",
            "max_handle",
            "max_function",
            "max_client_id",
            "max_admin_line",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


DEFAULT_LIMITS = Limits()
