"""Helpers shared by the store tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from trigear.store import LoadResult, Store, StoredJob

StoreFactory = Callable[[], Store]


def job(n: int, **fields: object) -> StoredJob:
    base = StoredJob(
        handle=b"H:test:%d" % n,
        function=b"resize",
        unique=b"u%d" % n,
        data=b"payload %d" % n,
    )
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


async def reopen(make: StoreFactory) -> LoadResult:
    store = make()
    try:
        return await store.load()
    finally:
        await store.aclose()
