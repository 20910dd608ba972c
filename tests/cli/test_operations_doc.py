"""docs/operations.md stays true to the commands: every flag and admin command is there,
and the systemd units' command lines parse with the real parsers."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from trigear.cli import admin, serve, submit, work

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def units() -> list[dict[str, str]]:
    """The ``[Service]`` settings of each ``ini`` block."""
    blocks = re.findall(r"```ini\n(.*?)```", DOC.read_text(), re.S)
    out = []
    for block in blocks:
        settings = {}
        for line in block.splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                settings[key.strip()] = value.strip()
        out.append(settings)
    return out


def test_the_server_unit_runs_a_valid_command_and_waits_for_the_drain() -> None:
    server_unit, _ = units()
    argv = shlex.split(server_unit["ExecStart"])
    assert argv[:2] == ["/opt/trigear/bin/trigear", "serve"]
    args = serve.build_parser().parse_args(argv[2:])
    assert args.store.startswith("sqlite:")
    assert int(server_unit["TimeoutStopSec"]) > args.shutdown_timeout
    assert server_unit["KillSignal"] == "SIGTERM"
    assert server_unit["RestartPreventExitStatus"] == "2"


def test_the_worker_unit_runs_a_valid_command() -> None:
    _, worker_unit = units()
    line = worker_unit["ExecStart"].replace("%i", "thumbnail").replace("%H", "host")
    argv = shlex.split(line)
    assert argv[:2] == ["/opt/trigear/bin/trigear", "work"]
    i = argv.index("--")
    args = work.build_parser().parse_args(argv[2:i])
    assert args.function == ["thumbnail"]
    assert argv[i + 1 :] == ["/opt/trigear/jobs/thumbnail"]


@pytest.mark.parametrize("module", [submit, work, admin])
def test_every_flag_is_documented(module: object) -> None:
    text = DOC.read_text()
    parser = module.build_parser()  # type: ignore[attr-defined]
    for action in parser._actions:
        for flag in action.option_strings:
            if flag in ("-h", "--help"):
                continue
            assert f"`{flag}" in text or f" {flag} " in text, flag


def test_every_admin_command_is_documented() -> None:
    text = DOC.read_text()
    parser = admin.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"`{name}" in text or f"({name})" in text or f"(`{name}`)" in text, name
