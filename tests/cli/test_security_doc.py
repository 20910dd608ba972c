"""docs/security.md stays true: its private-CA commands run as they stand and the
server serves with what they make, and every ACL example in it parses."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from trigear.server.acl import Acl

from ..peers import free_port, require_binary
from .cli_helpers import TRIGEAR, plain_env, trigear_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_the_acl_examples_parse() -> None:
    example, reference = blocks("toml")
    acl = Acl.from_toml(example)
    assert set(acl.rules) == {"web", "worker", "ops"}
    full = Acl.from_toml(reference)
    assert full.loopback == "loopback"
    assert full.grants(("web",)).may_submit(b"thumbnail-small")
    (geard,) = blocks("ini")
    assert Acl.from_geard(geard).grants(("web.example.com",)).may_submit(b"resize-large")


@pytest.mark.timeout(120)
def test_the_private_ca_commands_make_what_the_server_serves_with(tmp_path: Path) -> None:
    require_binary("openssl")
    (script,) = [b for b in blocks("sh") if "openssl req -x509" in b]
    made = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, timeout=60)
    assert made.returncode == 0, made.stderr
    (tmp_path / "acl.toml").write_text(blocks("toml")[0])
    port = free_port()
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [*TRIGEAR, "-p", str(port), "--tls-cert", "server.pem", "--tls-key", "server.key",
         "--tls-ca", "ca.pem", "--acl", "acl.toml", "-l", str(log)],
        cwd=tmp_path,
        env=plain_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while "listening on" not in (log.read_text() if log.exists() else ""):
            assert server.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)

        def as_(who: str) -> list[str]:
            cert, key = str(tmp_path / f"{who}.pem"), str(tmp_path / f"{who}.key")
            ca = str(tmp_path / "ca.pem")
            return ["-s", f"127.0.0.1:{port}", "--tls-ca", ca, "--tls-cert", cert, "--tls-key", key]

        assert trigear_cli("submit", *as_("web"), "-b", "-f", "resize", "x").returncode == 0
        refused = trigear_cli("submit", *as_("web"), "-b", "-f", "payroll", "x")
        assert b"web may not submit to 'payroll'" in refused.stderr
        status = trigear_cli("admin", *as_("ops"), "--json", "status")
        assert status.returncode == 0, status.stderr
        assert b'"resize"' in status.stdout
        assert trigear_cli("admin", *as_("ops"), "shutdown").returncode == 1
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(15) == 0
