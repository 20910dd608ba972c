"""Fixtures for the cluster tests: a throwaway PostgreSQL cluster of the test's own.

The machine's PostgreSQL on 5432 is shared with other test runs and is never stopped or
restarted; tests that restart PostgreSQL get a cluster of their own on another port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..peers import Cluster, open_cluster

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def pg_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, which it may stop and start; removed afterwards.
    ``fsync=off``: a crash of PostgreSQL (not of the machine) loses nothing with it."""
    with open_cluster("-c fsync=off") as cluster:
        yield cluster
