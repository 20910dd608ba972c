"""The default store: nothing is kept, background jobs die with the process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import LoadResult, StoredJob

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps nothing.  ``commit`` returns at once, so submits cost no I/O."""

    description = "memory (background jobs die with the process)"
    durable = False

    async def load(self) -> LoadResult:
        return LoadResult([], 0)

    async def commit(
        self,
        add: Sequence[StoredJob],
        remove: Sequence[bytes],
        attempts: Sequence[tuple[bytes, int]],
        last_handle_number: int,
    ) -> None:
        return None

    async def aclose(self) -> None:
        return None
