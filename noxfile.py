"""Sessions: ``nox`` runs them all; ``nox -s tests`` just the unit and server suite."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "tests_compiled", "lint", "typecheck", "docs", "interop", "fuzz"]
nox.options.reuse_existing_virtualenvs = True

PY = "3.11"


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The whole suite but the real-peer interop tests, with branch coverage; the report
    fails below `fail_under` in pyproject.toml."""
    session.install("-e", ".[test]")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        "-m",
        "not interop",
        *session.posargs,
        env={"TRIGEAR_EXPECT_COMPILED": "0"},
    )
    session.run("coverage", "report", "--skip-covered")


@nox.session(python=PY)
def tests_compiled(session: nox.Session) -> None:
    """The same suite against the package as ``pip install .`` builds it, with the hot
    modules compiled by mypyc (``TRIGEAR_COMPILE=1``: the build fails rather than fall
    back to pure Python).  Installed from a wheel, not editable, so the tests import it
    from site-packages; ``tests/test_build.py`` checks that they do, and that a build
    without a working C compiler installs pure Python."""
    # Reinstall on every run: the sources may have changed since the last build.
    session.run("pip", "uninstall", "-q", "-y", "trigear")
    session.install(".[test]", env={"TRIGEAR_COMPILE": "1"})
    # For the fallback build test, which builds without isolation.
    session.install("setuptools>=77", "mypy>=1.10", "trio>=0.25")
    session.run(
        "pytest",
        "-m",
        "not interop",
        *session.posargs,
        env={"TRIGEAR_EXPECT_COMPILED": "1", "TRIGEAR_BUILD_TESTS": "1"},
    )


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
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing (atheris) of the decoder and of the dispatcher fed
    arbitrary event sequences (fuzz/targets.py), from the seed corpus in fuzz/corpus.
    Seconds per target: the first argument (`nox -s fuzz -- 3600`), else
    $TRIGEAR_FUZZ_SECONDS, else 15 (the short run CI makes).  Any exception but the
    protocol's own errors is a finding: written as crash-* in .nox/fuzz/tmp, and the
    session fails."""
    session.install("-e", ".[fuzz]")
    seconds = (
        session.posargs[0] if session.posargs else os.environ.get("TRIGEAR_FUZZ_SECONDS", "15")
    )
    tmp = session.create_tmp()
    for target in ("decoder", "dispatcher"):
        found = os.path.join(tmp, f"corpus-{target}")
        os.makedirs(found, exist_ok=True)
        session.run(
            "python",
            "fuzz/run.py",
            target,
            f"-max_total_time={seconds}",
            f"-artifact_prefix={tmp}/{target}-",
            "-print_final_stats=1",
            found,
            f"fuzz/corpus/{target}",
        )


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    paths = ["src", "tests", "benchmarks", "fuzz", "noxfile.py", "setup.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


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


@nox.session(python=PY)
def perf(session: nox.Session) -> None:
    """The benchmarks docs/performance.md quotes, against the compiled package, in one
    table (benchmarks/perf_report.py; about 15 minutes).  Not in the default sessions:
    it needs a quiet machine, and ratios from one run only.  ``TRIGEAR_TOOLS`` names the
    directory of bench-vs-gearmand and gearload.c (default ../shared/tools)."""
    session.run("pip", "uninstall", "-q", "-y", "trigear")
    session.install(".", env={"TRIGEAR_COMPILE": "1"})
    tools = os.environ.get("TRIGEAR_TOOLS", os.path.join("..", "shared", "tools"))
    session.run("python", "benchmarks/perf_report.py", "--tools", tools, *session.posargs)
