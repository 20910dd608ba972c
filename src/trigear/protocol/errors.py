"""The error model of the protocol core, in the style of h11.

Two axes, and nothing else escapes the codec:

* :class:`RemoteProtocolError` -- the *peer* sent something we cannot accept.  It
  carries what the server should answer: an ``ERROR`` packet (gearmand's code and text
  from spec section 2) and whether the connection must then be closed because the byte
  stream is no longer in sync (rule S20).  A decoder raises nothing but this, whatever
  the bytes.
* :class:`LocalProtocolError` -- *our* side asked the codec to send something the
  protocol cannot express (a NUL inside a function name, a unique over the limit).  It is
  a programming error in the caller, raised before a single byte is produced.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of every error the protocol core raises."""


class LocalProtocolError(ProtocolError):
    """We tried to encode something the protocol cannot carry."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    ``code`` and ``text`` are what a server sends back in an ``ERROR`` packet (``None``
    when there is nothing sensible to answer).  ``close`` says the stream is out of sync
    (or not worth keeping) and the connection must be closed after the answer.
    """

    def __init__(
        self,
        message: str,
        *,
        code: bytes | None = None,
        text: bytes | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self._text = text
        self.close = close

    @property
    def error_text(self) -> bytes:
        """The text to put in an ``ERROR`` packet: gearmand's wording where it has one."""
        return self._text if self._text is not None else self.message.encode()

    def __repr__(self) -> str:
        return f"RemoteProtocolError({self.message!r}, code={self.code!r}, close={self.close!r})"
