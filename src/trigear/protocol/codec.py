"""Bytes to events and events to bytes, with no I/O: the codec's public names in one place.

The decoder lives in :mod:`.decoder` (framing, incremental decoding, the errors it
raises), the encoder in :mod:`.encoder` (the unchecked fast paths and the checked
``encode``), and the frame's constants in :mod:`.framing`.
"""

from __future__ import annotations

from .decoder import NEED_DATA, Decoder
from .encoder import check, encode, encode_many, encode_request, encode_response
from .framing import REQ, RES, Role

__all__ = [
    "NEED_DATA",
    "REQ",
    "RES",
    "Decoder",
    "Role",
    "check",
    "encode",
    "encode_many",
    "encode_request",
    "encode_response",
]
