"""The access control list: both file formats, how a connection's names become its
grants, and the errors a bad file gets (docs/security.md, "The ACL file")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from trigear.server.acl import ADMIN_COMMANDS, ADMIN_READ, ADMIN_WRITE, Acl, AclError, admin_command

if TYPE_CHECKING:
    from pathlib import Path

TOML = """
[plain]
loopback = "local"

[identity.local]
submit = ["*"]
register = ["*"]
admin = ["*"]

[identity."web.example.com"]
submit = ["resize", "thumb-*"]
admin = ["read"]

[identity.ops]
admin = ["status", "cancel job", "MaxQueue"]

[identity."*"]
admin = ["version"]
"""

GEARD = """
[worker.example.com]
register=resize|thumb-.*

[web.example.com]
invoke=thumb-

[admin.example.com]
grant=true
"""


def test_toml_grants_per_identity() -> None:
    acl = Acl.from_toml(TOML)
    web = acl.grants(acl.names(("web.example.com",), loopback=False))
    assert web.may_submit(b"resize")
    assert web.may_submit(b"thumb-small")
    assert not web.may_submit(b"resize2")  # globs match the whole name
    assert not web.may_submit(b"thumb")
    assert not web.may_register(b"resize")
    assert {c for c in ADMIN_COMMANDS if web.may_admin(c)} == set(ADMIN_READ)

    ops = acl.grants(("ops",))
    assert {c for c in ADMIN_COMMANDS if ops.may_admin(c)} == {
        "status",
        "cancel job",
        "maxqueue",
        "version",  # from "*", which everyone gets
    }
    assert not ops.may_submit(b"resize")


def test_unlisted_identities_get_only_what_everyone_gets() -> None:
    acl = Acl.from_toml(TOML)
    stranger = acl.grants(acl.names(("stranger",), loopback=True))
    assert not stranger.may_submit(b"resize")
    assert not stranger.may_register(b"resize")
    assert [c for c in ADMIN_COMMANDS if stranger.may_admin(c)] == ["version"]


def test_plain_connections_are_named_by_where_they_come_from() -> None:
    acl = Acl.from_toml(TOML)
    assert acl.names((), loopback=True) == ("local",)
    assert acl.names((), loopback=False) == ("anonymous",)
    assert acl.names(("cn", "san"), loopback=True) == ("cn", "san")
    local = acl.grants(acl.names((), loopback=True))
    assert local.may_submit(b"anything")
    assert local.may_register(b"\xff\x00odd")
    assert all(local.may_admin(c) for c in ADMIN_COMMANDS)
    anonymous = acl.grants(acl.names((), loopback=False))
    assert not anonymous.may_submit(b"resize")


def test_a_connection_gets_the_union_of_its_names_rules() -> None:
    acl = Acl.from_toml(
        '[identity.a]\nsubmit = ["x"]\n[identity."a.example"]\nregister = ["y"]\nadmin = ["write"]'
    )
    both = acl.grants(("a", "a.example"))
    assert both.may_submit(b"x")
    assert both.may_register(b"y")
    assert {c for c in ADMIN_COMMANDS if both.may_admin(c)} == set(ADMIN_WRITE)


def test_function_names_that_are_not_utf8_still_match_globs() -> None:
    acl = Acl.from_toml('[identity.a]\nsubmit = ["job-*"]')
    grants = acl.grants(("a",))
    assert grants.may_submit(b"job-\xff\xfe")
    assert not grants.may_submit(b"jo\xffb")


def test_answers_are_remembered_and_the_memory_is_bounded() -> None:
    grants = Acl.from_toml('[identity.a]\nsubmit = ["f-*"]').grants(("a",))
    for i in range(10_000):
        assert grants.may_submit(b"f-%d" % i)
        assert not grants.may_submit(b"g-%d" % i)
    assert len(grants._submits) <= 4096


def test_geard_format_is_read_as_geard_reads_it() -> None:
    acl = Acl.from_geard(GEARD)
    worker = acl.grants(("worker.example.com",))
    assert worker.may_register(b"resize")
    assert worker.may_register(b"thumb-x")
    # gear compiles the expression and calls match(): anchored at the start only.
    assert worker.may_register(b"resize-and-more")
    assert not worker.may_register(b"big-resize")
    assert not worker.may_submit(b"resize")
    web = acl.grants(("web.example.com",))
    assert web.may_submit(b"thumb-small")
    assert web.cancel_submitted
    assert not web.may_register(b"thumb-small")
    # geard answers status and workers to anyone, and has no other admin checks.
    assert {c for c in ADMIN_COMMANDS if web.may_admin(c)} == set(ADMIN_READ)
    assert not acl.grants(("stranger",)).may_submit(b"thumb-x")
    assert acl.notes
    assert "grant" in acl.notes[0]


def test_load_tells_the_formats_apart(tmp_path: Path) -> None:
    toml = tmp_path / "acl.toml"
    toml.write_text(TOML)
    assert "TOML" in Acl.load(toml).source
    geard = tmp_path / "acl.conf"
    geard.write_text(GEARD)
    assert "geard" in Acl.load(geard).source
    # Valid TOML whose tables hold only geard's keys is geard's file.
    ambiguous = tmp_path / "ambiguous.conf"
    ambiguous.write_text("[admin.example.com]\ngrant=true\n")
    loaded = Acl.load(ambiguous)
    assert "geard" in loaded.source
    assert "admin.example.com" in loaded.rules


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[identity.a]\nsubmitt = ['x']", "unknown key 'submitt'"),
        ("[identity.a]\nadmin = ['reboot']", "unknown admin command 'reboot'"),
        ("[identity.a]\nsubmit = 'x'\nregister = [1]", "list of non-empty strings"),
        ("[identity.a]\nsubmit = ['']", "list of non-empty strings"),
        ("[plain]\nloopback = ''", "non-empty string"),
        ("[plain]\nlocal = 'x'", "unknown key 'local'"),
        ("[identities.a]\nsubmit = ['x']", "unknown key 'identities'"),
        ("identity = 3", "expected a table"),
    ],
)
def test_bad_toml_says_where_and_why(text: str, message: str) -> None:
    with pytest.raises(AclError, match=message):
        Acl.from_toml(text, source="acl.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[w]\nregister=(unclosed\n", "bad regular expression"),
        ("[w]\nrgister=.*\n", "unknown key 'rgister'"),
        ("[w]\ngrant=maybe\n", "grant"),
    ],
)
def test_bad_geard_files_say_where_and_why(text: str, message: str) -> None:
    with pytest.raises(AclError, match=message):
        Acl.from_geard(text)


def test_a_file_that_is_neither_format_names_both(tmp_path: Path) -> None:
    path = tmp_path / "broken"
    path.write_text("this is = not [ either\n")
    with pytest.raises(AclError, match=r"neither TOML .* nor geard's format"):
        Acl.load(path)
    with pytest.raises(AclError, match="cannot read ACL file"):
        Acl.load(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("status", "status"),
        ("STATUS", "status"),
        ("prioritystatus", "prioritystatus"),
        ("workers", "workers"),
        ("show jobs", "show jobs"),
        ("show unique jobs", "show unique jobs"),
        ("show", "show jobs"),
        ("cancel job H:x:1", "cancel job"),
        ("create function f", "create function"),
        ("drop function f", "drop function"),
        ("maxqueue f 3", "maxqueue"),
        ("shutdown graceful", "shutdown"),
        ("getpid", "getpid"),
        ("verbose", "verbose"),
        ("version", "version"),
        ("acl list", None),
        ("", None),
    ],
)
def test_admin_lines_map_to_the_names_rules_use(line: str, name: str | None) -> None:
    words = line.encode().split(b" ")
    assert admin_command(words[0].lower(), tuple(w for w in words[1:] if w)) == name
