"""Helpers shared by the client and worker tests."""

from __future__ import annotations

import functools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import trigear


async def until(predicate: Callable[[], bool]) -> None:
    """Poll a condition another task changes (callers bound it with fail_after)."""
    while not predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


@asynccontextmanager
async def serving(worker: trigear.Worker, concurrency: int = 4) -> AsyncIterator[None]:
    """Run ``worker`` for the block's duration."""
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(worker.run, concurrency=concurrency))
        yield
        tg.cancel_scope.cancel()
