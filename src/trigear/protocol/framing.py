"""The frame's fixed parts: which end reads which magic, the magics and the header.

Spec section 1: a binary packet is a 12-byte header (magic, type, body length) then the
body.  The decoder (:mod:`.decoder`) and the encoder (:mod:`.encoder`) share these.
"""

from __future__ import annotations

import enum
from struct import Struct
from typing import Final

__all__ = ["MAX_NUMBER", "REQ", "RES", "Role"]


REQ: Final = b"\0REQ"
RES: Final = b"\0RES"
_REQ_INT: Final = 0x00524551
_RES_INT: Final = 0x00524553
_HEAD3: Final = Struct(">III")


class Role(enum.Enum):
    """Which end of a connection the codec serves."""

    #: Reads ``\\0REQ`` packets and admin text lines, writes ``\\0RES`` packets.
    SERVER = "server"
    #: A client or a worker: reads ``\\0RES`` packets, writes ``\\0REQ`` packets.
    CLIENT = "client"


# Enum attribute lookups are slow on the encode path; keep the members at module level.
_SERVER: Final = Role.SERVER
_CLIENT: Final = Role.CLIENT


#: Largest number a numeric argument may hold (they are 64-bit in gearmand).
MAX_NUMBER: Final = 2**64 - 1
