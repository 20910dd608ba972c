"""Stores for background jobs (S19): the :class:`Store` protocol and its implementations."""

from .base import LoadResult, Priority, Store, StoreError, StoredJob
from .memory import MemoryStore

__all__ = ["LoadResult", "MemoryStore", "Priority", "Store", "StoreError", "StoredJob"]
