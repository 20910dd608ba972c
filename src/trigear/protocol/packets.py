"""Every Gearman packet as a typed, immutable event (spec section 2).

Each packet type is a :class:`typing.NamedTuple` whose fields are the packet's arguments
in wire order.  Tuples are the cheapest immutable record CPython has: the decoder builds
one with a single C call, and the encoder joins its fields without looking at names.  The
price is that tuple equality ignores the class, so ``__eq__`` is replaced below to compare
the packet type too: ``WorkData(b"H:1", b"x") != WorkWarning(b"H:1", b"x")``.

Arguments are ``bytes`` as on the wire (function names, uniques, handles and payloads are
opaque to Gearman).  The few numeric arguments a peer must get right -- the epoch of
SUBMIT_JOB_EPOCH, the timeout of CAN_DO_TIMEOUT and the fields of STATUS_RES and
STATUS_RES_UNIQUE -- are ``int`` (or ``bool``); WORK_STATUS keeps its numerator and
denominator as the bytes the worker sent, because the server forwards them verbatim.

The same class serves both directions where the protocol does (WORK_COMPLETE goes from a
worker to the server and from the server to a client): the magic, ``\\0REQ`` or
``\\0RES``, is chosen by the encoder's role, not by the event.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

__all__ = [
    "CLIENT_TO_SERVER",
    "EVENT_CLASSES",
    "SERVER_TO_CLIENT",
    "AdminCommand",
    "AllYours",
    "CanDo",
    "CanDoTimeout",
    "CantDo",
    "EchoReq",
    "EchoRes",
    "Error",
    "Event",
    "GetStatus",
    "GetStatusUnique",
    "GrabJob",
    "GrabJobAll",
    "GrabJobUniq",
    "JobAssign",
    "JobAssignAll",
    "JobAssignUniq",
    "JobCreated",
    "NoJob",
    "Noop",
    "OptionReq",
    "OptionRes",
    "PacketType",
    "PreSleep",
    "Priority",
    "ResetAbilities",
    "SetClientId",
    "StatusRes",
    "StatusResUnique",
    "SubmitJob",
    "SubmitJobBg",
    "SubmitJobEpoch",
    "SubmitJobHigh",
    "SubmitJobHighBg",
    "SubmitJobLow",
    "SubmitJobLowBg",
    "SubmitJobSched",
    "SubmitReduceJob",
    "SubmitReduceJobBackground",
    "WorkComplete",
    "WorkData",
    "WorkException",
    "WorkFail",
    "WorkStatus",
    "WorkWarning",
    "packet_type",
]


class Priority(enum.IntEnum):
    """Job priority, chosen by which SUBMIT variant carries the job; lower runs first."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


class PacketType(enum.IntEnum):
    """Packet type numbers, as in gearmand's ``gearman_command_t``."""

    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    UNUSED = 5
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


# --- worker -> server ---------------------------------------------------------------


class CanDo(NamedTuple):
    function: bytes


class CantDo(NamedTuple):
    function: bytes


class ResetAbilities(NamedTuple):
    pass


class PreSleep(NamedTuple):
    pass


class GrabJob(NamedTuple):
    pass


class GrabJobUniq(NamedTuple):
    pass


class GrabJobAll(NamedTuple):
    pass


class CanDoTimeout(NamedTuple):
    function: bytes
    #: Milliseconds (gearmand >= 1.1.19); 0 means no timeout.
    timeout: int


class AllYours(NamedTuple):
    pass


# --- client -> server ---------------------------------------------------------------


class SubmitJob(NamedTuple):
    function: bytes
    unique: bytes
    data: bytes


class SubmitJobBg(NamedTuple):
    function: bytes
    unique: bytes
    data: bytes


class SubmitJobHigh(NamedTuple):
    function: bytes
    unique: bytes
    data: bytes


class SubmitJobHighBg(NamedTuple):
    function: bytes
    unique: bytes
    data: bytes


class SubmitJobLow(NamedTuple):
    function: bytes
    unique: bytes
    data: bytes


class SubmitJobLowBg(NamedTuple):
    function: bytes
    unique: bytes
    data: bytes


class SubmitJobSched(NamedTuple):
    function: bytes
    unique: bytes
    minute: bytes
    hour: bytes
    day_of_month: bytes
    month: bytes
    day_of_week: bytes
    data: bytes


class SubmitJobEpoch(NamedTuple):
    function: bytes
    unique: bytes
    #: Unix time, in seconds, at which the job becomes runnable.
    epoch: int
    data: bytes


class SubmitReduceJob(NamedTuple):
    function: bytes
    unique: bytes
    reducer: bytes
    #: Accepted and ignored by gearmand and trigear (S16).
    aggregator: bytes
    data: bytes


class SubmitReduceJobBackground(NamedTuple):
    function: bytes
    unique: bytes
    reducer: bytes
    aggregator: bytes
    data: bytes


class GetStatus(NamedTuple):
    handle: bytes


class GetStatusUnique(NamedTuple):
    unique: bytes


# --- any -> server ------------------------------------------------------------------


class EchoReq(NamedTuple):
    data: bytes


class SetClientId(NamedTuple):
    client_id: bytes


class OptionReq(NamedTuple):
    option: bytes


# --- server -> client or worker -----------------------------------------------------


class Noop(NamedTuple):
    pass


class NoJob(NamedTuple):
    pass


class JobCreated(NamedTuple):
    handle: bytes


class JobAssign(NamedTuple):
    handle: bytes
    function: bytes
    data: bytes


class JobAssignUniq(NamedTuple):
    handle: bytes
    function: bytes
    unique: bytes
    data: bytes


class JobAssignAll(NamedTuple):
    handle: bytes
    function: bytes
    unique: bytes
    reducer: bytes
    data: bytes


class EchoRes(NamedTuple):
    data: bytes


class Error(NamedTuple):
    code: bytes
    text: bytes


class StatusRes(NamedTuple):
    handle: bytes
    known: bool
    running: bool
    numerator: int
    denominator: int


class StatusResUnique(NamedTuple):
    unique: bytes
    known: bool
    running: bool
    numerator: int
    denominator: int
    client_count: int


class OptionRes(NamedTuple):
    option: bytes


# --- both directions (worker -> server -> client) -------------------------------------


class WorkStatus(NamedTuple):
    handle: bytes
    #: Forwarded verbatim; gearmand reads them as decimal numbers for GET_STATUS.
    numerator: bytes
    denominator: bytes


class WorkComplete(NamedTuple):
    handle: bytes
    data: bytes


class WorkFail(NamedTuple):
    handle: bytes


class WorkException(NamedTuple):
    handle: bytes
    data: bytes


class WorkData(NamedTuple):
    handle: bytes
    data: bytes


class WorkWarning(NamedTuple):
    handle: bytes
    data: bytes


# --- not a packet: a text admin line (spec section 3) -----------------------------------


class AdminCommand(NamedTuple):
    """One admin text line, without its ``\\n`` (and a ``\\r`` before it)."""

    line: bytes


Event = (
    CanDo
    | CantDo
    | ResetAbilities
    | PreSleep
    | GrabJob
    | GrabJobUniq
    | GrabJobAll
    | CanDoTimeout
    | AllYours
    | SubmitJob
    | SubmitJobBg
    | SubmitJobHigh
    | SubmitJobHighBg
    | SubmitJobLow
    | SubmitJobLowBg
    | SubmitJobSched
    | SubmitJobEpoch
    | SubmitReduceJob
    | SubmitReduceJobBackground
    | GetStatus
    | GetStatusUnique
    | EchoReq
    | SetClientId
    | OptionReq
    | Noop
    | NoJob
    | JobCreated
    | JobAssign
    | JobAssignUniq
    | JobAssignAll
    | EchoRes
    | Error
    | StatusRes
    | StatusResUnique
    | OptionRes
    | WorkStatus
    | WorkComplete
    | WorkFail
    | WorkException
    | WorkData
    | WorkWarning
    | AdminCommand
)

#: Packet type -> event class, for every real packet (type 5 has none).
EVENT_CLASSES: dict[PacketType, type[Any]] = {
    PacketType.CAN_DO: CanDo,
    PacketType.CANT_DO: CantDo,
    PacketType.RESET_ABILITIES: ResetAbilities,
    PacketType.PRE_SLEEP: PreSleep,
    PacketType.NOOP: Noop,
    PacketType.SUBMIT_JOB: SubmitJob,
    PacketType.JOB_CREATED: JobCreated,
    PacketType.GRAB_JOB: GrabJob,
    PacketType.NO_JOB: NoJob,
    PacketType.JOB_ASSIGN: JobAssign,
    PacketType.WORK_STATUS: WorkStatus,
    PacketType.WORK_COMPLETE: WorkComplete,
    PacketType.WORK_FAIL: WorkFail,
    PacketType.GET_STATUS: GetStatus,
    PacketType.ECHO_REQ: EchoReq,
    PacketType.ECHO_RES: EchoRes,
    PacketType.SUBMIT_JOB_BG: SubmitJobBg,
    PacketType.ERROR: Error,
    PacketType.STATUS_RES: StatusRes,
    PacketType.SUBMIT_JOB_HIGH: SubmitJobHigh,
    PacketType.SET_CLIENT_ID: SetClientId,
    PacketType.CAN_DO_TIMEOUT: CanDoTimeout,
    PacketType.ALL_YOURS: AllYours,
    PacketType.WORK_EXCEPTION: WorkException,
    PacketType.OPTION_REQ: OptionReq,
    PacketType.OPTION_RES: OptionRes,
    PacketType.WORK_DATA: WorkData,
    PacketType.WORK_WARNING: WorkWarning,
    PacketType.GRAB_JOB_UNIQ: GrabJobUniq,
    PacketType.JOB_ASSIGN_UNIQ: JobAssignUniq,
    PacketType.SUBMIT_JOB_HIGH_BG: SubmitJobHighBg,
    PacketType.SUBMIT_JOB_LOW: SubmitJobLow,
    PacketType.SUBMIT_JOB_LOW_BG: SubmitJobLowBg,
    PacketType.SUBMIT_JOB_SCHED: SubmitJobSched,
    PacketType.SUBMIT_JOB_EPOCH: SubmitJobEpoch,
    PacketType.SUBMIT_REDUCE_JOB: SubmitReduceJob,
    PacketType.SUBMIT_REDUCE_JOB_BACKGROUND: SubmitReduceJobBackground,
    PacketType.GRAB_JOB_ALL: GrabJobAll,
    PacketType.JOB_ASSIGN_ALL: JobAssignAll,
    PacketType.GET_STATUS_UNIQUE: GetStatusUnique,
    PacketType.STATUS_RES_UNIQUE: StatusResUnique,
}

_TYPE_OF: dict[type[Any], PacketType] = {cls: t for t, cls in EVENT_CLASSES.items()}

#: Types a client or worker sends (magic ``\\0REQ``).
CLIENT_TO_SERVER: frozenset[PacketType] = frozenset(
    {
        PacketType.CAN_DO,
        PacketType.CANT_DO,
        PacketType.RESET_ABILITIES,
        PacketType.PRE_SLEEP,
        PacketType.SUBMIT_JOB,
        PacketType.GRAB_JOB,
        PacketType.WORK_STATUS,
        PacketType.WORK_COMPLETE,
        PacketType.WORK_FAIL,
        PacketType.GET_STATUS,
        PacketType.ECHO_REQ,
        PacketType.SUBMIT_JOB_BG,
        PacketType.SUBMIT_JOB_HIGH,
        PacketType.SET_CLIENT_ID,
        PacketType.CAN_DO_TIMEOUT,
        PacketType.ALL_YOURS,
        PacketType.WORK_EXCEPTION,
        PacketType.OPTION_REQ,
        PacketType.WORK_DATA,
        PacketType.WORK_WARNING,
        PacketType.GRAB_JOB_UNIQ,
        PacketType.SUBMIT_JOB_HIGH_BG,
        PacketType.SUBMIT_JOB_LOW,
        PacketType.SUBMIT_JOB_LOW_BG,
        PacketType.SUBMIT_JOB_SCHED,
        PacketType.SUBMIT_JOB_EPOCH,
        PacketType.SUBMIT_REDUCE_JOB,
        PacketType.SUBMIT_REDUCE_JOB_BACKGROUND,
        PacketType.GRAB_JOB_ALL,
        PacketType.GET_STATUS_UNIQUE,
    }
)

#: Types the server sends (magic ``\\0RES``).
SERVER_TO_CLIENT: frozenset[PacketType] = frozenset(
    {
        PacketType.NOOP,
        PacketType.JOB_CREATED,
        PacketType.NO_JOB,
        PacketType.JOB_ASSIGN,
        PacketType.WORK_STATUS,
        PacketType.WORK_COMPLETE,
        PacketType.WORK_FAIL,
        PacketType.ECHO_RES,
        PacketType.ERROR,
        PacketType.STATUS_RES,
        PacketType.WORK_EXCEPTION,
        PacketType.OPTION_RES,
        PacketType.WORK_DATA,
        PacketType.WORK_WARNING,
        PacketType.JOB_ASSIGN_UNIQ,
        PacketType.JOB_ASSIGN_ALL,
        PacketType.STATUS_RES_UNIQUE,
    }
)


def packet_type(event: Event) -> PacketType:
    """The packet type of an event (``KeyError`` for :class:`AdminCommand`)."""
    return _TYPE_OF[type(event)]


def _typed_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _typed_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _typed_eq(self, other)


def _typed_hash(self: tuple[Any, ...]) -> int:
    return hash((type(self).__name__, tuple.__hash__(self)))


for _cls in [*EVENT_CLASSES.values(), AdminCommand]:
    setattr(_cls, "__eq__", _typed_eq)  # noqa: B010
    setattr(_cls, "__ne__", _typed_ne)  # noqa: B010
    setattr(_cls, "__hash__", _typed_hash)  # noqa: B010
del _cls
