"""HTTP submits (``POST /job/FUNCTION``): the request read into a submit, and the
submit's outcome into a reply.

The submit goes through the server itself, as a Gearman client on an in-memory
connection (:meth:`Server.connect_in_memory <trigear.server.Server.connect_in_memory>`)
speaking the protocol through the sans-IO codec.  So an HTTP submit is a submit like any
other: the same connection code, limits, access control (the HTTP client's address is
the connection's), coalescing, metrics and admin listings, and when the HTTP client goes
away before its result the connection closes, which cancels a foreground submit as for a
dropped Gearman client (S12).  The server's own listener and the client library were the
other way: a TCP round trip per request, a failure mode (the listener busy or TLS-only)
of its own, and the server would load the client side, which it never does.

Headers (case does not matter): ``X-Gearman-Unique``, ``X-Gearman-Background: true``,
``X-Gearman-Priority: high|normal|low``, ``X-Gearman-Timeout: SECONDS``.  Replies:

=====  ==========================================================================
200    WORK_COMPLETE: the body is the result (WORK_DATA chunks, then the final part)
202    a background job was queued; the body is its handle
400    a bad header or function name
403    the access control list refused the submit
413    the body is larger than the server takes (``--max-packet-size``)
500    WORK_FAIL (``job failed``) or WORK_EXCEPTION (its text)
503    the queue is full, or the server is shutting down or could not store the job
504    no result within the timeout; the submit is cancelled
=====  ==========================================================================

Every reply to a submit that got a handle carries it in ``X-Gearman-Job-Handle``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..protocol.codec import Decoder, Role, encode_request
from ..protocol.errors import RemoteProtocolError
from ..protocol.packets import (
    Error,
    JobCreated,
    OptionReq,
    SubmitJob,
    SubmitJobBg,
    SubmitJobHigh,
    SubmitJobHighBg,
    SubmitJobLow,
    SubmitJobLowBg,
    WorkComplete,
    WorkData,
    WorkException,
    WorkFail,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..protocol.limits import Limits
    from ..protocol.packets import Event

__all__ = ["BadRequest", "Reply", "SubmitRequest", "parse_submit", "run_submit"]

_PACKETS: dict[tuple[str, bool], Callable[[bytes, bytes, bytes], Event]] = {
    ("high", False): SubmitJobHigh,
    ("normal", False): SubmitJob,
    ("low", False): SubmitJobLow,
    ("high", True): SubmitJobHighBg,
    ("normal", True): SubmitJobBg,
    ("low", True): SubmitJobLowBg,
}
#: A Gearman ERROR code -> the HTTP status it answers.
_ERROR_STATUS = {b"PERMISSION_DENIED": 403, b"QUEUE_ERROR": 503}


class BadRequest(Exception):
    """A request that cannot be a submit: its HTTP status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    function: bytes
    unique: bytes = b""
    background: bool = False
    priority: str = "normal"
    #: Seconds the reply may take; math.inf: no limit.
    timeout: float = math.inf


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def parse_submit(
    function: bytes, headers: dict[bytes, bytes], default_timeout: float
) -> SubmitRequest:
    """The submit a ``POST /job/FUNCTION`` asks for; :exc:`BadRequest` (400) if the
    function name or a header is not one."""
    if not function or any(c in function for c in b"\0\t\r\n"):
        raise BadRequest(400, "the function name must be non-empty, without NUL, tabs or newlines")
    unique = headers.get(b"x-gearman-unique", b"")
    if b"\0" in unique:
        raise BadRequest(400, "X-Gearman-Unique must not contain NUL")
    bg_text = headers.get(b"x-gearman-background", b"false").strip().lower()
    if bg_text not in (b"true", b"false", b"1", b"0", b"yes", b"no"):
        raise BadRequest(400, "X-Gearman-Background must be true or false")
    prio = headers.get(b"x-gearman-priority", b"normal").strip().lower()
    if prio not in (b"high", b"normal", b"low"):
        raise BadRequest(400, "X-Gearman-Priority must be high, normal or low")
    timeout = default_timeout
    if b"x-gearman-timeout" in headers:
        text = headers[b"x-gearman-timeout"].decode(errors="replace")
        try:
            timeout = float(text)
        except ValueError:
            timeout = math.nan
        if not 0 < timeout < math.inf:
            raise BadRequest(400, "X-Gearman-Timeout must be a number of seconds above 0")
    return SubmitRequest(
        function, unique, bg_text in (b"true", b"1", b"yes"), prio.decode(), timeout
    )


async def run_submit(
    stream: trio.abc.Stream, request: SubmitRequest, data: bytes, limits: Limits
) -> Reply:
    """Submit over ``stream`` (a fresh connection to the server) and wait for the
    outcome, at most ``request.timeout`` seconds.  The caller closes the stream: for a
    foreground job given up, that is what cancels it."""
    packet = _PACKETS[request.priority, request.background]
    out = encode_request(packet(request.function, request.unique, data))
    if not request.background:
        # WORK_EXCEPTION comes only to clients that ask for it (S7).
        out = encode_request(OptionReq(b"exceptions")) + out
    handle = b""
    with trio.move_on_after(request.timeout):
        await stream.send_all(out)
        decoder = Decoder(Role.CLIENT, limits)
        chunks: list[bytes] = []
        while True:
            received = await stream.receive_some(1 << 16)
            if not received:
                return _reply(502, "the server closed the connection", handle)
            decoder.receive_data(bytes(received))
            try:
                events = decoder.receive_events()
            except RemoteProtocolError as exc:  # pragma: no cover - our own server
                return _reply(502, f"bad answer from the server: {exc}", handle)
            for event in events:
                if isinstance(event, JobCreated):
                    handle = event.handle
                    if request.background:
                        return Reply(202, handle + b"\n", _handle_header(handle))
                elif isinstance(event, WorkData):
                    chunks.append(event.data)
                elif isinstance(event, WorkComplete):
                    chunks.append(event.data)
                    return Reply(200, b"".join(chunks), _handle_header(handle))
                elif isinstance(event, WorkFail):
                    return _reply(500, "job failed (WORK_FAIL)", handle)
                elif isinstance(event, WorkException):
                    return Reply(500, event.data, _handle_header(handle))
                elif isinstance(event, Error):
                    status = _ERROR_STATUS.get(event.code, 502)
                    text = f"{event.code.decode()}: {event.text.decode(errors='replace')}"
                    return _reply(status, text, handle)
                # OPTION_RES, WORK_STATUS and WORK_WARNING need no answer.
    what = "no result" if handle else "no handle"
    return _reply(504, f"{what} within {request.timeout:g} s; the submit is cancelled", handle)


def _handle_header(handle: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"x-gearman-job-handle", handle)] if handle else []


def _reply(status: int, message: str, handle: bytes) -> Reply:
    return Reply(status, message.encode() + b"\n", _handle_header(handle))
