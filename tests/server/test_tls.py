"""TLS end to end over real loopback sockets: the trigear server with TLS listeners and
the trigear client, worker, blocking client and admin client with ``ssl_context=``;
identities from client certificates deciding what the ACL allows; and the ways a
connection fails to become a TLS one (no certificate, an untrusted one, plain text, a
stalled handshake), none of which may hang or delay anyone else."""

from __future__ import annotations

import socket
import ssl
import struct
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio
import trustme

import trigear
from trigear.client.errors import NoServerAvailable, ServerError
from trigear.server import Server, ServerConfig
from trigear.server.acl import Acl
from trigear.server.tls import TLSListener, certificate_names

from ..certs import Pki

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

ACL = Acl.from_toml(
    """
[plain]
loopback = "local"

[identity.local]
admin = ["read"]

[identity.web]
submit = ["reverse"]
admin = ["read"]

[identity.worker]
register = ["reverse"]
"""
)

ECHO_REQ = struct.pack(">4sII", b"\0REQ", 16, 2) + b"hi"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


class Running:
    def __init__(self, server: Server) -> None:
        self.server = server
        ports = [lst.socket.getsockname()[1] for lst in server.listeners]
        self.tls = f"127.0.0.1:{ports[0]}"
        self.plain = f"127.0.0.1:{ports[1]}" if len(ports) > 1 else ""
        self.tls_port = ports[0]


async def tls_failures(server: Server, count: int) -> None:
    """Wait until the server has counted ``count`` failed TLS connections (it counts
    once its side is closed, which may be just after the peer saw the close)."""
    with trio.fail_after(5):
        while server.statistics().tls_failures < count:  # noqa: ASYNC110 - polls a counter
            await trio.sleep(0.01)
    assert server.statistics().tls_failures == count


@asynccontextmanager
async def serving(
    pki: Pki,
    *,
    acl: Acl | None = ACL,
    mutual: bool = True,
    plain: bool = False,
    handshake_timeout: float = 5.0,
) -> AsyncIterator[Running]:
    server = Server(ServerConfig(handshake_timeout=handshake_timeout), acl=acl)
    (tls_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listeners: list[trio.SocketListener | TLSListener] = [
        TLSListener(tls_listener, pki.server_context(mutual=mutual))
    ]
    if plain:
        listeners += await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, listeners)
        yield Running(server)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def reverse_worker(address: str, context: ssl.SSLContext) -> AsyncIterator[trigear.Worker]:
    worker = trigear.Worker(address, ssl_context=context)

    @worker.function("reverse")
    async def reverse(job: trigear.Job) -> bytes:
        return job.data[::-1]

    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        yield worker
        nursery.cancel_scope.cancel()


async def test_client_and_worker_over_mutual_tls(pki: Pki) -> None:
    async with (
        serving(pki) as running,
        reverse_worker(running.tls, pki.client_context("worker")),
        trigear.open_client(running.tls, ssl_context=pki.client_context("web")) as client,
    ):
        assert await client.submit("reverse", "hello") == b"olleh"
        async with client.submit_stream("reverse", "abc") as job:
            assert await job.wait() == b"cba"
        handle = await client.submit_background("reverse", "bg")
        assert (await client.get_status(handle)).known in (True, False)
        async with trigear.open_admin_client(
            running.tls, ssl_context=pki.client_context("web")
        ) as admin:
            (row,) = await admin.status()
            assert (row.function, row.workers) == (b"reverse", 1)
        stats = running.server.statistics()
        assert stats.acl_refusals == 0
        assert stats.tls_failures == 0


async def test_the_certificate_is_the_identity_the_acl_judges(pki: Pki) -> None:
    async with (
        serving(pki) as running,
        reverse_worker(running.tls, pki.client_context("worker")),
        trigear.open_client(running.tls, ssl_context=pki.client_context("intruder")) as intruder,
    ):
        with pytest.raises(ServerError) as refused:
            await intruder.submit("reverse", "x")
        assert refused.value.code == b"PERMISSION_DENIED"
        assert b"intruder may not submit to 'reverse'" in refused.value.text
        # The worker's certificate registers; it does not submit.
        async with trigear.open_client(
            running.tls, ssl_context=pki.client_context("worker")
        ) as worker_as_client:
            with pytest.raises(ServerError, match="PERMISSION_DENIED"):
                await worker_as_client.submit("reverse", "x")
        async with trigear.open_admin_client(
            running.tls, ssl_context=pki.client_context("intruder")
        ) as admin:
            with pytest.raises(ServerError, match="PERMISSION_DENIED"):
                await admin.status()
        assert running.server.statistics().acl_refusals == 3


async def test_a_worker_refused_registration_gets_no_jobs(pki: Pki) -> None:
    async with (
        serving(pki) as running,
        reverse_worker(running.tls, pki.client_context("web")),  # web may not register
        trigear.open_client(running.tls, ssl_context=pki.client_context("web")) as client,
    ):
        handle = await client.submit_background("reverse", "x")
        await trio.sleep(0.2)
        status = await client.get_status(handle)
        assert status.known
        assert not status.running
        async with trigear.open_admin_client(
            running.tls, ssl_context=pki.client_context("web")
        ) as admin:
            (row,) = await admin.status()
            assert (row.total, row.running, row.workers) == (1, 0, 0)
        assert running.server.statistics().acl_refusals == 1


async def test_mutual_tls_refuses_clients_without_a_good_certificate(
    pki: Pki, tmp_path: Path
) -> None:
    no_cert = pki.client_context(None)
    other_ca = ssl.create_default_context()
    pki.ca.configure_trust(other_ca)
    trustme.CA().issue_cert("web.clients.test", common_name="web").configure_cert(other_ca)
    async with serving(pki) as running:
        # The server's alert tells the client why (TLS 1.3: on its first read).
        for context, why in ((no_cert, "certificate required"), (other_ca, "unknown ca")):
            async with trigear.open_client(running.tls, ssl_context=context) as client:
                with pytest.raises(NoServerAvailable, match=why):
                    await client.echo("x")
        await tls_failures(running.server, 2)
        # The server goes on serving the others.
        async with trigear.open_client(running.tls, ssl_context=pki.client_context("web")) as ok:
            assert await ok.echo("still here") == b"still here"


async def test_the_client_refuses_a_server_its_ca_did_not_sign(pki: Pki) -> None:
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    async with (
        serving(pki, mutual=False) as running,
        trigear.open_client(running.tls, ssl_context=stranger) as client,
    ):
        with pytest.raises(
            NoServerAvailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"
        ):
            await client.echo("x")


async def test_tls_without_client_certificates_names_by_address(pki: Pki) -> None:
    async with (
        serving(pki, mutual=False) as running,
        trigear.open_client(running.tls, ssl_context=pki.client_context(None)) as client,
    ):
        assert await client.echo("x") == b"x"
        # No certificate: the plain identity for loopback, "local", which may not submit.
        with pytest.raises(ServerError, match="local may not submit"):
            await client.submit("reverse", "x")


async def test_plain_and_tls_listeners_side_by_side(pki: Pki) -> None:
    async with (
        serving(pki, plain=True) as running,
        reverse_worker(running.tls, pki.client_context("worker")),
    ):
        async with trigear.open_admin_client(running.plain) as admin:
            (row,) = await admin.status()  # "local" may read
            assert row.workers == 1
            with pytest.raises(ServerError, match="PERMISSION_DENIED"):
                await admin.maxqueue("reverse", 3)
        async with trigear.open_client(running.plain) as plain_client:
            with pytest.raises(ServerError, match="local may not submit"):
                await plain_client.submit("reverse", "x")


def _raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a plain socket and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        return got


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        (
            ECHO_REQ,
            b"\0RES" + struct.pack(">II", 19, 38) + b"TLS_REQUIRED\0This port speaks TLS only",
        ),
        (b"status\n", b"ERR TLS_REQUIRED This+port+speaks+TLS+only\r\n"),
    ],
)
async def test_plain_text_on_a_tls_port_is_told_and_closed(
    pki: Pki, sent: bytes, answer: bytes
) -> None:
    async with serving(pki) as running:
        with trio.fail_after(5):
            got = await trio.to_thread.run_sync(_raw_exchange, running.tls_port, sent)
        assert got == answer
        await tls_failures(running.server, 1)


async def test_a_stalled_handshake_delays_nobody_and_is_closed(pki: Pki) -> None:
    async with serving(pki, handshake_timeout=1.0) as running:
        stalled = []
        for first_bytes in (b"", b"\x16\x03\x01"):  # silent, and half a ClientHello
            for _ in range(10):
                s = await trio.open_tcp_stream("127.0.0.1", running.tls_port)
                if first_bytes:
                    await s.send_all(first_bytes)
                stalled.append(s)
        began = trio.current_time()
        async with trigear.open_client(
            running.tls, ssl_context=pki.client_context("web")
        ) as client:
            assert await client.echo("not delayed") == b"not delayed"
        assert trio.current_time() - began < 0.9
        with trio.fail_after(5):
            for s in stalled:
                assert await s.receive_some(100) == b""  # closed by the server
                await s.aclose()
        assert running.server.statistics().tls_failures == len(stalled)


async def test_an_acl_set_while_serving_applies_at_once(pki: Pki) -> None:
    async with (
        serving(pki) as running,
        trigear.open_client(running.tls, ssl_context=pki.client_context("web")) as client,
    ):
        assert await client.submit_background("reverse", "x")
        await running.server.set_acl(Acl())
        with pytest.raises(ServerError, match="PERMISSION_DENIED"):
            await client.submit_background("reverse", "x")
        await running.server.set_acl(None)
        assert await client.submit_background("anything", "x")


def test_the_blocking_client_speaks_tls(pki: Pki) -> None:
    async def main() -> None:
        async with (
            serving(pki) as running,
            reverse_worker(running.tls, pki.client_context("worker")),
        ):
            address = running.tls

            def call() -> bytes:
                context = pki.client_context("web")
                with trigear.BlockingClient(address, ssl_context=context) as client:
                    return client.submit("reverse", "blocking", timeout=10)

            assert await trio.to_thread.run_sync(call) == b"gnikcolb"

    trio.run(main)


def test_certificate_names_are_the_common_name_then_the_alt_names() -> None:
    cert = {
        "subject": ((("organizationName", "Example"),), (("commonName", "web"),)),
        "subjectAltName": (("DNS", "web.example.com"), ("URI", "spiffe://x/web"), ("DNS", "web")),
    }
    assert certificate_names(cert) == ("web", "web.example.com", "spiffe://x/web")
    assert certificate_names({"subjectAltName": (("DNS", "only.san"),)}) == ("only.san",)
    assert certificate_names(None) == ()
    assert certificate_names({}) == ()
