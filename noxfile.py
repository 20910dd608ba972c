"""Sessions: ``nox`` runs them all; ``nox -s tests`` just the unit and server suite."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs", "interop"]
nox.options.reuse_existing_virtualenvs = True

PY = "3.11"


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The whole suite but the real-peer interop tests, with branch coverage; the report
    fails below `fail_under` in pyproject.toml."""
    session.install("-e", ".[test]")
    session.run("coverage", "run", "-m", "pytest", "-m", "not interop", *session.posargs)
    session.run("coverage", "report", "--skip-covered")


@nox.session(python=PY)
def interop(session: nox.Session) -> None:
    """Against real peers: gearmand, the gearman CLI and gearadmin, gear, the Perl server,
    and PHP, Perl and Node clients and workers (npm deps: tests/interop/peers/node)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "interop", *session.posargs)


@nox.session(python=PY)
def chaos(session: nox.Session) -> None:
    """The full chaos acceptance run of servers sharing a store (docs/cluster.md): three
    servers on a throwaway PostgreSQL cluster under 30 kill -9s, a 15 s SIGSTOP and a
    PostgreSQL crash, every criterion checked and the figures printed.  The `tests`
    session runs the same test with 8 kills."""
    session.install("-e", ".[test]")
    kills = os.environ.get("TRIGEAR_CHAOS_KILLS", "30")
    session.run(
        "pytest",
        "-s",
        "tests/cluster/test_chaos.py",
        *session.posargs,
        env={"TRIGEAR_CHAOS_KILLS": kills},
    )


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src")


@nox.session(python=PY)
def docs(session: nox.Session) -> None:
    """The documentation site (Sphinx): the markdown pages and the API reference from the
    docstrings, with every warning an error.  HTML lands in docs/_build/html."""
    session.install("-e", ".[docs,http]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs", "docs/_build/html"
    )
