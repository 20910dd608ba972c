"""Stores for background jobs (S19): the :class:`Store` protocol and its implementations."""

from .base import LoadResult, Priority, Store, StoredJob, StoreError
from .memory import MemoryStore

__all__ = ["LoadResult", "MemoryStore", "Priority", "Store", "StoreError", "StoredJob"]
