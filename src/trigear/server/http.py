"""The server's HTTP side (``--http ADDRESS:PORT``): metrics, the status page, submits.

======================  ====================================================================
``GET /metrics``        Prometheus metrics (:mod:`trigear.server.metrics`)
``GET /``               the live status page (:mod:`trigear.server.status_page`)
``GET /api/status``     the page's data as JSON (:mod:`trigear.server.status`)
``POST /job/FUNCTION``  submit a job, the body its payload (:mod:`trigear.server.http_submit`)
======================  ====================================================================

HTTP itself is Hypercorn's: its Trio worker (``hypercorn.trio.serve``; here the
``worker_serve`` under it, given sockets opened first so that a port in use is a
:exc:`~trigear.server.config.ListenError` and not a failure deep in a task) runs in the
server's own nursery beside the Gearman connections, with the small ASGI application
below.  Four routes do not need a web framework; the app is a plain ASGI callable.
Everything it reads it reads in the server's Trio thread, between two dispatcher
passes, so no lock is needed and the dispatcher pays nothing for it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_to_bytes

import trio
from hypercorn.config import Config
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from prometheus_client.exposition import choose_encoder

from .config import ListenError
from .http_submit import BadRequest, Reply, parse_submit, run_submit
from .metrics import registry_for
from .status import History, status
from .status_page import PAGE

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..store.base import Store
    from .config import ServerConfig
    from .dispatcher import Dispatcher

__all__ = ["HttpApp", "HttpHost", "serve_http"]

log = logging.getLogger("trigear.http")

#: The status page may talk to this server only (and run its own inline script).
_PAGE_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        b"connect-src 'self'; img-src 'self'",
    ),
]


class HttpHost(Protocol):
    """What the HTTP side needs of the :class:`~trigear.server.Server`."""

    config: ServerConfig
    dispatcher: Dispatcher
    store: Store

    def connect_in_memory(self, ip: str = "127.0.0.1") -> trio.StapledStream[Any, Any]: ...


class _Gone(Exception):
    """The HTTP client went away."""


class HttpApp:
    """The ASGI application: see the module docstring for the routes."""

    def __init__(self, host: HttpHost) -> None:
        self.host = host
        self.started = time.time()
        self.registry = registry_for(host.dispatcher, host.config.metrics_functions)
        self.history = History(host.dispatcher)

    async def __call__(
        self,
        scope: Any,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        reply: Reply
        if path.startswith("/job/"):
            if method != "POST":
                reply = Reply(405, b"use POST\n", [(b"allow", b"POST")])
            else:
                try:
                    reply = await self._submit(scope, receive)
                except _Gone:
                    return
        elif method not in ("GET", "HEAD"):
            reply = Reply(405, b"use GET\n", [(b"allow", b"GET, HEAD")])
        elif path == "/metrics":
            reply = self._metrics(scope)
        elif path == "/":
            reply = Reply(200, PAGE.encode(), list(_PAGE_HEADERS))
        elif path == "/api/status":
            data = status(
                self.host.dispatcher, self.history, self.host.store.description, self.started
            )
            body = json.dumps(data, separators=(",", ":")).encode()
            reply = Reply(200, body, [(b"content-type", b"application/json")])
        else:
            reply = Reply(404, b"not found: try /, /metrics, /api/status or POST /job/NAME\n")
        await _send(send, reply, head=method == "HEAD")

    def _metrics(self, scope: Any) -> Reply:
        accept = _headers(scope).get(b"accept", b"").decode(errors="replace")
        encoder, content_type = choose_encoder(accept)
        return Reply(200, encoder(self.registry), [(b"content-type", content_type.encode())])

    async def _submit(self, scope: Any, receive: Callable[[], Awaitable[Any]]) -> Reply:
        config = self.host.config
        limits = config.limits
        headers = _headers(scope)
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        function = unquote_to_bytes(raw_path.split(b"?", 1)[0][len(b"/job/") :])
        try:
            request = parse_submit(function, headers, config.http_timeout)
            if len(function) > limits.max_function:
                raise BadRequest(400, f"the function name is over {limits.max_function} bytes")
            if len(request.unique) > limits.max_unique:
                raise BadRequest(400, f"X-Gearman-Unique is over {limits.max_unique} bytes")
            room = limits.max_body - len(function) - len(request.unique) - 2
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > room:
                raise BadRequest(413, f"the body is over {room} bytes")
            data = await _body(receive, room)
        except BadRequest as exc:
            return Reply(exc.status, exc.message.encode() + b"\n")
        client = scope.get("client")
        ip = str(client[0]) if client else "-"
        reply: Reply | None = None
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                # After the body, an ASGI receive() returns only when the client left.
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            stream = self.host.connect_in_memory(ip)
            try:
                reply = await run_submit(stream, request, data, limits)
            finally:
                # Closing the connection cancels a foreground submit (S12).
                await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()
        if reply is None:
            log.info("HTTP client %s left before the result of its %r job", ip, request.function)
            raise _Gone
        return reply


def _headers(scope: Any) -> dict[bytes, bytes]:
    return {bytes(k).lower(): bytes(v) for k, v in scope["headers"]}


async def _body(receive: Callable[[], Awaitable[Any]], limit: int) -> bytes:
    parts = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the body is over {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send(send: Callable[[Any], Awaitable[None]], reply: Reply, *, head: bool) -> None:
    headers = reply.headers
    if not any(k == b"content-type" for k, _ in headers):
        headers = [(b"content-type", b"text/plain; charset=utf-8"), *headers]
    headers = [*headers, (b"content-length", b"%d" % len(reply.body))]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})


async def _lifespan(
    receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve_http(
    host: HttpHost, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the HTTP side at ``host.config.http`` until cancelled; starts with the
    URLs it listens on (``http://127.0.0.1:9101``)."""
    assert host.config.http is not None
    address, port = host.config.http
    bind = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    config = Config()
    config.bind = [bind]
    # Hypercorn's own "Running on ..." line says less than the server's: warnings only.
    hypercorn_log = logging.getLogger("trigear.http.hypercorn")
    hypercorn_log.setLevel(max(hypercorn_log.getEffectiveLevel(), logging.WARNING))
    config.errorlog = hypercorn_log
    config.accesslog = None
    config.graceful_timeout = 1.0
    app = HttpApp(host)
    try:
        sockets = config.create_sockets()
        for sock in sockets.insecure_sockets:
            sock.listen(config.backlog)
    except OSError as exc:
        raise ListenError(f"cannot listen for HTTP on {bind}: {exc}") from exc
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.history.run)
        urls = await nursery.start(
            lambda task_status: worker_serve(
                wrap_app(app, config.wsgi_max_body_size, "asgi"),
                config,
                sockets=sockets,
                task_status=task_status,
            )
        )
        task_status.started(urls)
