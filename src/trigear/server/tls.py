"""TLS for the server: listeners that speak it, the handshake, and who the peer is.

Rules:

* **The handshake runs in the connection's own task** (:meth:`Server.handle_stream
  <trigear.server.Server.handle_stream>` calls :func:`start_tls`), never in the accept
  loop, and within ``ServerConfig.handshake_timeout``: a peer that connects and stalls
  holds one task and one descriptor until the timeout, and delays nobody else.
* **Plain text on a TLS port is answered, then closed, never left hanging.**  Before the
  handshake the first byte is peeked at: a TLS client starts with a handshake record
  (``0x16``); anything else is a Gearman client or an admin tool that does not speak TLS.
  It gets one ERROR ``TLS_REQUIRED`` in the form it would understand (a binary ERROR
  packet after ``\\0``, an ``ERR`` line otherwise), so ``gearman`` and ``gearadmin``
  print why instead of hanging or failing mutely, and the connection is closed.
* **The peer's identity is its certificate's names** (:func:`certificate_names`): the
  subject's common name, then the subjectAltName entries.  A certificate is asked for
  only with ``ca`` (mutual TLS); it is then required and checked against that CA.
* **The server does not wait for close_notify** (trio's ``https_compatible``): Gearman
  packets frame themselves, and gear, libgearman and most clients close without one.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import trio

from ..protocol.admin import format_error
from ..protocol.encoder import encode_response
from ..protocol.packets import Error

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "HandshakeFailed",
    "TLSListener",
    "certificate_names",
    "server_ssl_context",
    "start_tls",
]

#: The first byte of a TLS record that carries a handshake (a ClientHello).
_TLS_HANDSHAKE: Final = 0x16
_REFUSAL_TEXT: Final = "This port speaks TLS only"
_REFUSAL_PACKET: Final = encode_response(Error(b"TLS_REQUIRED", _REFUSAL_TEXT.encode()))
_REFUSAL_LINE: Final = format_error("TLS_REQUIRED", _REFUSAL_TEXT)
#: How long, and how much, a refused plain-text peer is read from before closing.
_LINGER: Final = 1.0
_LINGER_BYTES: Final = 65536


class TLSListener(NamedTuple):
    """A socket listener whose connections must speak TLS with ``context`` (pass it to
    :meth:`Server.serve <trigear.server.Server.serve>` beside plain listeners)."""

    listener: trio.SocketListener
    context: ssl.SSLContext


class HandshakeFailed(Exception):
    """The connection did not become a TLS connection; the message says why."""


def server_ssl_context(
    cert: str | Path, key: str | Path | None = None, ca: str | Path | None = None
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later, the certificate chain ``cert`` (with its
    private ``key``, unless ``cert`` holds it too), and with ``ca`` mutual TLS: every
    client must show a certificate that ``ca`` signed.

    Raises :class:`OSError` or :class:`ssl.SSLError` for files that cannot be used.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def certificate_names(cert: dict[str, Any] | None) -> tuple[str, ...]:
    """The names a verified peer certificate (``SSLObject.getpeercert()``) gives: the
    subject's common name, then each subjectAltName value (DNS, URI, email, IP address),
    without repeats.  Empty for no certificate."""
    if not cert:
        return ()
    names: list[str] = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(str(value))
    for _kind, value in cert.get("subjectAltName", ()):
        names.append(str(value))
    return tuple(dict.fromkeys(n for n in names if n))


async def start_tls(
    stream: trio.SocketStream, context: ssl.SSLContext
) -> tuple[trio.SSLStream[trio.SocketStream], tuple[str, ...]]:
    """Turn an accepted connection into a TLS one: the stream, and the names of the
    client's certificate (empty without one).  The caller bounds the time it takes.

    Raises :class:`HandshakeFailed` for a peer that closed, spoke plain text (after it
    was told), or failed the handshake (no certificate, one the CA did not sign, no
    common protocol version).
    """
    first = await _peek(stream)
    if not first:
        raise HandshakeFailed("closed before the TLS handshake")
    if first[0] != _TLS_HANDSHAKE:
        await _refuse(stream, _REFUSAL_PACKET if first[0] == 0 else _REFUSAL_LINE)
        kind = "binary Gearman" if first[0] == 0 else "text"
        raise HandshakeFailed(f"plain {kind} on a TLS port: told TLS_REQUIRED, closed")
    tls = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        cause = exc.__cause__
        reason = _reason(cause) if cause is not None else "the connection closed"
        await _send_alert(tls, stream)
        raise HandshakeFailed(f"TLS handshake failed: {reason}") from None
    return tls, certificate_names(tls.getpeercert())


async def _refuse(stream: trio.SocketStream, refusal: bytes) -> None:
    """Send ``refusal``, then close gently: a socket closed with unread input sends a
    reset, which can destroy the refusal before the peer reads it.  So: end our side,
    and read (and drop) what the peer sends until it closes too, for at most
    :data:`_LINGER` seconds and :data:`_LINGER_BYTES` bytes."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(refusal)
        await stream.send_eof()
        with trio.move_on_after(_LINGER):
            drained = 0
            while drained < _LINGER_BYTES:
                chunk = await stream.receive_some(_LINGER_BYTES)
                if not chunk:
                    break
                drained += len(chunk)


async def _send_alert(tls: trio.SSLStream[trio.SocketStream], stream: trio.SocketStream) -> None:
    """Send the alert OpenSSL queued when the handshake failed, which trio leaves unsent.
    Under TLS 1.3 a client's handshake is over before the server checks its certificate,
    so without the alert a client with no (or a bad) certificate sees the connection
    close for no reason; with it, its next read says "certificate required" or "unknown
    ca".  trio keeps the queue in a private attribute: if that ever changes, the client
    sees a bare close again, nothing worse."""
    outgoing = getattr(tls, "_outgoing", None)
    if isinstance(outgoing, ssl.MemoryBIO) and outgoing.pending:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(outgoing.read())


async def _peek(stream: trio.SocketStream) -> bytes:
    try:
        return await stream.socket.recv(1, socket.MSG_PEEK)
    except OSError:
        return b""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__
