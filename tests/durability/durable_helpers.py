"""Stores and a restartable server for the durability tests (S19): gated stores that
hold commits like a slow disk, an SQLite store that fills up on demand, and
:class:`Running`, a Server on a durable store that a test can restart."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from trigear.server import Server, ServerConfig
from trigear.store import PostgresStore, SqliteStore, Store, StoredJob, StoreError

from ..memory_peer import Peer


class Gate:
    """Holds every commit on the store's database thread until opened (a slow disk), and
    fails every commit while ``failing`` is set (a broken one)."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        #: Commits that reached the gate (entered, not necessarily passed).
        self.arrived = 0
        #: Commits that went through the gate and returned: their batch is stored.
        self.committed = 0
        #: Commits raise StoreError, applying nothing, while this is set.
        self.failing = False

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def wait(self) -> None:
        self.arrived += 1
        if not self._open.wait(5):
            raise AssertionError("the gate stayed closed for 5 s")
        if self.failing:
            raise StoreError("the gate failed this commit")


class GatedSqliteStore(SqliteStore):
    gate: Gate

    def _commit(self, *args: Any) -> None:
        self.gate.wait()
        super()._commit(*args)
        self.gate.committed += 1


class GatedPostgresStore(PostgresStore):
    gate: Gate

    def _commit(self, *args: Any) -> None:
        self.gate.wait()
        super()._commit(*args)
        self.gate.committed += 1


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
