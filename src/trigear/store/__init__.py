"""Stores for background jobs (S19): the :class:`Store` protocol and its implementations.

:func:`open_store` turns the server's ``--store`` argument into a store:

- ``memory``: nothing kept (the default; background jobs die with the process);
- ``sqlite:PATH``: an SQLite file, PATH absolute or relative to the working directory;
- ``postgresql://...`` or ``postgres://...``: a libpq connection URL (needs psycopg).

The durable stores are imported lazily, so ``import trigear.store`` needs neither
``sqlite3`` nor psycopg.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

from .base import LoadResult, Priority, Store, StoredJob, StoreError
from .memory import MemoryStore

if TYPE_CHECKING:
    from .postgres import PostgresStore
    from .sqlite import SqliteStore

__all__ = [
    "LoadResult",
    "MemoryStore",
    "PostgresStore",
    "Priority",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredJob",
    "open_store",
]

STORE_FORMS = "memory, sqlite:PATH or postgresql://[user@]host[:port]/dbname"


def __getattr__(name: str) -> Any:
    if name == "SqliteStore":
        from .sqlite import SqliteStore

        return SqliteStore
    if name == "PostgresStore":
        from .postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str, *, name: str | None = None) -> Store:
    """Make the store a ``--store`` value names.  Raise :class:`ValueError` with a message
    fit for the user when the value is not one of :data:`STORE_FORMS` or cannot be used.

    ``name`` makes the server a member of the store's cluster (several servers on one
    store, :mod:`trigear.store.cluster`): only a PostgreSQL store can be shared.

    Opening touches nothing: the database is opened (and created) by :meth:`Store.load`.
    """
    text = url.strip()
    scheme, colon, rest = text.partition(":")
    scheme = scheme.lower()
    if name is not None and not (colon and scheme in ("postgresql", "postgres")):
        raise ValueError(
            f"a server name (--name) needs a PostgreSQL store shared by the servers, not {url!r}"
        )
    if text.lower() == "memory":
        return MemoryStore()
    if colon and scheme == "sqlite":
        if not rest:
            raise ValueError("sqlite: needs a file path, e.g. sqlite:/var/lib/trigear/q.db")
        if rest == ":memory:":
            raise ValueError("sqlite::memory: would keep nothing; use memory instead")
        path = os.path.expanduser(rest)
        if os.path.isdir(path):
            raise ValueError(f"{url}: {path} is a directory, not a database file")
        from .sqlite import SqliteStore

        return SqliteStore(path)
    if colon and scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):
            raise ValueError(
                f"{url}: a PostgreSQL store is a URL, postgresql://[user@]host[:port]/db"
            )
        if importlib.util.find_spec("psycopg") is None:
            from .postgres import MISSING_PSYCOPG

            raise ValueError(f"{url}: {MISSING_PSYCOPG}")
        from .postgres import PostgresStore

        return PostgresStore(f"{scheme}:{rest}", name=name)
    raise ValueError(f"unknown store {url!r}; expected {STORE_FORMS}")
