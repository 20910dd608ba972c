"""Shared test fixtures.

Real peers (gearmand, the gearman CLI, the Perl server, PostgreSQL) are skipped when absent
on a developer's machine, and a failure when ``TRIGEAR_REQUIRE_PEERS=1`` (set by .ci/run,
which installs them).
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(path_or_name: str) -> str:
    """Return the full path of a peer program, or skip (fail in CI) when it is missing."""
    found = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if found and os.access(found, os.X_OK):
        return found
    missing(f"{path_or_name} is not installed")
    raise AssertionError("unreachable")


def missing(reason: str) -> None:
    """Skip for a missing peer, or fail where peers are required."""
    if os.environ.get("TRIGEAR_REQUIRE_PEERS") == "1":
        pytest.fail(f"required peer missing: {reason}")
    pytest.skip(reason)
