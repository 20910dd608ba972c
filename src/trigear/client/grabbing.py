"""The worker's grab/sleep state machine: one :class:`GrabMachine` per connection,
sharing one :class:`Slots` pool, with no I/O and no clock.

Why a machine of its own: a worker must never poll and never run more than
``concurrency`` jobs across all its servers, and the rules that ensure it (spec S4, S5)
interlock.  Kept as explicit states with every transition below, they can be read in one
place and tested exhaustively without sockets (``tests/worker/test_grabbing.py`` drives
them with hypothesis).  The I/O layer (:mod:`.worker`) feeds in what the server sent and
what its jobs did, and writes out :meth:`GrabMachine.data_to_send`.

States of one connection (:class:`GrabState`), and what moves them:

============  ===========================================  ===============================
state         meaning                                      leaves on
============  ===========================================  ===============================
PROBING       SET_CLIENT_ID and one GRAB_JOB_UNIQ sent,    NO_JOB (modern) or ERROR
              nothing registered                           (legacy): register, GRABBING;
                                                           stop: CLOSED
GRABBING      one grab in flight per free slot it took;    NO_JOB: LAST_GRABS;
              takes every slot that comes free             stop: STOPPING
LAST_GRABS    the server said NO_JOB: no more grabs, the   last grab answered: PRE_SLEEP,
              ones in flight still get answered            SLEEPING; stop: STOPPING
SLEEPING      PRE_SLEEP sent, nothing in flight            NOOP: GRABBING (one NOOP ends
                                                           one sleep); stop: STOPPING
STOPPING      the worker stops: no grabs; running jobs     last job done: CLOSED
              finish and report
CLOSED        nothing more is sent; the I/O layer closes   (final)
              the connection once its output is flushed
============  ===========================================  ===============================

From any state, the connection ending (:meth:`GrabMachine.connection_lost`) leads to
CLOSED.  Slots: a grab in flight holds one, and so does a running job; a NO_JOB, a job's
end, or a closed connection gives its slots back, and the pool offers them to every
connection that is GRABBING (:meth:`Slots.offer`).  So, always:
``free + sum(grabs in flight + jobs running) == concurrency``.

A server that answers what was never asked (a JOB_ASSIGN or NO_JOB with no grab in
flight) is out of step: :class:`~trigear.protocol.RemoteProtocolError`, and the I/O layer
drops the connection.  What CLOSED receives is ignored: a job assigned then is requeued by
the server when the connection closes (spec S9).
"""

from __future__ import annotations

import enum
import math
from typing import TYPE_CHECKING, Any, Final

from ..protocol import RemoteProtocolError, encode_request
from ..protocol import packets as P

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["GrabMachine", "GrabState", "Slots"]

_GRAB_UNIQ: Final = encode_request(P.GrabJobUniq())
_GRAB: Final = encode_request(P.GrabJob())
_PRE_SLEEP: Final = encode_request(P.PreSleep())
_ASSIGNS: Final = frozenset({P.JobAssign, P.JobAssignUniq, P.JobAssignAll})


class GrabState(enum.Enum):
    """Where one connection is in the grab/sleep cycle (the table above)."""

    PROBING = "probing"
    GRABBING = "grabbing"
    LAST_GRABS = "last grabs"
    SLEEPING = "sleeping"
    STOPPING = "stopping"
    CLOSED = "closed"


_NOT_SERVING: Final = frozenset({GrabState.PROBING, GrabState.CLOSED})


class Slots:
    """The worker's ``concurrency`` slots, shared by all its connections."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("concurrency must be at least 1")
        self.total = total
        self.free = total
        self.stopping = False
        #: Every connection's machine, in the order they were made.
        self.machines: list[GrabMachine] = []

    def offer(self) -> None:
        """Let every GRABBING connection grab with the free slots (in order, until none
        is left)."""
        for machine in self.machines:
            if self.free == 0:
                return
            machine.pump()

    def stop(self) -> None:
        """The worker stops: every connection stops grabbing."""
        self.stopping = True
        for machine in list(self.machines):
            machine.stop()

    def remove(self, machine: GrabMachine) -> None:
        """Forget a machine once its connection is over (it must be CLOSED)."""
        assert machine.state is GrabState.CLOSED
        if machine in self.machines:
            self.machines.remove(machine)

    @property
    def serving(self) -> int:
        """Connections registered with their server and not closed."""
        return sum(m.state not in _NOT_SERVING for m in self.machines)

    @property
    def running(self) -> int:
        """Jobs running, on every connection."""
        return sum(m.running for m in self.machines)


class GrabMachine:
    """The grab/sleep machine of one connection (see the module docstring)."""

    def __init__(
        self,
        slots: Slots,
        functions: Sequence[tuple[bytes, float | None]],
        client_id: bytes | None = None,
    ) -> None:
        self.slots = slots
        self.functions = tuple(functions)
        self.state = GrabState.PROBING
        #: The server lacks GRAB_JOB_UNIQ (the Perl server): known once probed.
        self.legacy = False
        #: Grabs sent and not answered yet (the probe not included).
        self.outstanding = 0
        #: Jobs assigned on this connection that have not ended.
        self.running = 0
        self._out: list[bytes] = []
        slots.machines.append(self)
        if client_id is not None:
            self._out.append(encode_request(P.SetClientId(client_id)))
        self._out.append(_GRAB_UNIQ)

    def data_to_send(self) -> bytes:
        """Everything queued since the last call (whole packets), and clear it."""
        out, self._out = self._out, []
        return b"".join(out)

    # -- inputs --

    def receive(self, event: Any) -> bool:
        """Feed one packet from the server.  True if it assigns a job, which the caller
        now runs and reports with :meth:`job_done` when it ends."""
        if self.state is GrabState.CLOSED:
            return False  # the server requeues what it assigns now (spec S9)
        cls = type(event)
        run = False
        if cls is P.NoJob:
            self._on_no_job()
        elif cls in _ASSIGNS:
            self._on_assign(cls.__name__)
            run = True
        elif cls is P.Noop:
            self._on_noop()
        elif cls is P.Error:
            self._on_error()
        # The client-side packets change nothing.
        self.pump()
        self.slots.offer()
        return run

    def _on_no_job(self) -> None:
        if self.state is GrabState.PROBING:
            self._register(legacy=False)
            return
        self._answered("NoJob")
        self.slots.free += 1
        if self.state is GrabState.GRABBING:
            self.state = GrabState.LAST_GRABS

    def _on_assign(self, name: str) -> None:
        if self.state is GrabState.PROBING:
            raise RemoteProtocolError(f"{name} before any CAN_DO")
        self._answered(name)
        self.running += 1

    def _on_noop(self) -> None:
        if self.state is GrabState.SLEEPING:
            self.state = GrabState.GRABBING
        # Awake already (or probing, or stopping): nothing to wake.

    def _on_error(self) -> None:
        if self.state is GrabState.PROBING:
            self._register(legacy=True)
        # Else a late WORK_* the server no longer knows (the I/O layer logs it).

    def _answered(self, name: str) -> None:
        if self.outstanding == 0:
            raise RemoteProtocolError(f"{name} with no grab in flight")
        self.outstanding -= 1

    def job_done(self) -> None:
        """A job :meth:`receive` assigned has ended (or was never started): its slot is
        free again."""
        assert self.running > 0
        self.running -= 1
        self.slots.free += 1
        self.pump()
        self.slots.offer()

    def stop(self) -> None:
        """No more grabs; close once the running jobs are done."""
        if self.state is GrabState.PROBING:
            self._close()
        elif self.state is not GrabState.CLOSED:
            self.state = GrabState.STOPPING
            self.pump()

    def connection_lost(self) -> None:
        """The connection ended: give back the slots of the grabs in flight."""
        if self.state is not GrabState.CLOSED:
            self._close()
            self.slots.offer()

    # -- the one place that sends grabs, PRE_SLEEP, or closes --

    def pump(self) -> None:
        """Do what the current state calls for, now that something changed: grab with
        the free slots, sleep once the last grab is answered, close once stopped."""
        state = self.state
        if state is GrabState.GRABBING:
            n = self.slots.free
            if n > 0:
                self.slots.free = 0
                self.outstanding += n
                self._out.append((_GRAB if self.legacy else _GRAB_UNIQ) * n)
        elif state is GrabState.LAST_GRABS:
            if self.outstanding == 0:
                self._out.append(_PRE_SLEEP)
                self.state = GrabState.SLEEPING
        elif state is GrabState.STOPPING and self.running == 0:
            self._close()

    def _register(self, *, legacy: bool) -> None:
        self.legacy = legacy
        out = []
        for name, timeout in self.functions:
            if timeout is None:
                out.append(encode_request(P.CanDo(name)))
            else:
                # gearmand and trigear take milliseconds; the Perl server, seconds.
                t = math.ceil(timeout) if legacy else math.ceil(timeout * 1000)
                out.append(encode_request(P.CanDoTimeout(name, max(1, t))))
        self._out.append(b"".join(out))
        self.state = GrabState.STOPPING if self.slots.stopping else GrabState.GRABBING

    def _close(self) -> None:
        self.state = GrabState.CLOSED
        self.slots.free += self.outstanding
        self.outstanding = 0
