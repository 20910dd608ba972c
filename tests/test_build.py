"""The package is built compiled (mypyc) or pure Python, and says which (setup.py).

The nox sessions tell the suite which one they installed: ``tests`` an editable, pure
package (TRIGEAR_EXPECT_COMPILED=0), ``tests_compiled`` a wheel built with
TRIGEAR_COMPILE=1 (TRIGEAR_EXPECT_COMPILED=1), which also runs the fallback build test
(TRIGEAR_BUILD_TESTS=1: it compiles for about a minute).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import trigear
from trigear.protocol import decoder, encoder
from trigear.server import dispatcher

ROOT = Path(__file__).resolve().parent.parent


def test_compiled_is_a_bool_that_matches_the_modules_loaded() -> None:
    assert trigear.compiled is (not (decoder.__file__ or "").endswith(".py"))
    # The hot modules are compiled together or not at all.
    for module in (encoder, dispatcher):
        assert trigear.compiled is (not (module.__file__ or "").endswith(".py"))


@pytest.mark.skipif(
    "TRIGEAR_EXPECT_COMPILED" not in os.environ,
    reason="the nox sessions say which package they installed",
)
def test_the_suite_runs_the_package_the_session_installed() -> None:
    expected = os.environ["TRIGEAR_EXPECT_COMPILED"] == "1"
    assert trigear.compiled is expected
    if expected:
        # Installed, not the source tree: src/ is not on the path.
        assert ROOT / "src" not in Path(trigear.__file__).resolve().parents


def test_version_says_whether_compiled() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trigear", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    build = "compiled with mypyc" if trigear.compiled else "pure Python"
    assert out.strip() == f"trigear {trigear.__version__} ({build})"


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    os.environ.get("TRIGEAR_BUILD_TESTS") != "1",
    reason="builds the package (about a minute): the tests_compiled nox session runs it",
)
def test_a_build_without_a_working_compiler_installs_pure_python(tmp_path: Path) -> None:
    """No C compiler (CC is /bin/false): the wheel still builds, with the ``.py`` files
    only; forcing compilation (TRIGEAR_COMPILE=1) fails the build instead."""
    # A copy of what the build reads: a build/ left by an earlier build would hand over
    # its extensions without compiling.
    tree = tmp_path / "tree"
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tree / name)
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    shutil.copytree(ROOT / "src", tree / "src", ignore=skip)
    env = {**os.environ, "CC": "false", "LDSHARED": "false"}
    env.pop("TRIGEAR_COMPILE", None)
    wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*wheel, "-w", str(tmp_path / "pure"), str(tree)],
        env=env,
        check=True,
        capture_output=True,
    )
    (built,) = (tmp_path / "pure").glob("trigear-*.whl")
    names = zipfile.ZipFile(built).namelist()
    assert "trigear/protocol/decoder.py" in names
    assert not [n for n in names if n.endswith(".so")]

    forced = subprocess.run(
        [*wheel, "-w", str(tmp_path / "forced"), str(tree)],
        env={**env, "TRIGEAR_COMPILE": "1"},
        capture_output=True,
    )
    assert forced.returncode != 0
    assert not list((tmp_path / "forced").glob("trigear-*.whl"))
