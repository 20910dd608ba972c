"""``trigear`` / ``python -m trigear``: the job server, and the operator's tools beside it.

``trigear [FLAGS]`` runs the server, as it always has (gearmand's flags, so it can stand
in for gearmand in scripts); ``trigear serve [FLAGS]`` is the same, spelled out.  The
other commands are Gearman peers that work against any Gearman server:

* ``trigear submit`` -- a client: run jobs, stream their output and progress
  (:mod:`.submit`);
* ``trigear work`` -- a worker that runs a shell command for each job (:mod:`.work`);
* ``trigear admin`` -- the admin protocol as tables, JSON, or a live ``top``
  (:mod:`.admin`).

Each command's module is imported only when that command runs, so the server never
loads the client side and the client tools never load the server.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

#: Subcommand -> what it does (``trigear --help`` lists them).
COMMANDS: dict[str, str] = {
    "serve": "run the job server (the default when no command is given)",
    "submit": "submit jobs to Gearman servers and print their results",
    "work": "serve a Gearman function by running a command for each job",
    "admin": "ask Gearman servers for status, workers, jobs; a live 'top' view",
}


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``trigear ARGV``; exits with the command's status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        module = importlib.import_module(f"{__name__}.{args[0]}")
        module.main(args[1:])
        return
    if args and not args[0].startswith("-"):
        known = ", ".join(COMMANDS)
        sys.stderr.write(f"trigear: unknown command {args[0]!r} (commands: {known})\n")
        raise SystemExit(2)
    from . import serve

    serve.main(args, prog="trigear")
