"""The command line's TLS and ACL flags, as an operator uses them: ``trigear
--tls-cert --tls-ca --acl --plain-listen`` in a process, the client commands' ``--tls*``
flags against it, SIGHUP reloading the ACL (and keeping it when the new file is bad),
and one readable line with status 2 for every mistake."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from ..certs import Pki
from ..peers import free_port
from .cli_helpers import TRIGEAR, plain_env, trigear_cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ACL = """
[plain]
loopback = "local"

[identity.local]
admin = ["read"]

[identity.ops]
admin = ["*"]

[identity.web]
submit = ["resize"]
"""


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path, tls: int, plain: int) -> None:
        self.proc = proc
        self.log = log
        self.tls = f"127.0.0.1:{tls}"
        self.plain = f"127.0.0.1:{plain}"

    def wait_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged:\n{self.log.read_text()}")
            time.sleep(0.05)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
def served(pki: Pki, tmp_path: Path) -> Iterator[Served]:
    acl = tmp_path / "acl.toml"
    acl.write_text(ACL)
    log = tmp_path / "server.log"
    tls, plain = free_port(), free_port()
    argv = [
        *TRIGEAR,
        "-p",
        str(tls),
        "--tls-cert",
        str(pki.server_file),
        "--tls-ca",
        str(pki.ca_file),
        "--plain-listen",
        f"127.0.0.1:{plain}",
        "--acl",
        str(acl),
        "-l",
        str(log),
    ]
    proc = subprocess.Popen(argv, env=plain_env())
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", plain), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
    served = Served(proc, log, tls, plain)
    yield served
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert "Traceback" not in log.read_text()


def as_(pki: Pki, name: str) -> list[str]:
    cert, key = pki.client_files(name)
    return ["--tls-ca", str(pki.ca_file), "--tls-cert", str(cert), "--tls-key", str(key)]


def test_the_server_says_where_it_speaks_tls(served: Served) -> None:
    served.wait_log("(TLS, client certificates required)")
    served.wait_log(f"{served.plain}, store")
    served.wait_log("(TOML): 3 identities")


def test_client_commands_over_tls_as_their_identity(served: Served, pki: Pki) -> None:
    ok = trigear_cli("admin", "-s", served.tls, *as_(pki, "ops"), "maxqueue", "resize", "5")
    assert ok.returncode == 0, ok.stderr
    queued = trigear_cli("submit", "-s", served.tls, *as_(pki, "web"), "-b", "-f", "resize", "x")
    assert queued.returncode == 0, queued.stderr
    refused = trigear_cli("submit", "-s", served.tls, *as_(pki, "web"), "-b", "-f", "other", "x")
    assert refused.returncode == 1
    assert b"PERMISSION_DENIED" in refused.stderr
    served.wait_log("refused SubmitJobBg to 'other' from web (127.0.0.1)")
    # Local tools that cannot speak TLS use the plain port, as the loopback identity.
    status = trigear_cli("admin", "-s", served.plain, "--json", "status")
    assert status.returncode == 0, status.stderr
    assert b'"resize"' in status.stdout
    denied = trigear_cli("admin", "-s", served.plain, "shutdown")
    assert denied.returncode == 1
    assert b"PERMISSION_DENIED" in denied.stderr


def test_sighup_reloads_the_acl_and_keeps_it_when_the_new_one_is_bad(
    served: Served, pki: Pki, tmp_path: Path
) -> None:
    submit = ["submit", "-s", served.tls, *as_(pki, "web"), "-b", "-f", "thumb", "x"]
    assert trigear_cli(*submit).returncode == 1
    (tmp_path / "acl.toml").write_text(ACL.replace('submit = ["resize"]', 'submit = ["*"]'))
    served.proc.send_signal(signal.SIGHUP)
    served.wait_log("SIGHUP: access control list reloaded")
    assert trigear_cli(*submit).returncode == 0
    (tmp_path / "acl.toml").write_text("[identity.web]\nsubmit = [1]\n")
    served.proc.send_signal(signal.SIGHUP)
    served.wait_log("SIGHUP: the access control list in force stays")
    assert trigear_cli(*submit).returncode == 0
    assert served.proc.poll() is None


def test_a_client_without_a_certificate_is_refused(served: Served, pki: Pki) -> None:
    result = trigear_cli("admin", "-s", served.tls, "--tls-ca", str(pki.ca_file), "status")
    # Under TLS 1.3 the client's side of the handshake is done before the server checks
    # for a certificate: the refusal (an alert the server sends) ends the command, so
    # this is a broken connection (1), not an unreachable server (2).
    assert result.returncode == 1
    assert b"alert certificate required" in result.stderr
    served.wait_log("TLS handshake failed: peer did not return a certificate")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-key", "k.pem"], "--tls-key needs --tls-cert"),
        (["--tls-ca", "ca.pem"], "--tls-ca needs --tls-cert"),
        (["--tls-cert", "/nonexistent.pem"], "cannot use the TLS files"),
        (["--plain-listen", "nohost"], "--plain-listen: 'nohost' is not HOST:PORT"),
        (["--acl", "/nonexistent.toml"], "--acl: cannot read ACL file"),
    ],
)
def test_server_mistakes_are_one_line_and_status_2(args: list[str], message: str) -> None:
    result = trigear_cli("-p", str(free_port()), *args, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_a_bad_acl_file_is_named_with_what_is_wrong(tmp_path: Path) -> None:
    acl = tmp_path / "acl.toml"
    acl.write_text('[identity.web]\nadmin = ["reboot"]\n')
    result = trigear_cli("-p", str(free_port()), "--acl", str(acl), timeout=30)
    assert result.returncode == 2
    assert b"unknown admin command 'reboot'" in result.stderr


@pytest.mark.parametrize("command", ["submit", "work", "admin"])
def test_client_tls_mistakes_are_one_line_and_status_2(command: str) -> None:
    extra = {"submit": ["-f", "f", "x"], "work": ["-f", "f", "--", "cat"], "admin": ["status"]}
    result = trigear_cli(command, "--tls-key", "k.pem", *extra[command])
    assert result.returncode == 2
    assert b"--tls-key needs --tls-cert" in result.stderr
    result = trigear_cli(command, "--tls-ca", "/nonexistent.pem", *extra[command])
    assert result.returncode == 2
    assert b"cannot use the TLS files" in result.stderr
