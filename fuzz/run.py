"""Run a fuzz target under atheris (coverage-guided, libFuzzer):

    python fuzz/run.py decoder|dispatcher [libFuzzer flags] [corpus dirs]

``nox -s fuzz`` runs both for a given time with the seed corpus in ``fuzz/corpus``.
A finding is written as ``crash-*`` and the run fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parent))

with atheris.instrument_imports(include=["trigear", "targets"]):
    import targets


def main() -> None:
    name = sys.argv.pop(1)
    target = targets.TARGETS[name]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
