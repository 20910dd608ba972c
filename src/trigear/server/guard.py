"""The access checks at the dispatcher's door: one guard per packet kind that names a
function or a job, wrapped around that kind's handler when an ACL is in force.

Without an access control list the dispatcher's handler table is the plain one and
none of this runs: the checks cost nothing.  With one,
:meth:`Dispatcher.set_acl <trigear.server.dispatcher.Dispatcher.set_acl>` installs the
table :func:`guarded` builds, in which these kinds are checked against the sending
connection's :class:`~trigear.server.acl.Grants`:

==========================  ===============================================================
packet                      allowed when
==========================  ===============================================================
SUBMIT_JOB (every variant,  the identity may ``submit`` to the function, and the unique
EPOCH, REDUCE)              does not join a live job of another identity (joining would
                            hand it that job's result, S2)
CAN_DO, CAN_DO_TIMEOUT      the identity may ``register`` the function
GET_STATUS,                 the job is the identity's, or it may ``show jobs``, or (a job
GET_STATUS_UNIQUE           replayed from the store, with no owner) it may submit to the
                            function; unknown jobs are answered as usual
WORK_*                      the connection holds the job (S8, checked as always); one held
                            by another connection is logged and counted as a refusal
admin line                  the identity may run that command (``status``, ``cancel
                            job``, ...; geard's ``invoke`` also allows ``cancel job`` on
                            the jobs of the functions it matches)
==========================  ===============================================================

A refusal is an ERROR ``PERMISSION_DENIED`` where the packet has an answer (client
libraries take it as the answer, as they take QUEUE_ERROR), an ``ERR PERMISSION_DENIED``
line for an admin command, and for CAN_DO nothing at all: CAN_DO has no answer, and an
unasked-for ERROR is read as the answer to the worker's next request (gear's worker
drops the connection and reconnects in a loop, libgearman's fails its grab).  The
function is simply not registered, so no job of it ever reaches that worker.  WORK_*
keeps its JOB_NOT_FOUND answer (the spec's, and it does not tell whether the job
exists).  Every refusal is logged with the identity and address, and counted in
``ServerStatistics.acl_refusals``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..protocol.admin import format_error, parse_admin_line
from ..protocol.encoder import encode_response
from ..protocol.packets import (
    AdminCommand,
    CanDo,
    CanDoTimeout,
    Error,
    Event,
    GetStatus,
    GetStatusUnique,
    SubmitJob,
    SubmitJobBg,
    SubmitJobEpoch,
    SubmitJobHigh,
    SubmitJobHighBg,
    SubmitJobLow,
    SubmitJobLowBg,
    SubmitReduceJob,
    SubmitReduceJobBackground,
    WorkComplete,
    WorkData,
    WorkException,
    WorkFail,
    WorkStatus,
    WorkWarning,
)
from .acl import admin_command

if TYPE_CHECKING:
    from .acl import Acl, Grants
    from .jobindex import JobIndex
    from .state import Func, JobRecord, Peer
    from .stats import ServerStats

__all__ = ["GuardedView", "Handler", "guarded", "identify", "reidentify"]

log = logging.getLogger("trigear.server.acl")

_SUBMITS: Final[tuple[type[Event], ...]] = (
    SubmitJob,
    SubmitJobBg,
    SubmitJobHigh,
    SubmitJobHighBg,
    SubmitJobLow,
    SubmitJobLowBg,
    SubmitJobEpoch,
    SubmitReduceJob,
    SubmitReduceJobBackground,
)
_WORK: Final[tuple[type[Event], ...]] = (
    WorkComplete,
    WorkFail,
    WorkException,
    WorkStatus,
    WorkData,
    WorkWarning,
)
_ADMIN_DENIED: Final = format_error("PERMISSION_DENIED", "Permission denied by ACL")


class GuardedView(Protocol):
    """What the guards see of the dispatcher."""

    @property
    def stats(self) -> ServerStats: ...

    @property
    def jobs(self) -> JobIndex: ...

    @property
    def funcs(self) -> Mapping[bytes, Func]: ...

    def with_unique(self, unique: bytes) -> list[JobRecord]: ...

    def send(self, peer: Peer, data: bytes) -> None: ...


#: A packet handler: (dispatcher, peer, event) -> None.
Handler = Callable[[Any, "Peer", Any], None]


def identify(acl: Acl | None, peer: Peer) -> None:
    """Give ``peer`` its identity and grants under ``acl`` (or none)."""
    if acl is None:
        peer.grants = None
        return
    names = acl.names(peer.certificate, peer.loopback)
    peer.identity = names[0]
    peer.grants = acl.grants(names)


def reidentify(acl: Acl | None, peer: Peer) -> list[bytes]:
    """Identify ``peer`` under a new ``acl``; return (and log) the functions it has
    registered that the new rules no longer let it register."""
    identify(acl, peer)
    grants = peer.grants
    if grants is None:
        return []
    lost = [name for name in peer.abilities if not grants.may_register(name)]
    for name in lost:
        log.warning(
            "ACL reload: %s (%s) may no longer register %s", peer.identity, peer.ip, _show(name)
        )
    return lost


def guarded(handlers: Mapping[type[Event], Handler]) -> dict[type[Event], Handler]:
    """A copy of the handler table with the guards of this module around its handlers."""
    table = dict(handlers)
    for cls in _SUBMITS:
        table[cls] = _guard_submit(handlers[cls])
    can_do: tuple[type[Event], ...] = (CanDo, CanDoTimeout)
    for cls in can_do:
        table[cls] = _guard_can_do(handlers[cls])
    table[GetStatus] = _guard_get_status(handlers[GetStatus])
    table[GetStatusUnique] = _guard_get_status_unique(handlers[GetStatusUnique])
    for cls in _WORK:
        table[cls] = _guard_work(handlers[cls])
    table[AdminCommand] = _guard_admin(handlers[AdminCommand])
    return table


def _grants(peer: Peer) -> Grants:
    grants = peer.grants
    assert grants is not None, "a guarded dispatcher identifies every peer"
    return grants


def _refuse(d: GuardedView, peer: Peer, what: str, reply: bytes | None) -> None:
    d.stats.acl_refusals += 1
    log.warning("refused %s from %s (%s)", what, peer.identity, peer.ip)
    if reply is not None:
        d.send(peer, reply)


def _denied(text: str) -> bytes:
    return encode_response(Error(b"PERMISSION_DENIED", text.encode(errors="replace")))


def _show(name: bytes) -> str:
    return repr(name.decode("utf-8", "replace"))


def _visible(peer: Peer, job: JobRecord) -> bool:
    """May ``peer`` see ``job``'s status?"""
    if job.owner == peer.identity:
        return True
    grants = _grants(peer)
    if grants.may_admin("show jobs"):
        return True
    return job.owner is None and grants.may_submit(job.func.name)


def _guard_submit(handler: Handler) -> Handler:
    def submit(d: GuardedView, peer: Peer, event: Any) -> None:
        function: bytes = event.function
        if not _grants(peer).may_submit(function):
            what = f"{type(event).__name__} to {_show(function)}"
            text = f"Permission denied by ACL: {peer.identity} may not submit to {_show(function)}"
            _refuse(d, peer, what, _denied(text))
            return
        unique: bytes = event.unique
        key = event.data if unique == b"-" else unique
        for live in d.with_unique(key) if key else ():
            if live.func.name == function and live.owner not in (None, peer.identity):
                kind = type(event).__name__
                what = f"{kind} joining job {_show(live.handle)} of another identity"
                text = "Permission denied by ACL: the unique names another identity's job"
                _refuse(d, peer, what, _denied(text))
                return
        jobs = d.jobs
        before = len(jobs)
        handler(d, peer, event)
        if len(jobs) > before:
            # The submit made a new job: the one added last.
            job = jobs.newest()
            assert job is not None
            job.owner = peer.identity

    return submit


def _guard_can_do(handler: Handler) -> Handler:
    def can_do(d: GuardedView, peer: Peer, event: Any) -> None:
        if _grants(peer).may_register(event.function):
            handler(d, peer, event)
        else:
            _refuse(d, peer, f"{type(event).__name__} {_show(event.function)}", None)

    return can_do


def _guard_get_status(handler: Handler) -> Handler:
    def get_status(d: GuardedView, peer: Peer, event: Any) -> None:
        job = d.jobs.get(event.handle)
        if job is not None and not _visible(peer, job):
            what = f"GetStatus of job {_show(job.handle)} of {job.owner or 'no identity'}"
            _refuse(d, peer, what, _denied("Permission denied by ACL: another identity's job"))
            return
        handler(d, peer, event)

    return get_status


def _guard_get_status_unique(handler: Handler) -> Handler:
    def get_status_unique(d: GuardedView, peer: Peer, event: Any) -> None:
        unique: bytes = event.unique
        if unique:
            for job in d.with_unique(unique):
                if not _visible(peer, job):
                    what = f"GetStatusUnique of {_show(unique)}, a job of another identity"
                    text = "Permission denied by ACL: another identity's job"
                    _refuse(d, peer, what, _denied(text))
                    return
        handler(d, peer, event)

    return get_status_unique


def _guard_work(handler: Handler) -> Handler:
    def work(d: GuardedView, peer: Peer, event: Any) -> None:
        handle: bytes = event.handle
        if handle not in peer.held and handle in d.jobs:
            what = f"{type(event).__name__} for job {_show(handle)} held by another connection"
            _refuse(d, peer, what, None)
        # The handler answers JOB_NOT_FOUND for a job this connection does not hold (S8).
        handler(d, peer, event)

    return work


def _guard_admin(handler: Handler) -> Handler:
    def admin(d: GuardedView, peer: Peer, event: AdminCommand) -> None:
        req = parse_admin_line(event.line)
        command = admin_command(req.command, req.args)
        grants = _grants(peer)
        if command is None or grants.may_admin(command):
            handler(d, peer, event)
            return
        if command == "cancel job" and grants.cancel_submitted and len(req.args) == 2:
            job = d.jobs.get(req.args[1])
            if job is not None and grants.may_submit(job.func.name):
                handler(d, peer, event)
                return
        _refuse(d, peer, f"admin {command!r}", _ADMIN_DENIED)

    return admin
