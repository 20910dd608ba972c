"""trigear's sans-IO Gearman protocol core: events, codec, limits, errors, admin text.

Nothing here does I/O, imports trio, or reads a clock; see ``docs/protocol.md``.
"""

from .admin import AdminRequest, parse_admin_line
from .codec import (
    NEED_DATA,
    REQ,
    RES,
    Decoder,
    Role,
    check,
    encode,
    encode_many,
    encode_request,
    encode_response,
)
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .limits import DEFAULT_LIMITS, Limits
from .packets import *  # noqa: F403
from .packets import __all__ as _packet_names

__all__ = [
    "DEFAULT_LIMITS",
    "NEED_DATA",
    "REQ",
    "RES",
    "AdminRequest",
    "Decoder",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "check",
    "encode",
    "encode_many",
    "encode_request",
    "encode_response",
    "parse_admin_line",
    *_packet_names,
]
