"""Fixtures for the durability tests (S19): a Server on a real durable store, restartable
on the same storage, and peers on in-memory connections.

PostgreSQL tests use the server at 127.0.0.1:5432 (trust auth, user postgres, database
test), each test in a schema of its own, dropped afterwards.  Outage tests run a
throwaway cluster of their own on another port (see ``pg_cluster``).

Most tests run on trio's real clock: the stores commit on an OS thread, and pytest-trio's
``autojump_clock`` would treat a task waiting for that thread as idle and jump the clock
mid-commit.  Tests that need virtual time use ``slow_autojump_clock``, which only jumps
after a real pause.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from memory_peer import Peer
from peers import Cluster, open_cluster
from trigear.server import Server, ServerConfig
from trigear.store import PostgresStore, SqliteStore, Store, StoredJob

# --- peers ------------------------------------------------------------------------------------


# --- stores ------------------------------------------------------------------------------------


class Gate:
    """Holds every commit on the store's database thread until opened (a slow disk)."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        #: Commits that reached the gate (entered, not necessarily passed).
        self.arrived = 0

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def wait(self) -> None:
        self.arrived += 1
        if not self._open.wait(5):
            raise AssertionError("the gate stayed closed for 5 s")


class GatedSqliteStore(SqliteStore):
    gate: Gate

    def _commit(self, *args: Any) -> None:
        self.gate.wait()
        super()._commit(*args)


class GatedPostgresStore(PostgresStore):
    gate: Gate

    def _commit(self, *args: Any) -> None:
        self.gate.wait()
        super()._commit(*args)


class FullSqliteStore(SqliteStore):
    """A real SQLITE_FULL on demand: while ``spare_pages`` is set, each commit first lowers
    ``PRAGMA max_page_count`` to the file's size plus that many pages, so a commit that
    needs more space fails inside SQLite ("database or disk is full")."""

    spare_pages: int | None = None
    _default_max: int | None = None

    def _commit(self, *args: Any) -> None:
        conn = self._open()
        if self._default_max is None:
            self._default_max = conn.execute("PRAGMA max_page_count").fetchone()[0]
        if self.spare_pages is None:
            conn.execute(f"PRAGMA max_page_count = {self._default_max}")
        else:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages + self.spare_pages}")
        super()._commit(*args)


StoreFactory = Callable[[], Store]


async def wait_until(condition: Callable[[], bool], limit: float = 10) -> None:
    """Poll ``condition`` (state changed by other threads or tasks, with no event to
    wait on) until it holds."""
    with trio.fail_after(limit):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.01)


POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["sqlite", POSTGRES])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def make_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, gate: Gate
) -> StoreFactory:
    """A factory of gated stores on one storage: each call is a reopen."""
    if kind == "sqlite":
        path = tmp_path / "jobs.db"

        def sqlite() -> Store:
            store = GatedSqliteStore(path, busy_timeout=0.5)
            store.gate = gate
            return store

        return sqlite
    url: str = request.getfixturevalue("pg_url")

    def postgres() -> Store:
        store = GatedPostgresStore(url, lock_wait=2)
        store.gate = gate
        return store

    return postgres


# --- a restartable server ------------------------------------------------------------------


class Running:
    """A Server on a store from ``make_store``, in the test's nursery; ``restart`` stops it
    (abruptly: what is not committed yet is not) and starts a new one on the same storage."""

    def __init__(
        self, nursery: trio.Nursery, make_store: StoreFactory, config: ServerConfig
    ) -> None:
        self.nursery = nursery
        self.make_store = make_store
        self.config = config
        self.server: Server | None = None
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None
        self.peers: list[Peer] = []

    @property
    def srv(self) -> Server:
        assert self.server is not None
        return self.server

    async def start(self, config: ServerConfig | None = None) -> Server:
        if config is not None:
            self.config = config
        server = Server(self.config, self.make_store())
        scope = trio.CancelScope()
        done = trio.Event()

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                with scope:
                    await server.serve(task_status=task_status)
            finally:
                done.set()

        await self.nursery.start(run)
        self.server, self._scope, self._done = server, scope, done
        return server

    async def stop(self) -> None:
        """Cancel the server (no drain): like a crash, but the commit in flight ends."""
        if self._scope is not None and self._done is not None:
            self._scope.cancel()
            await self._done.wait()
        for p in self.peers:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await p.aclose()
        self.peers.clear()
        self.server = self._scope = self._done = None

    async def restart(self, config: ServerConfig | None = None) -> Server:
        await self.stop()
        return await self.start(config)

    async def connect(self) -> Peer:
        peer = Peer(self.srv.connect_in_memory())
        self.peers.append(peer)
        await trio.testing.wait_all_tasks_blocked()
        return peer

    async def stored(self) -> list[StoredJob]:
        """What the store holds now (read on the store's own connection and thread, after
        the commit in flight)."""
        return (await self.srv.store.load()).jobs

    async def settled(self) -> list[StoredJob]:
        """What the store holds once the server has committed every change so far."""
        await trio.testing.wait_all_tasks_blocked(0.01)  # the server has read everything
        await wait_until(lambda: not self.srv.dispatcher.has_store_work())
        return await self.stored()


@pytest.fixture
def config() -> ServerConfig:
    return ServerConfig(job_handle_prefix="dur")


@pytest.fixture
async def running(nursery: trio.Nursery, make_store: StoreFactory, config: ServerConfig) -> Running:
    r = Running(nursery, make_store, config)
    await r.start()
    return r


@pytest.fixture
def slow_autojump_clock() -> trio.testing.MockClock:
    """Virtual time that jumps only after 0.3 s of real idleness (see the module doc)."""
    return trio.testing.MockClock(autojump_threshold=0.3)


# --- a throwaway PostgreSQL cluster -------------------------------------------------------------


@pytest.fixture
def pg_cluster() -> Iterator[Cluster]:
    """A cluster of the test's own, which it may stop and start; stopped afterwards."""
    with open_cluster() as cluster:
        yield cluster
