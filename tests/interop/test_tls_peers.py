"""TLS with real peers (docs/security.md, "Interoperability"):

* python ``gear``'s TLS client and worker against the trigear server with mutual TLS and
  a geard-format ACL: jobs run, refusals reach gear as errors it understands, and a
  refused CAN_DO leaves gear's worker connected (an unasked-for ERROR would not);
* the trigear client, worker and admin client against gear's own server, ``geard
  --ssl-ca --ssl-cert --ssl-key``;
* what geard's ACL and Debian's gearmand ``--ssl`` actually do, as the docs say.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import gear
import pytest

import trigear
from trigear.client.errors import NoServerAvailable

from ..certs import Pki
from ..peers import free_port, require_binary
from .interop_helpers import GEARMAND, HOST, ServerProc, start_gearmand, stop, wait_port, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .conftest import StartServer

pytestmark = [
    pytest.mark.interop,
    # gear calls threading's deprecated camelCase names (notifyAll, ...).
    pytest.mark.filterwarnings("ignore::DeprecationWarning:gear"),
]

WAIT = 10.0
GEARD_ACL = """
[worker]
register=resize.*

[web]
invoke=resize
"""


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def gear_tls(pki: Pki, name: str) -> dict[str, str]:
    """gear's TLS arguments for client ``name`` (one PEM file holds key and chain)."""
    cert, key = pki.client_files(name)
    return {"ssl_key": str(key), "ssl_cert": str(cert), "ssl_ca": str(pki.ca_file)}


@pytest.fixture
def trigear_tls(
    start_trigear_server: StartServer, pki: Pki, tmp_path: Path
) -> tuple[ServerProc, Pki]:
    acl = tmp_path / "geard.acl"
    acl.write_text(GEARD_ACL)
    server = start_trigear_server(
        "--tls-cert", str(pki.server_file), "--tls-ca", str(pki.ca_file), "--acl", str(acl)
    )
    return server, pki


@pytest.fixture
def gear_peers() -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(cls: type[Any], port: int, tls: dict[str, str]) -> Any:
        peer = cls(f"tls-{cls.__name__.lower()}")
        made.append(peer)
        peer.addServer(HOST, port, **tls)
        peer.waitForServer(WAIT)
        return peer

    yield make
    for peer in made:
        peer.shutdown()


def get_job(worker: gear.Worker) -> Any:
    timer = threading.Timer(WAIT, worker.stopWaitingForJobs)
    timer.start()
    try:
        return worker.getJob()
    finally:
        timer.cancel()
        timer.join()


def admin(client: gear.Client, request: gear.AdminRequest) -> bytes:
    client.active_connections[0].sendAdminRequest(request, timeout=WAIT)
    return request.response  # type: ignore[no-any-return]


# --- gear against trigear ------------------------------------------------------------------


def test_gear_tls_client_and_worker_against_trigear(
    trigear_tls: tuple[ServerProc, Pki], gear_peers: Callable[..., Any]
) -> None:
    server, pki = trigear_tls
    worker = gear_peers(gear.Worker, server.port, gear_tls(pki, "worker"))
    worker.registerFunction("resize")
    client = gear_peers(gear.Client, server.port, gear_tls(pki, "web"))
    job = gear.Job("resize", b"hello\0world", unique="u1")
    client.submitJob(job, timeout=WAIT)
    assert job.handle.startswith(b"H:")
    wj = get_job(worker)
    assert (wj.name, wj.arguments, wj.unique) == ("resize", b"hello\0world", b"u1")
    wj.sendWorkStatus(1, 2)
    wj.sendWorkComplete(b"done")
    wait_until(lambda: job.complete, WAIT, "the job to complete over TLS")
    assert job.data == [b"done"]
    assert (job.numerator, job.denominator) == (b"1", b"2")
    assert admin(client, gear.StatusAdminRequest()) == b"resize\t0\t0\t1\n.\n"
    assert "Traceback" not in server.output()


def test_gear_sees_trigears_refusals_as_errors_it_understands(
    trigear_tls: tuple[ServerProc, Pki], gear_peers: Callable[..., Any]
) -> None:
    server, pki = trigear_tls
    # gear takes the ERROR in place of JOB_CREATED, as from its own server's ACL.
    web = gear_peers(gear.Client, server.port, gear_tls(pki, "web"))
    with pytest.raises(gear.GearmanError, match="Unable to submit job"):
        web.submitJob(gear.Job("payroll", b"x"), timeout=WAIT)
    intruder = gear_peers(gear.Client, server.port, gear_tls(pki, "intruder"))
    with pytest.raises(gear.GearmanError, match="Unable to submit job"):
        intruder.submitJob(gear.Job("resize", b"x"), timeout=WAIT)
    cancel = admin(intruder, gear.CancelJobAdminRequest(b"H:x:1"))
    assert cancel == b"ERR PERMISSION_DENIED Permission+denied+by+ACL\r\n"
    # geard lets anyone read the status; so does trigear reading geard's file.
    assert admin(intruder, gear.StatusAdminRequest()) == b".\n"
    # The client that was refused goes on working.
    job = gear.Job("resize", b"x")
    web.submitJob(job, background=True, timeout=WAIT)
    assert job.handle
    log = server.output()
    assert "refused SubmitJob to 'payroll' from web (127.0.0.1)" in log
    assert "refused SubmitJob to 'resize' from intruder (127.0.0.1)" in log


def test_a_refused_can_do_leaves_gears_worker_connected(
    trigear_tls: tuple[ServerProc, Pki], gear_peers: Callable[..., Any]
) -> None:
    """CAN_DO has no answer: trigear refuses it silently (gear's worker would drop the
    connection on an ERROR it did not ask for, and reconnect in a loop)."""
    server, pki = trigear_tls
    worker = gear_peers(gear.Worker, server.port, gear_tls(pki, "worker"))
    worker.registerFunction("payroll")
    worker.registerFunction("resize-small")
    client = gear_peers(gear.Client, server.port, gear_tls(pki, "web"))
    wait_until(
        lambda: b"resize-small" in admin(client, gear.WorkersAdminRequest()),
        WAIT,
        "the permitted function to be registered",
    )
    time.sleep(0.5)  # time for reconnects, if there were any
    workers = admin(client, gear.WorkersAdminRequest())
    lines = [line for line in workers.split(b"\n") if b" :" in line]
    registered = [line.split(b" :")[1].split() for line in lines]
    assert [b"resize-small"] in registered
    assert not any(b"payroll" in names for names in registered)
    assert len(lines) == 2  # the worker and the client: no reconnects
    assert server.output().count("refused CanDo 'payroll' from worker") == 1


# --- trigear against geard -----------------------------------------------------------------


def geard_binary() -> str:
    found = shutil.which("geard") or str(Path(sys.executable).parent / "geard")
    return require_binary(found)


@pytest.fixture
def start_geard(pki: Pki, tmp_path: Path) -> Iterator[Callable[..., ServerProc]]:
    started: list[ServerProc] = []

    def start(*extra: str) -> ServerProc:
        port = free_port()
        log = tmp_path / f"geard-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    geard_binary(),
                    "-d",
                    "-p",
                    str(port),
                    "--listen-address",
                    HOST,
                    "--ssl-ca",
                    str(pki.ca_file),
                    "--ssl-cert",
                    str(pki.server_file),
                    "--ssl-key",
                    str(pki.server_file),
                    *extra,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        server = ServerProc("geard", port, proc, log)
        started.append(server)
        wait_port(port, proc)
        return server

    yield start
    for server in started:
        stop(server.proc)


async def test_trigear_client_worker_and_admin_against_geard_tls(
    start_geard: Callable[..., ServerProc], pki: Pki
) -> None:
    geard = start_geard()
    address = f"{HOST}:{geard.port}"
    worker = trigear.Worker(address, ssl_context=pki.client_context("worker"))

    @worker.function("reverse")
    async def reverse(job: trigear.Job) -> bytes:
        await job.send_status(1, 2)
        return job.data[::-1]

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            context = pki.client_context("web")
            async with trigear.open_client(address, ssl_context=context) as client:
                assert await client.submit("reverse", "hello") == b"olleh"
                async with client.submit_stream("reverse", "abc") as job:
                    updates = [update async for update in job]
                assert updates == [trigear.StatusUpdate(1, 2)]
                assert job.result == b"cba"
                handle = await client.submit_background("reverse", "bg")
                assert handle.startswith(b"H:")
            async with trigear.open_admin_client(address, ssl_context=context) as adm:
                rows = await adm.status()
                assert [(r.function, r.workers) for r in rows] == [(b"reverse", 1)]
            tg.cancel_scope.cancel()


async def test_geard_refuses_a_trigear_client_without_a_certificate(
    start_geard: Callable[..., ServerProc], pki: Pki
) -> None:
    geard = start_geard()
    async with trigear.open_client(
        f"{HOST}:{geard.port}", ssl_context=pki.client_context(None)
    ) as client:
        with anyio.fail_after(WAIT), pytest.raises(NoServerAvailable):
            await client.echo("x")


async def test_geards_own_acl_check_fails_under_python_3(
    start_geard: Callable[..., ServerProc], pki: Pki, tmp_path: Path
) -> None:
    """gear 0.16 matches its ACL's str patterns against bytes function names: every
    checked packet raises TypeError and geard drops the connection.  docs/security.md
    says so; trigear reads the same file and applies it."""
    acl = tmp_path / "geard.acl"
    acl.write_text(GEARD_ACL)
    geard = start_geard("--acl", str(acl))
    async with trigear.open_client(
        f"{HOST}:{geard.port}", ssl_context=pki.client_context("web")
    ) as client:
        with anyio.fail_after(WAIT), pytest.raises(NoServerAvailable):
            await client.submit_background("resize", "x")
    assert "cannot use a string pattern on a bytes-like object" in geard.output()


# --- Debian's gearmand ---------------------------------------------------------------------


def test_debians_gearmand_accepts_ssl_flags_and_speaks_plain_text(tmp_path: Path, pki: Pki) -> None:
    """gearmand 1.1.20 in Debian is built without TLS: ``--ssl`` is accepted and logged
    ("with SSL: true"), but the port answers plain Gearman and no TLS handshake."""
    key = tmp_path / "key.pem"
    cert = tmp_path / "cert.pem"
    pki.server.private_key_pem.write_to_path(key)
    pki.server.cert_chain_pems[0].write_to_path(cert)
    server = start_gearmand(
        tmp_path,
        require_binary(GEARMAND),
        "--ssl",
        "--ssl-ca-file",
        str(pki.ca_file),
        "--ssl-certificate",
        str(cert),
        "--ssl-key",
        str(key),
        "--verbose",
        "INFO",
    )
    try:
        with socket.create_connection((HOST, server.port), timeout=WAIT) as plain:
            plain.sendall(b"\0REQ" + (16).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"hi")
            assert (
                plain.recv(64)
                == b"\0RES" + (17).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"hi"
            )
        context = pki.client_context(None)
        with (
            socket.create_connection((HOST, server.port), timeout=WAIT) as raw,
            pytest.raises((ssl.SSLError, OSError)),
        ):
            context.wrap_socket(raw, server_hostname=HOST)
        assert "with SSL: true" in server.output()
    finally:
        stop(server.proc)
