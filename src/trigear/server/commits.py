"""The dispatcher's side of a durable store (S19): what to write, and who waits for it.

The dispatcher never waits on the store.  Every change a pass makes -- a background job
to add, a stored job that ended, an attempt count that moved -- goes into the *next*
:class:`StoreBatch`.  After the pass the Trio layer takes it (:meth:`Commits.take`) for
the store writer task, which commits it in one transaction (group commit) and reports
back (:meth:`Commits.done`).  At most one batch is in flight; changes made meanwhile wait
in the next one.

The rules this keeps:

* A background JOB_CREATED goes out only after the commit that writes its job: the reply
  is held (:meth:`Commits.hold_until_stored`) until then, also when the submit joins a job
  whose write is pending, in flight, or failed earlier.  Output for that peer queues
  behind the held reply (:mod:`trigear.server.output`), so replies keep request order.
* A failed commit applied nothing: its held replies become ``ERROR QUEUE_ERROR`` (never
  a false JOB_CREATED), its jobs count as not stored, and its removals and attempt counts
  go back into the next batch to be tried again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocol.encoder import encode_response
from ..protocol.packets import Error, JobCreated
from ..store.base import StoredJob
from .state import PendingReply

if TYPE_CHECKING:
    from .state import JobRecord, Peer

__all__ = ["Commits", "StoreBatch"]

_STORE_FAILED = encode_response(Error(b"QUEUE_ERROR", b"Job could not be stored"))


@dataclass(slots=True)
class StoreBatch:
    """Store changes of one or more dispatcher passes, committed together (S19)."""

    #: Jobs to write, by handle, in submission order.
    add: dict[bytes, StoredJob] = field(default_factory=dict)
    remove: list[bytes] = field(default_factory=list)
    #: New attempt counts of stored jobs not in ``add``.
    attempts: dict[bytes, int] = field(default_factory=dict)
    #: The JOB_CREATED replies held until this batch commits.
    replies: list[PendingReply] = field(default_factory=list)
    last_handle_number: int = 0

    def __bool__(self) -> bool:
        return bool(self.add or self.remove or self.attempts or self.replies)


def _stored_job(job: JobRecord) -> StoredJob:
    return StoredJob(
        handle=job.handle,
        function=job.func.name,
        unique=job.unique,
        data=job.data,
        priority=job.priority,
        when=job.when,
        reducer=job.reducer,
        attempts=job.attempts,
    )


class Commits:
    """The next batch of store changes, and the one being committed."""

    __slots__ = ("_inflight", "_next")

    def __init__(self) -> None:
        self._next = StoreBatch()
        self._inflight: StoreBatch | None = None

    # --- changes ----------------------------------------------------------------------

    def add(self, job: JobRecord) -> None:
        """Write ``job`` (a background job) with the next batch."""
        job.stored = True
        self._next.add[job.handle] = _stored_job(job)

    def remove(self, job: JobRecord) -> None:
        """``job`` ended: take it out of the store (or out of the pending write)."""
        job.stored = False
        batch = self._next
        if batch.add.pop(job.handle, None) is None:
            batch.remove.append(job.handle)
        batch.attempts.pop(job.handle, None)

    def save_attempts(self, job: JobRecord) -> None:
        """A stored job lost a run: write its attempt count (S9, S10)."""
        pending = self._next.add.get(job.handle)
        if pending is not None:
            pending.attempts = job.attempts
        else:
            self._next.attempts[job.handle] = job.attempts

    def hold_until_stored(self, peer: Peer, job: JobRecord) -> bool:
        """Hold ``peer``'s JOB_CREATED for ``job`` until the commit that writes the job,
        writing it with the next batch if no batch does yet.  False when the job is on
        disk already: the reply may go out at once."""
        if job.handle in self._next.add:
            batch = self._next
        elif self._inflight is not None and job.handle in self._inflight.add:
            batch = self._inflight
        elif job.stored:
            return False
        else:
            self.add(job)
            batch = self._next
        reply = PendingReply(job, peer, reply=encode_response(JobCreated(job.handle)))
        peer.waiting.append(reply)
        batch.replies.append(reply)
        return True

    def discard(self) -> list[PendingReply]:
        """Drop the changes not yet handed to the store writer (this server was fenced:
        its rows belong to another server now).  The held replies of the dropped batch
        become QUEUE_ERROR and are returned, like a failed commit's (:meth:`done`)."""
        batch, self._next = self._next, StoreBatch()
        for reply in batch.replies:
            reply.ready = True
            reply.reply = _STORE_FAILED
            reply.job.stored = False
        return batch.replies

    # --- the store writer's side -------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while changes wait to be committed or are being committed."""
        return bool(self._next) or self._inflight is not None

    def take(self, last_handle_number: int) -> StoreBatch | None:
        """The next batch for the store writer, if one is due and none is in flight."""
        if self._inflight is not None or not self._next:
            return None
        batch = self._next
        batch.last_handle_number = last_handle_number
        self._next = StoreBatch()
        self._inflight = batch
        return batch

    def done(self, ok: bool) -> list[PendingReply] | None:
        """The batch in flight was committed (``ok``) or failed and applied not at all;
        None if no batch was in flight.

        Its held replies are ready now (JOB_CREATED, or QUEUE_ERROR after a failure) and
        are returned in request order: the caller runs or drops their jobs and releases
        them (:meth:`Output.release <trigear.server.output.Output.release>`).
        """
        batch = self._inflight
        self._inflight = None
        if batch is None:
            return None
        if not ok:
            # Nothing of it is on disk: put removals and attempt counts back for the next
            # try; jobs whose add failed are refused (never a false JOB_CREATED).
            self._next.remove[:0] = batch.remove
            for handle, n in batch.attempts.items():
                self._next.attempts.setdefault(handle, n)
        for reply in batch.replies:
            reply.ready = True
            if not ok:
                reply.reply = _STORE_FAILED
                if reply.job.handle in batch.add:
                    reply.job.stored = False
        return batch.replies
