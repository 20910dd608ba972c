"""``python -m trigear``: placeholder until the server lands."""

from __future__ import annotations

import sys

from . import __version__


def main(argv: list[str] | None = None) -> None:
    print(f"trigear {__version__}")
    sys.exit(0)
