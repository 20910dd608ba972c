"""The worker's grab/sleep machine without sockets (spec S4, S5): each transition by
itself, then hypothesis driving several connections that share one slot pool through
arbitrary event sequences against a model of what each server has been asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trigear.client.grabbing import GrabMachine, GrabState, Slots
from trigear.protocol import Decoder, RemoteProtocolError, Role
from trigear.protocol import packets as P

FUNCTIONS = [(b"f", None), (b"g", 2.5)]


def sent(machine: GrabMachine) -> list[Any]:
    decoder = Decoder(Role.SERVER)
    decoder.receive_data(machine.data_to_send())
    return decoder.receive_events()


def kinds(machine: GrabMachine) -> list[type[Any]]:
    return [type(e) for e in sent(machine)]


def probed(total: int = 2, *, legacy: bool = False) -> tuple[Slots, GrabMachine]:
    """A machine past its probe, with its first grabs sent and read."""
    slots = Slots(total)
    m = GrabMachine(slots, FUNCTIONS, b"id")
    assert kinds(m) == [P.SetClientId, P.GrabJobUniq]
    m.receive(P.Error(b"x", b"y") if legacy else P.NoJob())
    got = sent(m)
    assert got[:2] == [
        P.CanDo(b"f"),
        P.CanDoTimeout(b"g", 3 if legacy else 2500),  # seconds on the Perl server
    ]
    assert [type(e) for e in got[2:]] == [P.GrabJob if legacy else P.GrabJobUniq] * total
    assert m.state is GrabState.GRABBING
    return slots, m


def test_the_probe_decides_modern_or_legacy_then_grabs_with_every_slot() -> None:
    for legacy in (False, True):
        slots, m = probed(3, legacy=legacy)
        assert (m.legacy, m.outstanding, slots.free) == (legacy, 3, 0)


def test_no_job_stops_grabbing_and_the_last_answer_sends_pre_sleep() -> None:
    slots, m = probed(3)
    assert m.receive(P.NoJob()) is False
    assert (m.state, kinds(m)) == (GrabState.LAST_GRABS, [])
    assert m.receive(P.JobAssignUniq(b"H:1", b"f", b"u", b"")) is True
    assert kinds(m) == []  # one grab still in flight: no PRE_SLEEP yet
    m.receive(P.NoJob())
    assert (m.state, kinds(m)) == (GrabState.SLEEPING, [P.PreSleep])
    assert (m.outstanding, m.running, slots.free) == (0, 1, 2)
    m.job_done()  # a slot frees while asleep: no grab until NOOP
    assert (kinds(m), slots.free) == ([], 3)


def test_one_noop_ends_one_sleep() -> None:
    _, m = probed(2)
    m.receive(P.NoJob())
    m.receive(P.NoJob())
    assert kinds(m) == [P.PreSleep]
    m.receive(P.Noop())
    assert (m.state, kinds(m)) == (GrabState.GRABBING, [P.GrabJobUniq, P.GrabJobUniq])
    m.receive(P.Noop())  # awake already: nothing more
    assert (m.state, kinds(m), m.outstanding) == (GrabState.GRABBING, [], 2)


def test_a_finished_job_grabs_again_while_awake() -> None:
    slots, m = probed(1)
    m.receive(P.JobAssignUniq(b"H:1", b"f", b"", b""))
    assert (kinds(m), slots.free) == ([], 0)
    m.job_done()
    assert kinds(m) == [P.GrabJobUniq]


def test_stop_waits_for_running_jobs_then_closes() -> None:
    slots, m = probed(2)
    m.receive(P.JobAssignUniq(b"H:1", b"f", b"", b""))
    slots.stop()
    assert m.state is GrabState.STOPPING
    m.receive(P.NoJob())  # the other grab's answer: no new grab
    assert kinds(m) == []
    m.job_done()
    assert (m.state, kinds(m), slots.free) == (GrabState.CLOSED, [], 2)
    assert m.receive(P.JobAssignUniq(b"H:2", b"f", b"", b"")) is False  # ignored


def test_stop_while_probing_closes_without_registering() -> None:
    slots = Slots(1)
    m = GrabMachine(slots, FUNCTIONS)
    assert kinds(m) == [P.GrabJobUniq]
    slots.stop()
    m.receive(P.NoJob())
    assert (m.state, kinds(m)) == (GrabState.CLOSED, [])


def test_answers_nobody_asked_for_are_a_protocol_error() -> None:
    _, m = probed(1)
    m.receive(P.NoJob())
    assert kinds(m) == [P.PreSleep]
    for event in (
        P.NoJob(),
        P.JobAssign(b"H:1", b"f", b""),
        P.JobAssignUniq(b"H:1", b"f", b"", b""),
    ):
        with pytest.raises(RemoteProtocolError, match="no grab in flight"):
            m.receive(event)
    fresh = GrabMachine(Slots(1), FUNCTIONS)
    with pytest.raises(RemoteProtocolError, match="before any CAN_DO"):
        fresh.receive(P.JobAssignUniq(b"H:1", b"f", b"", b""))


def test_a_lost_connection_gives_its_grabs_slots_to_an_awake_one() -> None:
    slots, a = probed(2)
    b = GrabMachine(slots, FUNCTIONS)
    sent(b)
    b.receive(P.NoJob())
    assert kinds(b) == [P.CanDo, P.CanDoTimeout]  # no slot left to grab with
    a.connection_lost()
    assert (a.state, a.outstanding) == (GrabState.CLOSED, 0)
    assert kinds(b) == [P.GrabJobUniq, P.GrabJobUniq]
    assert kinds(a) == []


def test_a_no_job_on_one_connection_lets_another_grab() -> None:
    slots, a = probed(1)
    b = GrabMachine(slots, FUNCTIONS)
    sent(b)
    b.receive(P.NoJob())
    assert kinds(b) == [P.CanDo, P.CanDoTimeout]
    a.receive(P.NoJob())
    assert (kinds(a), kinds(b)) == ([P.PreSleep], [P.GrabJobUniq])


# --- every sequence ----------------------------------------------------------------


@dataclass
class ServerView:
    """What one server has been sent by one machine, and what it owes in return."""

    decoder: Decoder = field(default_factory=lambda: Decoder(Role.SERVER))
    probe: bool = True  # the probe is unanswered
    registered: bool = False
    grabs: int = 0  # grabs not answered yet
    sleeping: bool = False  # PRE_SLEEP received, no NOOP sent since
    jobs: int = 0  # assigned and not reported done
    lost: bool = False


class GrabModel(RuleBasedStateMachine):
    @initialize(total=st.integers(1, 4), n=st.integers(1, 3), legacy=st.booleans())
    def setup(self, total: int, n: int, legacy: bool) -> None:
        self.slots = Slots(total)
        self.legacy = legacy
        self.views: dict[GrabMachine, ServerView] = {}
        self.stopped_grabs = 0
        for _ in range(n):
            self.connect()

    # -- helpers --

    def connect(self) -> None:
        m = GrabMachine(self.slots, FUNCTIONS, b"w")
        self.views[m] = ServerView()
        self.flush()

    def pick(self, i: int, want: Any = lambda m, v: True) -> tuple[GrabMachine, ServerView]:
        fits = [(m, v) for m, v in self.views.items() if not v.lost and want(m, v)]
        return fits[i % len(fits)]

    def any_live(self, want: Any) -> bool:
        return any(not v.lost and want(m, v) for m, v in self.views.items())

    def flush(self) -> None:
        """Read what every machine sent, as its server would."""
        for m, v in self.views.items():
            data = m.data_to_send()
            if v.lost:
                assert data == b"", "a lost connection sent something"
                continue
            v.decoder.receive_data(data)
            for ev in v.decoder.receive_events():
                cls = type(ev)
                if cls is P.SetClientId:
                    continue
                if cls in (P.CanDo, P.CanDoTimeout):
                    assert not v.probe
                    v.registered = True
                elif cls in (P.GrabJob, P.GrabJobUniq):
                    if v.probe and v.grabs == 0 and not v.registered:
                        continue  # the probe itself
                    assert cls is (P.GrabJob if m.legacy else P.GrabJobUniq)
                    assert v.registered, "a grab before CAN_DO"
                    assert not v.sleeping, "a grab while asleep"
                    assert not self.slots.stopping, "a grab after stop()"
                    v.grabs += 1
                elif cls is P.PreSleep:
                    assert v.grabs == 0, "PRE_SLEEP with grabs in flight"
                    assert not v.sleeping, "PRE_SLEEP twice without a NOOP"
                    v.sleeping = True
                else:
                    raise AssertionError(f"unexpected {ev!r}")

    def step(self, m: GrabMachine, event: Any) -> bool:
        run = m.receive(event)
        self.flush()
        return run

    # -- the server answers --

    @precondition(lambda self: self.any_live(lambda m, v: v.probe))
    @rule(i=st.integers(0, 9))
    def answer_probe(self, i: int) -> None:
        m, v = self.pick(i, lambda m, v: v.probe)
        v.probe = False
        closed = m.state is GrabState.CLOSED  # stopped while probing
        self.step(m, P.Error(b"server_error", b"no") if self.legacy else P.NoJob())
        if not closed:
            assert m.legacy is self.legacy
            assert v.registered

    @precondition(lambda self: self.any_live(lambda m, v: v.grabs > 0))
    @rule(i=st.integers(0, 9))
    def no_job(self, i: int) -> None:
        m, v = self.pick(i, lambda m, v: v.grabs > 0)
        v.grabs -= 1
        before = m.state
        self.step(m, P.NoJob())
        if before is GrabState.GRABBING:
            assert m.state is not GrabState.GRABBING, "kept grabbing after NO_JOB"

    @precondition(lambda self: self.any_live(lambda m, v: v.grabs > 0))
    @rule(i=st.integers(0, 9))
    def assign(self, i: int) -> None:
        m, v = self.pick(i, lambda m, v: v.grabs > 0)
        v.grabs -= 1
        if m.legacy:
            event: Any = P.JobAssign(b"H:1", b"f", b"")
        else:
            event = P.JobAssignUniq(b"H:1", b"f", b"", b"")
        if self.step(m, event):
            v.jobs += 1
        else:
            assert m.state is GrabState.CLOSED

    @precondition(lambda self: self.any_live(lambda m, v: v.sleeping))
    @rule(i=st.integers(0, 9))
    def noop(self, i: int) -> None:
        m, v = self.pick(i, lambda m, v: v.sleeping)
        v.sleeping = False
        was = m.state
        self.step(m, P.Noop())
        if was is GrabState.SLEEPING:
            assert m.state is GrabState.GRABBING, "a NOOP did not end the sleep"

    @precondition(lambda self: self.any_live(lambda m, v: not v.sleeping))
    @rule(i=st.integers(0, 9))
    def spurious_noop(self, i: int) -> None:
        """A NOOP to a connection that is not asleep changes nothing."""
        m, _ = self.pick(i, lambda m, v: not v.sleeping)
        before = (m.state, m.outstanding, self.slots.free)
        self.step(m, P.Noop())
        assert (m.state, m.outstanding, self.slots.free) == before

    @precondition(lambda self: self.any_live(lambda m, v: not v.probe))
    @rule(i=st.integers(0, 9))
    def late_error(self, i: int) -> None:
        m, _ = self.pick(i, lambda m, v: not v.probe)
        before = (m.state, m.outstanding, self.slots.free)
        self.step(m, P.Error(b"JOB_NOT_FOUND", b"Job given in work result not found"))
        assert (m.state, m.outstanding, self.slots.free) == before

    @precondition(lambda self: self.any_live(lambda m, v: not v.probe and v.grabs == 0))
    @rule(i=st.integers(0, 9), kind=st.sampled_from(["no_job", "assign"]))
    def out_of_step(self, i: int, kind: str) -> None:
        """An answer to no grab: the machine refuses it, and the connection goes."""
        m, v = self.pick(i, lambda m, v: not v.probe and v.grabs == 0)
        if m.state is GrabState.CLOSED:
            return
        event = P.NoJob() if kind == "no_job" else P.JobAssignUniq(b"H:9", b"f", b"", b"")
        with pytest.raises(RemoteProtocolError):
            m.receive(event)
        self.flush()
        self.lose_machine(m, v)

    # -- the worker's side --

    @precondition(lambda self: any(v.jobs for v in self.views.values()))
    @rule(i=st.integers(0, 9))
    def job_ends(self, i: int) -> None:
        busy = [(m, v) for m, v in self.views.items() if v.jobs]
        m, v = busy[i % len(busy)]
        v.jobs -= 1
        m.job_done()
        self.flush()

    @precondition(lambda self: self.any_live(lambda m, v: True))
    @rule(i=st.integers(0, 9))
    def lose(self, i: int) -> None:
        m, v = self.pick(i)
        self.lose_machine(m, v)

    def lose_machine(self, m: GrabMachine, v: ServerView) -> None:
        v.lost = True
        v.grabs = 0
        m.connection_lost()
        self.flush()

    @precondition(lambda self: len(self.views) < 6 and not self.slots.stopping)
    @rule()
    def reconnect(self) -> None:
        self.connect()

    @precondition(lambda self: any(v.lost and not v.jobs for v in self.views.values()))
    @rule()
    def reap(self) -> None:
        """The session of a lost connection ends once its jobs have."""
        for m, v in list(self.views.items()):
            if v.lost and not v.jobs:
                self.slots.remove(m)
                del self.views[m]

    @rule()
    def stop(self) -> None:
        self.slots.stop()
        self.flush()

    # -- what always holds --

    @invariant()
    def slots_are_conserved(self) -> None:
        s = self.slots
        held = sum(m.outstanding + m.running for m in self.views)
        assert s.free >= 0
        assert s.free + held == s.total, (s.free, held, s.total)

    @invariant()
    def machines_agree_with_their_servers(self) -> None:
        for m, v in self.views.items():
            assert m.running == v.jobs
            if v.lost:
                assert (m.state, m.outstanding) == (GrabState.CLOSED, 0)
                continue
            if m.state is not GrabState.CLOSED:
                assert m.outstanding == v.grabs
            if m.state is GrabState.SLEEPING:
                assert v.sleeping
            if v.sleeping:  # told to sleep and not woken: asleep, or stopping
                assert m.state in (GrabState.SLEEPING, GrabState.STOPPING, GrabState.CLOSED)

    @invariant()
    def each_state_means_what_it_says(self) -> None:
        for m in self.views:
            if m.state is GrabState.SLEEPING:
                assert m.outstanding == 0
            if m.state is GrabState.LAST_GRABS:
                assert m.outstanding > 0, "every grab answered, yet no PRE_SLEEP"
            if m.state is GrabState.STOPPING:
                assert m.running > 0, "stopped with nothing running, yet not closed"
            if self.slots.stopping:
                assert m.state in (GrabState.PROBING, GrabState.STOPPING, GrabState.CLOSED)

    @invariant()
    def no_slot_idles_while_a_connection_could_grab(self) -> None:
        if self.slots.free:
            awake = [m for m in self.views if m.state is GrabState.GRABBING]
            assert not awake, "a free slot and an awake connection, but no grab"


GrabModel.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestGrabModel = GrabModel.TestCase
