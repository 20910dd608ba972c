"""Build the hot modules with mypyc where possible, and ship pure Python where not.

The project's metadata is in pyproject.toml; this file only adds the compiled extension
modules, as black and mypy ship themselves.  ``TRIGEAR_COMPILE`` decides:

* unset: compile a wheel or ``pip install .`` when mypyc and a C compiler are there,
  and fall back to pure Python (with a warning) when compiling fails; an editable
  install (``pip install -e``) stays pure, so coverage and edits work as usual;
* ``1``: compile, and fail the build if that cannot be done (CI uses this);
* ``0``: pure Python.

At run time ``trigear.compiled`` (and ``trigear --version``) tells which one is loaded.
docs/performance.md says which modules are compiled and why.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The modules compiled: where a server spends its time per packet, measured under load
#: (docs/performance.md).  Each is plain typed Python that also runs uncompiled.
#: ``server/messages.py`` is not among them: its frozen dataclasses name a type imported
#: only for type checking, which a compiled dataclass cannot resolve at import.
COMPILED = [
    "src/trigear/protocol/decoder.py",
    "src/trigear/protocol/bodies.py",
    "src/trigear/protocol/encoder.py",
    "src/trigear/server/dispatcher.py",
    "src/trigear/server/scheduler.py",
    "src/trigear/server/functions.py",
    "src/trigear/server/results.py",
    "src/trigear/server/stored.py",
    "src/trigear/server/tally.py",
    # The Trio side of the hot path: each connection's reader and direct writes, the
    # dispatcher task's loop, and the hand-over of output between them.
    "src/trigear/server/connection.py",
    "src/trigear/server/dispatcher_task.py",
    "src/trigear/server/delivery.py",
    "src/trigear/server/state.py",
    "src/trigear/server/output.py",
    "src/trigear/server/jobindex.py",
]

#: setup.py commands that build code; the others (metadata, sdist, and the editable
#: install's editable_wheel, which stays pure) need no mypyc run.
_BUILDING = {"bdist_wheel", "build", "build_ext", "install"}


def _mode() -> str:
    """What TRIGEAR_COMPILE asks: "1" (must compile), "0" (pure) or "" (if possible)."""
    value = os.environ.get("TRIGEAR_COMPILE", "").strip().lower()
    if value in ("1", "yes", "true", "on"):
        return "1"
    if value in ("0", "no", "false", "off"):
        return "0"
    if value:
        sys.exit(f"TRIGEAR_COMPILE must be 1 or 0, not {value!r}")
    return ""


class _OptionalBuildExt(build_ext):
    """build_ext that, unless compiling was forced, turns a failed build into a pure
    Python package: every extension or none (a half-built set would not import)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            if _mode() == "1":
                raise
            warnings.warn(
                f"trigear: compiling failed ({exc}); installing pure Python", stacklevel=1
            )
            for ext in self.extensions:
                path = self.get_ext_fullpath(ext.name)
                if os.path.exists(path):
                    os.remove(path)
            self.extensions = []


def _ext_modules() -> list[Any]:
    mode = _mode()
    if mode == "0" or not _BUILDING.intersection(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        if mode == "1":
            raise
        return []
    try:
        # The Trio-side modules need trio's types to compile their calls into it (the
        # build requires trio, see pyproject.toml); the modules they import are read
        # without reporting on them.
        flags = ["--follow-imports=silent"]
        return list(mypycify([*flags, *COMPILED], opt_level="3", group_name="trigear"))
    except BaseException as exc:  # mypyc reports type errors with SystemExit
        if mode == "1":
            raise
        warnings.warn(f"trigear: mypyc failed ({exc!r}); installing pure Python", stacklevel=1)
        return []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _OptionalBuildExt})
