"""Access control by identity: who may submit to a function, work on it, or run an admin
command.

Gearman has no authentication: whoever reaches the port may submit any job, register
for any function (and so read every payload) or shut the server down.  An :class:`Acl`
grants each *identity* what it may do, and nothing else (deny by default, as python
``gear``'s server does):

* An identity is a name.  A TLS connection that showed a client certificate has the
  names of that certificate: its subject's common name first, then its
  subjectAltName entries (:func:`trigear.server.tls.certificate_names`).  Any other
  connection (plain text, or TLS without a client certificate) is named by where it
  comes from: ``loopback`` for 127.0.0.0/8 and ::1, ``anonymous`` for the rest, both
  renamable in the file.  The first name is *the* identity: logs show it and jobs
  belong to it.
* A rule grants ``submit`` (functions it may submit jobs to), ``register`` (functions
  it may do as a worker) and ``admin`` (admin commands).  A connection gets the union of
  the rules of all its names and of the rule named ``*``, which applies to everyone.

Two file formats are read (:meth:`Acl.load` tells them apart, see ``docs/security.md``):
trigear's TOML, with glob patterns, and the INI file of python ``gear``'s ``geard``,
with a section per certificate common name and ``register``, ``invoke`` (regular
expressions matched at the start of the name, as gear matches them) and ``grant``.

The checks run for every packet that names a function or a job, so :class:`Grants`
remembers each answer per function name: after the first packet for a function, a
check is one dict lookup.  With no ACL configured none of this runs at all
(:mod:`trigear.server.guard` is not installed).
"""

from __future__ import annotations

import configparser
import contextlib
import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "ADMIN_COMMANDS",
    "ADMIN_READ",
    "ADMIN_WRITE",
    "Acl",
    "AclError",
    "Grants",
    "Rule",
    "admin_command",
]

#: Admin commands that only read server state.
ADMIN_READ: Final = (
    "status",
    "prioritystatus",
    "workers",
    "show jobs",
    "show unique jobs",
    "version",
    "getpid",
    "verbose",
)
#: Admin commands that change server state.
ADMIN_WRITE: Final = ("cancel job", "create function", "drop function", "maxqueue", "shutdown")
ADMIN_COMMANDS: Final = ADMIN_READ + ADMIN_WRITE
#: Words an ``admin`` list may hold besides command names.
_ADMIN_GROUPS: Final = {"read": ADMIN_READ, "write": ADMIN_WRITE, "*": ADMIN_COMMANDS}

#: The rule that applies to every connection, whatever its names.
EVERYONE: Final = "*"
DEFAULT_LOOPBACK: Final = "loopback"
DEFAULT_REMOTE: Final = "anonymous"

#: Answers a :class:`Grants` remembers per kind before it starts over (a peer sending
#: ever new function names must not grow the cache without bound).
_CACHE_LIMIT: Final = 4096


class AclError(ValueError):
    """An ACL file that cannot be used; the message says where and why."""


def admin_command(command: bytes, args: tuple[bytes, ...]) -> str | None:
    """The :data:`ADMIN_COMMANDS` name of a parsed admin line, or None for a command
    that is not one (it is answered as unknown and does nothing)."""
    word = command.lower()
    if word == b"show":
        return "show unique jobs" if args and args[0].lower() == b"unique" else "show jobs"
    if word == b"cancel":
        return "cancel job"
    if word == b"create":
        return "create function"
    if word == b"drop":
        return "drop function"
    name = word.decode("ascii", "replace")
    return name if name in ADMIN_COMMANDS else None


@dataclass(frozen=True, slots=True)
class Rule:
    """What one identity may do.  Patterns are compiled regular expressions, matched
    with ``match`` against the function name (decoded as UTF-8)."""

    submit: tuple[re.Pattern[str], ...] = ()
    register: tuple[re.Pattern[str], ...] = ()
    admin: frozenset[str] = frozenset()
    #: geard's rule: ``invoke`` also allows ``cancel job`` on the jobs it may submit.
    cancel_submitted: bool = False


def _name(function: bytes) -> str:
    return function.decode("utf-8", "surrogateescape")


def _matches(patterns: Sequence[re.Pattern[str]], function: bytes) -> bool:
    text = _name(function)
    return any(p.match(text) for p in patterns)


class Grants:
    """The union of the rules that apply to one connection, with its answers cached."""

    __slots__ = ("_registers", "_submits", "admin", "cancel_submitted", "register", "submit")

    def __init__(self, rules: Iterable[Rule]) -> None:
        rules = list(rules)
        self.submit = tuple(p for r in rules for p in r.submit)
        self.register = tuple(p for r in rules for p in r.register)
        self.admin: frozenset[str] = frozenset().union(*(r.admin for r in rules))
        self.cancel_submitted = any(r.cancel_submitted for r in rules)
        self._submits: dict[bytes, bool] = {}
        self._registers: dict[bytes, bool] = {}

    def may_submit(self, function: bytes) -> bool:
        """May submit jobs to ``function``."""
        ok = self._submits.get(function)
        if ok is None:
            if len(self._submits) >= _CACHE_LIMIT:
                self._submits.clear()
            ok = self._submits[function] = _matches(self.submit, function)
        return ok

    def may_register(self, function: bytes) -> bool:
        """May register as a worker for ``function`` (CAN_DO)."""
        ok = self._registers.get(function)
        if ok is None:
            if len(self._registers) >= _CACHE_LIMIT:
                self._registers.clear()
            ok = self._registers[function] = _matches(self.register, function)
        return ok

    def may_admin(self, command: str) -> bool:
        """May run the admin command ``command`` (an :data:`ADMIN_COMMANDS` name)."""
        return command in self.admin


@dataclass(frozen=True, slots=True)
class Acl:
    """An access control list: rules by identity, and the names of connections that show
    no certificate.  Immutable: a reload builds a new one."""

    rules: Mapping[str, Rule] = field(default_factory=dict)
    #: The identity of connections without a certificate from loopback.
    loopback: str = DEFAULT_LOOPBACK
    #: The identity of connections without a certificate from anywhere else.
    remote: str = DEFAULT_REMOTE
    #: Where it was read from and in which format, for the logs.
    source: str = "(built in code)"
    #: Things in the file trigear reads but does not act on (logged when loaded).
    notes: tuple[str, ...] = ()

    def names(self, certificate: Sequence[str], loopback: bool) -> tuple[str, ...]:
        """A connection's names: its certificate's, or the plain name for where it is."""
        if certificate:
            return tuple(certificate)
        return (self.loopback if loopback else self.remote,)

    def grants(self, names: Sequence[str]) -> Grants:
        """What a connection with ``names`` may do."""
        rules = [self.rules[n] for n in dict.fromkeys((*names, EVERYONE)) if n in self.rules]
        return Grants(rules)

    # --- reading files ------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Acl:
        """Read an ACL file: trigear's TOML, or geard's INI file.

        A file that is not TOML, or whose tables are not trigear's (``[plain]``,
        ``[identity.NAME]``), is read as geard's if it can be.  Raises
        :class:`AclError` for a file that cannot be read or used.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AclError(f"cannot read ACL file {str(path)!r}: {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as toml_error:
            try:
                return cls.from_geard(text, source=f"{path} (geard format)")
            except AclError as exc:
                raise AclError(
                    f"{path}: neither TOML ({toml_error}) nor geard's format ({exc})"
                ) from None
        if not set(data) <= {"plain", "identity"}:
            # Not trigear's tables: geard's INI file can be valid TOML too
            # ("[admin]\ngrant=true").  If it is not geard's either, say what is wrong
            # with it as TOML.
            with contextlib.suppress(AclError):
                return cls.from_geard(text, source=f"{path} (geard format)")
        return cls.from_dict(data, source=f"{path} (TOML)")

    @classmethod
    def from_toml(cls, text: str, *, source: str = "(TOML text)") -> Acl:
        """trigear's format (``docs/security.md``)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AclError(f"{source}: {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "(built in code)") -> Acl:
        """trigear's format, already parsed: a dict as :func:`tomllib.loads` returns
        it, such as ``{"identity": {"web": {"submit": ["resize"]}}}``."""
        _only(data, ("plain", "identity"), source)
        plain = _table(data.get("plain", {}), f"{source}: [plain]")
        _only(plain, ("loopback", "remote"), f"{source}: [plain]")
        loopback = _identity_name(plain.get("loopback", DEFAULT_LOOPBACK), f"{source}: [plain]")
        remote = _identity_name(plain.get("remote", DEFAULT_REMOTE), f"{source}: [plain]")
        rules: dict[str, Rule] = {}
        for name, body in _table(data.get("identity", {}), f"{source}: [identity]").items():
            where = f"{source}: [identity.{_quoted(name)}]"
            _identity_name(name, where)
            table = _table(body, where)
            _only(table, ("submit", "register", "admin"), where)
            rules[name] = Rule(
                submit=_globs(table.get("submit", []), f"{where} submit"),
                register=_globs(table.get("register", []), f"{where} register"),
                admin=_admin(table.get("admin", []), f"{where} admin"),
            )
        return cls(rules, loopback, remote, source)

    @classmethod
    def from_geard(cls, text: str, *, source: str = "(geard ACL text)") -> Acl:
        """python ``gear``'s ``geard --acl`` file: a section per certificate common name,
        ``register`` and ``invoke`` regular expressions (matched at the start of the
        function name, as gear does), ``grant`` a boolean.

        As under geard, every connection may read the status listings, and ``invoke``
        also allows ``cancel job`` for the jobs of the functions it matches.  ``grant``
        allows geard's ``acl grant``/``acl revoke`` commands, which trigear does not
        have (edit the file and send SIGHUP instead): it is noted, and grants nothing.
        """
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(text, source=source)
        except configparser.Error as exc:
            raise AclError(f"{source}: {exc}") from None
        rules: dict[str, Rule] = {EVERYONE: Rule(admin=frozenset(ADMIN_READ))}
        notes: list[str] = []
        for section in parser.sections():
            where = f"{source}: [{section}]"
            _only(parser[section], ("register", "invoke", "grant"), where)
            register = parser.get(section, "register", fallback="")
            invoke = parser.get(section, "invoke", fallback="")
            try:
                grant = parser.getboolean(section, "grant", fallback=False)
            except ValueError as exc:
                raise AclError(f"{where} grant: {exc}") from None
            if grant:
                notes.append(
                    f"[{section}] grant = true: trigear has no 'acl grant' command; "
                    "edit the file and send SIGHUP instead"
                )
            previous = rules.get(section, Rule())
            rules[section] = Rule(
                submit=previous.submit + _regexes(invoke, f"{where} invoke"),
                register=previous.register + _regexes(register, f"{where} register"),
                admin=previous.admin,
                cancel_submitted=previous.cancel_submitted or bool(invoke),
            )
        return cls(rules, source=source, notes=tuple(notes))


# --- validation helpers -------------------------------------------------------------------


def _geard_like(value: object) -> bool:
    return isinstance(value, dict) and bool(value) and set(value) <= {"register", "invoke", "grant"}


def _quoted(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


def _only(table: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(keys))
    if unknown:
        allowed = ", ".join(keys)
        raise AclError(f"{where}: unknown key {unknown[0]!r} (allowed: {allowed})")


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AclError(f"{where}: expected a table, got {type(value).__name__}")
    return value


def _identity_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AclError(f"{where}: an identity must be a non-empty string, not {value!r}")
    return value


def _strings(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AclError(f"{where}: expected a list of non-empty strings, not {value!r}")
    return value


def _globs(value: object, where: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fnmatch.translate(g)) for g in _strings(value, where))


def _regexes(text: str, where: str) -> tuple[re.Pattern[str], ...]:
    if not text:
        return ()
    try:
        return (re.compile(text),)
    except re.error as exc:
        raise AclError(f"{where}: bad regular expression {text!r}: {exc}") from None


def _admin(value: object, where: str) -> frozenset[str]:
    granted: set[str] = set()
    for word in _strings(value, where):
        w = " ".join(word.lower().split())
        if w in _ADMIN_GROUPS:
            granted.update(_ADMIN_GROUPS[w])
        elif w in ADMIN_COMMANDS:
            granted.add(w)
        else:
            choices = ", ".join(repr(c) for c in (*_ADMIN_GROUPS, *ADMIN_COMMANDS))
            raise AclError(f"{where}: unknown admin command {word!r} (one of {choices})")
    return frozenset(granted)
