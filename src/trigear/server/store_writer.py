"""The store writer: the task that commits what the dispatcher batched (group commit).

The dispatcher never waits for the store.  After a pass it hands the changes gathered
since the last commit to this task as one :class:`~trigear.server.commits.StoreBatch`;
the task commits it while the dispatcher goes on, then reports back through the inbox
(:class:`~trigear.server.messages.StoreDone`), which releases the replies held for the
commit (S19).  A failed commit is reported too (the held submits get ``QUEUE_ERROR``) and
the next try waits a little, doubling from 20 ms up to 0.5 s, so a store that is down is
not hammered.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..store.base import StoreError
from ..store.cluster import ClusterStore, FencedError
from .messages import StoreDone

if TYPE_CHECKING:
    from ..store.base import Store
    from .cluster import ClusterLink
    from .commits import StoreBatch
    from .messages import InboxMessage
    from .tally import Buckets

__all__ = ["run_store_writer"]

log = logging.getLogger("trigear.server")

_FIRST_DELAY = 0.02
_MAX_DELAY = 0.5


async def run_store_writer(
    store: Store,
    batches: trio.MemoryReceiveChannel[StoreBatch],
    inbox: trio.MemorySendChannel[InboxMessage],
    cluster: ClusterLink | None,
    commits: Buckets,
) -> None:
    """Commit each batch from ``batches`` and report it on ``inbox``, until cancelled.

    ``commits`` records each successful commit's time; a cluster member renews its lease
    on each success and loses it at once when the store says another server owns its
    rows (``FencedError``: the cluster task then drops them and joins again)."""
    delay = 0.0
    async for batch in batches:
        if delay:
            # The last commit failed (its removals come straight back in this batch,
            # and each failure is logged): wait before trying again.
            await trio.sleep(delay)
        delay = min(max(delay * 2, _FIRST_DELAY), _MAX_DELAY)
        started = trio.current_time()
        joined: dict[bytes, bytes] | None = None
        adds = list(batch.add.values())
        attempts = list(batch.attempts.items())
        try:
            if isinstance(store, ClusterStore):
                joined = await store.commit_joining(
                    adds, batch.remove, attempts, batch.last_handle_number
                )
            else:
                await store.commit(adds, batch.remove, attempts, batch.last_handle_number)
        except FencedError as exc:
            assert cluster is not None
            cluster.lose_lease()
            log.error("store commit refused: %s", exc)
            await inbox.send(StoreDone(False))
        except StoreError as exc:
            log.error("store commit failed: %s", exc)
            await inbox.send(StoreDone(False))
        except Exception:
            log.exception("store commit failed")
            await inbox.send(StoreDone(False))
        else:
            delay = 0.0
            commits.observe(trio.current_time() - started)
            if cluster is not None:
                cluster.renew(started)
            await inbox.send(StoreDone(True, joined or None))
