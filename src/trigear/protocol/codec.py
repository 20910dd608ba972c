"""Bytes to events and events to bytes, with no I/O.

Framing (spec section 1): a binary packet is a 12-byte header -- magic, type and body
length -- then the body, whose arguments are separated by NUL bytes; the last argument
runs to the end of the body and may hold NULs itself.  A server's stream may also carry
text admin lines: a first byte other than NUL starts a line that runs to ``\\n``.

The :class:`Decoder` is incremental: feed it bytes split anywhere with
:meth:`Decoder.receive_data`, then take events with :meth:`Decoder.next_event` (one at a
time, ``NEED_DATA`` when the buffer holds no whole packet) or
:meth:`Decoder.receive_events` (all of them, the hot path).  It never buffers more than one
packet body (at most ``Limits.max_body``) plus the bytes it was fed last: sizes a header
declares are checked before anything is buffered for them.

Errors follow :mod:`trigear.protocol.errors`: anything wrong with the input raises
:class:`RemoteProtocolError` and nothing else.  When the frame could be delimited (a
complete header told us where the packet ends), the decoder skips the bad packet and stays
usable (``close`` is false); otherwise ``close`` is true and the decoder refuses further
input.

This module gathers the codec's public names: the decoder lives in :mod:`.decoder`, the
encoder in :mod:`.encoder`, and the frame's constants in :mod:`.framing`.
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
