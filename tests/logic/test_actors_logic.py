"""ActorTable and the fsm helpers: events in, effects out.  No processes."""
from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.logic import fsm
from ember.logic.control.actors import (
    TRANSITIONS,
    ActorCreated,
    ActorCreationFailed,
    ActorDependenciesResolved,
    ActorExited,
    ActorKilled,
    ActorOutOfScope,
    ActorPlaced,
    ActorRegistered,
    ActorSpec,
    ActorState,
    ActorTable,
    ActorWorkerDied,
    DeathKind,
    JobFinished,
    KillActorWorker,
    NodeDied,
    OwnerDied,
    Persist,
    PublishActor,
    Reply,
    ReplyError,
    ScheduleActor,
    TableRestored,
)

S = ActorState
OWNER = b"owner-1"
JOB = b"job-1"
NODE = b"node-a"


class match:
    """Partial matcher: equal to an instance of ``cls`` whose given fields are equal."""

    def __init__(self, cls: type, **fields: Any) -> None:
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(fields) <= names, f"{cls.__name__} has no {set(fields) - names}"
        self.cls, self.fields = cls, fields

    def __eq__(self, other: object) -> bool:
        return isinstance(other, self.cls) and all(
            getattr(other, k) == v for k, v in self.fields.items())

    def __repr__(self) -> str:
        return f"match({self.cls.__name__}, {self.fields})"


_causes = itertools.count()


def cause() -> str:
    return f"c{next(_causes)}"


def spec(actor_id: bytes = b"A", **overrides: Any) -> ActorSpec:
    fields: dict[str, Any] = dict(
        actor_id=actor_id, job_id=JOB, owner_address="tcp://owner", owner_worker_id=OWNER,
        class_name="Counter", creation_spec=b"\x00spec-" + actor_id,
        resources={"CPU": 1.0}, max_restarts=0)
    fields.update(overrides)
    return ActorSpec(**fields)


class Driver:
    """Feeds events to a table with a ticking clock and keeps the last effects."""

    def __init__(self, table: ActorTable) -> None:
        self.table = table
        self.now = 0.0
        self.request_ids = itertools.count(1)

    def __call__(self, event: Any) -> list[Any]:
        self.now += 1.0
        return self.table.handle(event, self.now)

    def register(self, actor_id: bytes = b"A", *, get_if_exists: bool = False,
                 unready: bool = False, **overrides: Any) -> list[Any]:
        return self(ActorRegistered(
            spec=spec(actor_id, **overrides), request_id=next(self.request_ids),
            get_if_exists=get_if_exists, has_unready_dependencies=unready, cause_id=cause()))

    def place(self, actor_id: bytes = b"A", worker_id: bytes = b"w1",
              node_id: bytes = NODE) -> list[Any]:
        return self(ActorPlaced(actor_id=actor_id, node_id=node_id, worker_id=worker_id,
                                worker_address=f"tcp://{worker_id.decode()}",
                                cause_id=cause()))

    def created(self, actor_id: bytes = b"A", worker_id: bytes = b"w1") -> list[Any]:
        return self(ActorCreated(actor_id=actor_id, worker_id=worker_id, cause_id=cause()))

    def alive(self, actor_id: bytes = b"A", worker_id: bytes = b"w1",
              node_id: bytes = NODE, **overrides: Any) -> None:
        self.register(actor_id, **overrides)
        self.place(actor_id, worker_id, node_id)
        self.created(actor_id, worker_id)
        assert self.state(actor_id) is S.ALIVE

    def worker_died(self, actor_id: bytes = b"A", worker_id: bytes = b"w1") -> list[Any]:
        return self(ActorWorkerDied(actor_id=actor_id, worker_id=worker_id,
                                    exit_detail="SIGKILL", cause_id=cause()))

    def state(self, actor_id: bytes = b"A") -> ActorState:
        rec = self.table.get(actor_id)
        assert rec is not None
        return rec.state


@pytest.fixture
def table() -> Iterator[ActorTable]:
    t = ActorTable()
    yield t
    t.check_invariants()


@pytest.fixture
def d(table: ActorTable) -> Driver:
    return Driver(table)


def types(effects: list[Any]) -> list[type]:
    return [type(e) for e in effects]


# --- fsm helpers ----------------------------------------------------------------------------


def test_lookup_returns_the_table_value_and_refuses_other_moves() -> None:
    table = {(S.ALIVE, S.DEAD): "nine"}
    assert fsm.lookup(table, "actor x", S.ALIVE, S.DEAD, "c1") == "nine"
    with pytest.raises(fsm.InvalidTransition) as info:
        fsm.lookup(table, "actor x", S.DEAD, S.ALIVE, "c2")
    error = info.value
    assert (error.obj, error.from_state, error.to_state, error.cause_id) == (
        "actor x", S.DEAD, S.ALIVE, "c2")
    assert "actor x" in str(error) and "DEAD -> ALIVE" in str(error) and "c2" in str(error)


def test_transition_log_is_bounded_and_tells_one_story_per_key() -> None:
    log = fsm.TransitionLog(maxlen=3)
    log.record("a", None, S.PENDING_CREATION, "c1", at_s=1.0)
    log.record("b", None, S.PENDING_CREATION, "c2")
    log.record("a", S.PENDING_CREATION, S.ALIVE, "c3", note="up")
    assert [(e.to_state, e.cause_id) for e in log.story("a")] == [
        (S.PENDING_CREATION, "c1"), (S.ALIVE, "c3")]
    log.record("a", S.ALIVE, S.DEAD, "c4")
    assert len(log) == 3
    assert [e.cause_id for e in log.story("a")] == ["c3", "c4"]  # c1 fell off
    assert log.story("a")[0].note == "up"
    with pytest.raises(ValueError):
        fsm.TransitionLog(maxlen=0)


@pytest.mark.parametrize("old,new", list(itertools.product(ActorState, ActorState)))
def test_every_move_outside_the_table_is_refused(old: ActorState, new: ActorState) -> None:
    if (old, new) in TRANSITIONS:
        assert fsm.lookup(TRANSITIONS, "actor A", old, new, "c") is TRANSITIONS[(old, new)]
    else:
        with pytest.raises(fsm.InvalidTransition):
            fsm.lookup(TRANSITIONS, "actor A", old, new, "c")


def test_dead_is_terminal_in_the_table() -> None:
    assert not [move for move in TRANSITIONS if move[0] is S.DEAD]
    assert len(TRANSITIONS) == 10  # the ten numbered edges of the diagram


# --- one test per transition ----------------------------------------------------------------


def test_0_register_schedules_and_replies(d: Driver) -> None:
    effects = d.register(resources={"CPU": 2.0}, scheduling_strategy="SPREAD")
    assert effects == [
        match(Persist, actor_id=b"A"),
        match(ScheduleActor, actor_id=b"A", resources={"CPU": 2.0}, creation_spec=b"\x00spec-A",
              scheduling_strategy="SPREAD", incarnation=0),
        match(PublishActor, actor_id=b"A", state=S.PENDING_CREATION, address=None),
        match(Reply, request_id=1, actor_id=b"A", is_existing=False),
    ]
    assert len({e.cause_id for e in effects}) == 1  # the event's cause travels with every order
    assert d.state() is S.PENDING_CREATION


def test_0_register_with_unready_dependencies_waits(d: Driver) -> None:
    effects = d.register(unready=True)
    assert ScheduleActor not in types(effects)
    assert d.state() is S.DEPENDENCIES_UNREADY


def test_1_dependencies_resolved_schedules(d: Driver) -> None:
    d.register(unready=True)
    effects = d(ActorDependenciesResolved(actor_id=b"A", cause_id="deps"))
    assert effects == [match(Persist), match(ScheduleActor, actor_id=b"A", cause_id="deps"),
                       match(PublishActor, state=S.PENDING_CREATION)]
    assert d(ActorDependenciesResolved(actor_id=b"A", cause_id="again")) == []


def test_2_created_on_the_placed_worker_goes_alive(d: Driver) -> None:
    d.register()
    assert d.place() == [match(Persist)]
    assert d.state() is S.PENDING_CREATION  # placed, __init__ still running
    effects = d.created()
    assert effects == [match(Persist), match(PublishActor, state=S.ALIVE, address="tcp://w1",
                                             node_id=NODE, incarnation=0)]
    rec = d.table.get(b"A")
    assert rec is not None and (rec.node_id, rec.worker_id) == (NODE, b"w1")


def test_3_alive_worker_death_restarts_within_budget(d: Driver) -> None:
    d.alive(max_restarts=1)
    effects = d.worker_died()
    assert effects == [
        match(Persist), match(ScheduleActor, actor_id=b"A", incarnation=1),
        match(PublishActor, state=S.RESTARTING, address=None, incarnation=1)]
    rec = d.table.get(b"A")
    assert rec is not None and rec.restarts == 1 and rec.worker_id is None


def test_4_restarted_actor_comes_back_alive(d: Driver) -> None:
    d.alive(max_restarts=1)
    d.worker_died()
    d.place(worker_id=b"w2")
    assert d.created(worker_id=b"w2") == [
        match(Persist), match(PublishActor, state=S.ALIVE, address="tcp://w2", incarnation=1)]


def test_5_worker_death_during_first_init_restarts(d: Driver) -> None:
    d.register(max_restarts=3)
    d.place()
    effects = d.worker_died()
    assert match(ScheduleActor, incarnation=1) in effects
    assert d.state() is S.RESTARTING


def test_6_death_during_restart_restarts_again(d: Driver) -> None:
    d.alive(max_restarts=3)
    d.worker_died()
    d.place(worker_id=b"w2")
    effects = d.worker_died(worker_id=b"w2")
    assert match(ScheduleActor, incarnation=2) in effects
    assert d.state() is S.RESTARTING
    moves = [e for e in d.table.story(b"A") if not e.note.startswith(("ignored", "placed"))]
    assert [e.to_state for e in moves] == [
        S.PENDING_CREATION, S.ALIVE, S.RESTARTING, S.RESTARTING]


def test_7_unready_actor_can_be_killed(d: Driver) -> None:
    d.register(unready=True)
    effects = d(ActorKilled(actor_id=b"A", no_restart=True, cause_id="kill"))
    assert effects == [match(Persist), match(PublishActor, state=S.DEAD)]  # no worker to kill
    rec = d.table.get(b"A")
    assert rec is not None and rec.death is not None and rec.death.kind is DeathKind.KILLED


def test_8_init_error_kills_without_restart_by_default(d: Driver) -> None:
    d.register(max_restarts=5)
    d.place()
    effects = d(ActorCreationFailed(actor_id=b"A", worker_id=b"w1", message="ValueError: x",
                                    error_bytes=b"pickled", cause_id="init"))
    assert effects == [match(Persist), match(KillActorWorker, node_id=NODE, worker_id=b"w1"),
                       match(PublishActor, state=S.DEAD)]
    rec = d.table.get(b"A")
    assert rec is not None and rec.death is not None
    assert (rec.death.kind, rec.death.message, rec.death.error_bytes) == (
        DeathKind.INIT_FAILED, "ValueError: x", b"pickled")
    assert rec.restarts == 0


def test_9_alive_worker_death_without_budget_is_final(d: Driver) -> None:
    d.alive(max_restarts=0)
    effects = d.worker_died()
    assert effects == [match(Persist), match(PublishActor, state=S.DEAD)]
    rec = d.table.get(b"A")
    assert rec is not None and rec.death is not None
    assert rec.death.kind is DeathKind.WORKER_DIED and "SIGKILL" in rec.death.message


def test_10_restarting_actor_killed_is_dead(d: Driver) -> None:
    d.alive(max_restarts=-1)
    d.worker_died()
    d.place(worker_id=b"w2")
    effects = d(ActorKilled(actor_id=b"A", no_restart=True, cause_id="kill"))
    assert effects == [match(Persist), match(KillActorWorker, worker_id=b"w2"),
                       match(PublishActor, state=S.DEAD, incarnation=1)]


# --- events that do not fit: ignored, and the story says so --------------------------------


def test_events_for_a_dead_actor_are_ignored(d: Driver) -> None:
    d.alive()
    d(ActorExited(actor_id=b"A", worker_id=b"w1", cause_id="exit"))
    for event in [ActorCreated(actor_id=b"A", worker_id=b"w1", cause_id="late1"),
                  ActorWorkerDied(actor_id=b"A", worker_id=b"w1", exit_detail="x",
                                  cause_id="late2"),
                  ActorKilled(actor_id=b"A", no_restart=False, cause_id="late3"),
                  ActorOutOfScope(actor_id=b"A", cause_id="late4"),
                  ActorDependenciesResolved(actor_id=b"A", cause_id="late5")]:
        assert d(event) == []
    assert d.state() is S.DEAD
    late = [e for e in d.table.story(b"A") if e.cause_id.startswith("late")]
    assert len(late) == 5 and all("ignored" in e.note for e in late)


def test_events_from_an_old_incarnation_are_ignored(d: Driver) -> None:
    d.alive(max_restarts=2)
    d.worker_died()
    d.place(worker_id=b"w2")
    assert d.worker_died(worker_id=b"w1") == []  # a second report about the first worker
    assert d.created(worker_id=b"w1") == []
    assert d(ActorExited(actor_id=b"A", worker_id=b"w1", cause_id="old")) == []
    assert d.state() is S.RESTARTING
    assert "stale worker" in d.table.story(b"A")[-1].note
    assert d.created(worker_id=b"w2") != []
    assert d.created(worker_id=b"w2") == []  # duplicate
    assert d.state() is S.ALIVE


def test_created_before_placement_is_ignored(d: Driver) -> None:
    d.register()
    assert d.created() == []
    assert d.state() is S.PENDING_CREATION


def test_unwanted_placements_kill_the_extra_worker(d: Driver) -> None:
    assert d.place(b"nobody", b"w9") == [match(KillActorWorker, actor_id=b"nobody",
                                                 worker_id=b"w9")]
    d.register()
    d.place(worker_id=b"w1")
    assert d.place(worker_id=b"w1") == []  # same placement twice
    assert d.place(worker_id=b"w2") == [match(KillActorWorker, worker_id=b"w2")]
    d.created(worker_id=b"w1")
    assert d.place(worker_id=b"w3") == [match(KillActorWorker, worker_id=b"w3")]
    rec = d.table.get(b"A")
    assert rec is not None and rec.worker_id == b"w1"


def test_creation_failed_after_alive_is_ignored(d: Driver) -> None:
    d.alive()
    assert d(ActorCreationFailed(actor_id=b"A", worker_id=b"w1", message="x",
                                 cause_id="late")) == []
    assert d.state() is S.ALIVE


def test_events_for_unknown_actors_do_nothing(d: Driver) -> None:
    assert d.created(b"ghost") == []
    assert d(ActorKilled(actor_id=b"ghost", no_restart=True, cause_id="k")) == []
    assert d(OwnerDied(owner_worker_id=b"nobody", cause_id="o")) == []
    assert d(NodeDied(node_id=b"nowhere", cause_id="n")) == []
    assert d.table.story(b"ghost")[0].note == "ignored: created: unknown actor"


def test_an_unknown_event_type_is_a_bug(d: Driver) -> None:
    with pytest.raises(TypeError):
        d("not an event")


def test_a_broken_index_is_caught_by_check_invariants() -> None:
    table = ActorTable()
    Driver(table).register(name="svc")
    table._names.clear()  # simulate a bug
    with pytest.raises(AssertionError, match="name index"):
        table.check_invariants()


# --- registration and names -------------------------------------------------------------------


def test_a_taken_name_is_refused(d: Driver) -> None:
    d.register(b"A", name="svc", namespace="ns")
    effects = d.register(b"B", name="svc", namespace="ns")
    assert effects == [match(ReplyError, request_id=2)]
    assert "already taken" in effects[0].message and "get_if_exists" in effects[0].message
    assert d.table.get(b"B") is None


def test_names_are_per_namespace(d: Driver) -> None:
    d.register(b"A", name="svc", namespace="ns1")
    d.register(b"B", name="svc", namespace="ns2")
    d.register(b"C")  # unnamed actors never clash
    d.register(b"D")
    assert d.table.lookup_named("svc", "ns1") == b"A"
    assert d.table.lookup_named("svc", "ns2") == b"B"
    assert d.table.lookup_named("svc", "ns3") is None
    assert d.table.list_named() == [("ns1", "svc"), ("ns2", "svc")]
    assert d.table.list_named("ns2") == [("ns2", "svc")]


def test_get_if_exists_returns_the_live_holder(d: Driver) -> None:
    d.alive(b"A", name="svc", namespace="ns")
    effects = d.register(b"B", name="svc", namespace="ns", get_if_exists=True)
    assert effects == [match(Reply, actor_id=b"A", is_existing=True)]
    assert d.table.get(b"B") is None


def test_get_if_exists_creates_when_nobody_holds_the_name(d: Driver) -> None:
    effects = d.register(b"B", name="svc", namespace="ns", get_if_exists=True)
    assert match(Reply, actor_id=b"B", is_existing=False) in effects
    assert match(ScheduleActor, actor_id=b"B") in effects


def test_a_dead_actor_frees_its_name_but_a_restarting_one_keeps_it(d: Driver) -> None:
    d.alive(b"A", name="svc", namespace="ns", max_restarts=1)
    d.worker_died(b"A")
    assert d.table.lookup_named("svc", "ns") == b"A"  # RESTARTING still holds it
    assert d.register(b"B", name="svc", namespace="ns") == [match(ReplyError)]
    d(ActorKilled(actor_id=b"A", no_restart=True, cause_id="k"))
    assert d.table.lookup_named("svc", "ns") is None
    assert d.table.list_named() == []
    assert match(Reply, actor_id=b"B", is_existing=False) in d.register(
        b"B", name="svc", namespace="ns")
    assert d.table.lookup_named("svc", "ns") == b"B"


def test_duplicate_registration_is_idempotent_and_conflicts_are_refused(d: Driver) -> None:
    d.register(b"A")
    assert d.register(b"A") == [match(Reply, actor_id=b"A", is_existing=False)]
    assert d.register(b"A", class_name="Other") == [match(ReplyError)]
    assert len(d.table.list_actors()) == 1


def test_bad_specs_get_an_error_reply(d: Driver) -> None:
    assert d.register(b"A", max_restarts=-2) == [match(ReplyError)]
    assert d.register(b"", max_restarts=0) == [match(ReplyError)]
    assert d.register(b"B", resources={"CPU": -1.0}) == [match(ReplyError)]
    assert d.table.list_actors() == []


# --- owner death, jobs, scope, exit -----------------------------------------------------------


def test_owner_death_kills_its_non_detached_actors_only(d: Driver) -> None:
    d.alive(b"A", b"w1")
    d.register(b"B")  # pending, no worker yet
    d.alive(b"C", b"w3", is_detached=True, name="keep")
    d.alive(b"D", b"w4", owner_worker_id=b"other-owner")
    effects = d(OwnerDied(owner_worker_id=OWNER, cause_id="owner"))
    assert [e for e in effects if isinstance(e, KillActorWorker)] == [
        match(KillActorWorker, actor_id=b"A", worker_id=b"w1")]
    assert [d.state(a) for a in (b"A", b"B", b"C", b"D")] == [S.DEAD, S.DEAD, S.ALIVE, S.ALIVE]
    rec = d.table.get(b"A")
    assert rec is not None and rec.death is not None and rec.death.kind is DeathKind.OWNER_DIED
    assert "detached" in rec.death.message
    assert d.table.lookup_named("keep", "") == b"C"


def test_job_finished_kills_that_jobs_non_detached_actors(d: Driver) -> None:
    d.alive(b"A", b"w1")
    d.alive(b"B", b"w2", is_detached=True)
    d.alive(b"C", b"w3", job_id=b"job-2")
    effects = d(JobFinished(job_id=JOB, cause_id="job"))
    assert [e.actor_id for e in effects if isinstance(e, KillActorWorker)] == [b"A"]
    assert [d.state(a) for a in (b"A", b"B", b"C")] == [S.DEAD, S.ALIVE, S.ALIVE]


def test_out_of_scope_kills_unless_detached(d: Driver) -> None:
    d.alive(b"A", b"w1", max_restarts=-1)
    d.alive(b"B", b"w2", is_detached=True)
    effects = d(ActorOutOfScope(actor_id=b"A", cause_id="scope"))
    assert effects == [match(Persist), match(KillActorWorker, worker_id=b"w1"),
                       match(PublishActor, state=S.DEAD)]
    assert d(ActorOutOfScope(actor_id=b"B", cause_id="scope2")) == []
    assert d.state(b"B") is S.ALIVE
    assert "detached" in d.table.story(b"B")[-1].note


def test_exit_actor_is_final_even_with_budget(d: Driver) -> None:
    d.alive(max_restarts=-1)
    effects = d(ActorExited(actor_id=b"A", worker_id=b"w1", cause_id="exit"))
    assert effects == [match(Persist), match(PublishActor, state=S.DEAD)]  # it exits itself
    assert d.worker_died() == []  # its death report comes after and changes nothing
    rec = d.table.get(b"A")
    assert rec is not None and rec.death is not None and rec.death.kind is DeathKind.EXITED


# --- restart budget -------------------------------------------------------------------------------


def test_restarts_stop_at_max_restarts(d: Driver) -> None:
    d.alive(max_restarts=2)
    for old, new in ((b"w1", b"w2"), (b"w2", b"w3")):
        d.worker_died(worker_id=old)
        d.place(worker_id=new)
        d.created(worker_id=new)
    rec = d.table.get(b"A")
    assert rec is not None and rec.restarts == 2 and rec.state is S.ALIVE
    effects = d.worker_died(worker_id=b"w3")
    assert ScheduleActor not in types(effects)
    rec = d.table.get(b"A")
    assert rec is not None and rec.state is S.DEAD and rec.restarts == 2
    assert rec.death is not None and "max_restarts=2" in rec.death.message


def test_infinite_restarts(d: Driver) -> None:
    d.alive(max_restarts=-1)
    for n in range(2, 52):
        d.worker_died(worker_id=b"w%d" % (n - 1))
        d.place(worker_id=b"w%d" % n)
        d.created(worker_id=b"w%d" % n)
    rec = d.table.get(b"A")
    assert rec is not None and rec.restarts == 50 and rec.state is S.ALIVE


def test_kill_with_restart_counts_and_kills_the_worker(d: Driver) -> None:
    d.alive(max_restarts=1)
    effects = d(ActorKilled(actor_id=b"A", no_restart=False, cause_id="k1"))
    # the restart waits for the worker's death: never two incarnations at once
    assert effects == [match(KillActorWorker, worker_id=b"w1")]
    assert d.state() is S.ALIVE
    effects = d.worker_died()
    assert effects == [match(Persist), match(ScheduleActor, incarnation=1), match(PublishActor, state=S.RESTARTING)]
    rec = d.table.get(b"A")
    assert rec is not None and rec.restarts == 1
    d.place(worker_id=b"w2")
    d.created(worker_id=b"w2")
    effects = d(ActorKilled(actor_id=b"A", no_restart=False, cause_id="k2"))
    assert match(PublishActor, state=S.DEAD) in effects  # budget spent
    rec = d.table.get(b"A")
    assert rec is not None and rec.death is not None and rec.death.kind is DeathKind.KILLED


def test_kill_with_restart_before_placement_does_nothing(d: Driver) -> None:
    d.register(max_restarts=3)
    assert d(ActorKilled(actor_id=b"A", no_restart=False, cause_id="k")) == []
    assert d.state() is S.PENDING_CREATION


def test_node_death_restarts_or_kills_the_actors_placed_there(d: Driver) -> None:
    d.alive(b"A", b"w1", NODE, max_restarts=1)
    d.alive(b"B", b"w2", NODE, max_restarts=0)
    d.alive(b"C", b"w3", b"node-b", max_restarts=1)
    d.register(b"D", max_restarts=1)
    d.place(b"D", b"w4", NODE)  # __init__ still running there
    effects = d(NodeDied(node_id=NODE, cause_id="node"))
    assert KillActorWorker not in types(effects)
    assert [e.actor_id for e in effects if isinstance(e, ScheduleActor)] == [b"A", b"D"]
    assert [d.state(a) for a in (b"A", b"B", b"C", b"D")] == [
        S.RESTARTING, S.DEAD, S.ALIVE, S.RESTARTING]
    rec = d.table.get(b"B")
    assert rec is not None and rec.death is not None and rec.death.kind is DeathKind.NODE_DIED


def test_init_error_restarts_when_configured() -> None:
    table = ActorTable(is_init_error_restartable=True)
    d = Driver(table)
    d.register(max_restarts=1)
    d.place()
    failed = ActorCreationFailed(actor_id=b"A", worker_id=b"w1", message="boom", cause_id="f1")
    effects = d(failed)
    assert match(KillActorWorker, worker_id=b"w1") in effects
    assert match(ScheduleActor, incarnation=1) in effects
    d.place(worker_id=b"w2")
    d(dataclasses.replace(failed, worker_id=b"w2", cause_id="f2"))
    rec = table.get(b"A")
    assert rec is not None and rec.state is S.DEAD and rec.restarts == 1
    assert rec.death is not None and rec.death.kind is DeathKind.INIT_FAILED
    table.check_invariants()


# --- queries ---------------------------------------------------------------------------------------


def test_list_actors_filters_and_limits(d: Driver) -> None:
    d.alive(b"A", b"w1")
    d.register(b"B", job_id=b"job-2")
    d.register(b"C", class_name="Other")
    assert [r.actor_id for r in d.table.list_actors({"state": "ALIVE"})] == [b"A"]
    assert [r.actor_id for r in d.table.list_actors({"state": S.PENDING_CREATION})] == [
        b"B", b"C"]
    assert [r.actor_id for r in d.table.list_actors({"job_id": JOB})] == [b"A", b"C"]
    assert [r.actor_id for r in d.table.list_actors({"class_name": "Other"})] == [b"C"]
    assert len(d.table.list_actors(limit=2)) == 2
    with pytest.raises(ValueError, match="unknown actor filter"):
        d.table.list_actors({"colour": "red"})
    with pytest.raises(ValueError, match="unknown actor state"):
        d.table.list_actors({"state": "SLEEPING"})


def test_get_returns_a_copy(d: Driver) -> None:
    d.register()
    rec = d.table.get(b"A")
    assert rec is not None
    rec.state = S.DEAD
    assert d.state() is S.PENDING_CREATION
    assert d.table.get(b"missing") is None


def test_story_carries_cause_ids_and_times(d: Driver) -> None:
    d.register(unready=True)
    d(ActorDependenciesResolved(actor_id=b"A", cause_id="deps-ready"))
    story = d.table.story(b"A")
    assert [(e.from_state, e.to_state) for e in story] == [
        (None, S.DEPENDENCIES_UNREADY), (S.DEPENDENCIES_UNREADY, S.PENDING_CREATION)]
    assert story[1].cause_id == "deps-ready" and story[1].at_s == 2.0


def test_old_dead_records_are_evicted() -> None:
    table = ActorTable(dead_actors_max=2)
    d = Driver(table)
    for actor_id in (b"A", b"B", b"C"):
        d.register(actor_id)
    for actor_id in (b"B", b"A", b"C"):
        effects = d(ActorKilled(actor_id=actor_id, no_restart=True, cause_id="k"))
    assert effects[-1] == match(Persist, actor_id=b"B", record=None)
    assert table.get(b"B") is None and table.get(b"A") is not None
    assert len(table.list_actors({"state": "DEAD"})) == 2
    table.check_invariants()


# --- persistence ---------------------------------------------------------------------------------


def _busy_table() -> tuple[ActorTable, Driver]:
    table = ActorTable()
    d = Driver(table)
    d.alive(b"A", b"w1", name="svc", namespace="ns", max_restarts=2)
    d.register(b"B", unready=True, is_detached=True, scheduling_strategy={"node": b"n1"})
    d.register(b"C")
    d.register(b"D", max_restarts=-1)
    d.place(b"D", b"w4")
    d(ActorCreationFailed(actor_id=b"D", worker_id=b"w4", message="bad", error_bytes=b"e",
                          cause_id="f"))
    d.alive(b"E", b"w5", max_restarts=1)
    d.worker_died(b"E", b"w5")
    return table, d


def test_snapshot_restore_round_trip_through_msgpack() -> None:
    table, _ = _busy_table()
    wire = msgpack.packb(table.snapshot(), use_bin_type=True)
    restored = ActorTable()
    restored.restore(msgpack.unpackb(wire, raw=False))
    assert restored.snapshot() == table.snapshot()
    for actor_id in (b"A", b"B", b"C", b"D", b"E"):
        assert restored.get(actor_id) == table.get(actor_id)
    assert restored.lookup_named("svc", "ns") == b"A"
    # The restored table keeps working: the name is held, owner death applies.
    d = Driver(restored)
    d.now = 100.0
    assert d.register(b"X", name="svc", namespace="ns") == [match(ReplyError)]
    d(OwnerDied(owner_worker_id=OWNER, cause_id="o"))
    assert d.state(b"B") is S.DEPENDENCIES_UNREADY  # detached
    assert d.state(b"A") is S.DEAD
    restored.check_invariants()


def test_persist_effects_rebuild_the_same_table() -> None:
    table = ActorTable(dead_actors_max=1)
    stored: dict[bytes, Any] = {}
    events: list[Any] = []
    for actor_id in (b"A", b"B", b"C"):
        events += [
            ActorRegistered(spec=spec(actor_id, max_restarts=1), request_id=1, cause_id="r"),
            ActorPlaced(actor_id=actor_id, node_id=NODE, worker_id=b"w" + actor_id,
                        worker_address="tcp://x", cause_id="p")]
    events += [ActorCreated(actor_id=b"A", worker_id=b"wA", cause_id="c"),
               ActorWorkerDied(actor_id=b"B", worker_id=b"wB", exit_detail="x", cause_id="d"),
               ActorKilled(actor_id=b"C", no_restart=True, cause_id="k1"),
               ActorKilled(actor_id=b"B", no_restart=True, cause_id="k2")]  # evicts C
    for n, event in enumerate(events):
        for effect in table.handle(event, float(n)):
            if isinstance(effect, Persist):
                stored[effect.actor_id] = effect.record
    assert stored[b"C"] is None
    rebuilt = ActorTable(dead_actors_max=1)
    rebuilt.restore({"format": 1, "actors": [r for r in stored.values() if r is not None]})
    assert rebuilt.snapshot() == table.snapshot()


def test_table_restored_reschedules_only_unplaced_pending_actors() -> None:
    table, _ = _busy_table()
    restored = ActorTable()
    restored.restore(table.snapshot())
    effects = restored.handle(TableRestored(cause_id="boot"), 200.0)
    # C never placed; E restarting, not yet placed.  A alive, B unready, D dead.
    assert effects == [match(ScheduleActor, actor_id=b"C", incarnation=0),
                       match(ScheduleActor, actor_id=b"E", incarnation=1)]


def test_restore_rejects_bad_snapshots() -> None:
    table = ActorTable()
    with pytest.raises(ValueError, match="format"):
        table.restore({"format": 99, "actors": []})
    with pytest.raises(ValueError, match="actors"):
        table.restore({"format": 1})
    with pytest.raises(ValueError, match="malformed"):
        table.restore({"format": 1, "actors": [{"actor_id": b"A"}]})
    good, _ = _busy_table()
    snap = good.snapshot()
    twice = {"format": 1, "actors": list(snap["actors"]) * 2}  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="twice"):
        table.restore(twice)
    assert table.list_actors() == []  # a failed restore leaves the table as it was


# --- random event sequences keep every invariant ---------------------------------------------------

_ACTORS = [b"A", b"B"]
_WORKERS = [b"w1", b"w2"]
_NODES = [b"n1", b"n2"]

_ops = st.one_of(
    st.tuples(st.just("register"), st.sampled_from(_ACTORS), st.integers(-1, 2),
              st.booleans(), st.booleans(), st.booleans()),
    st.tuples(st.just("deps"), st.sampled_from(_ACTORS)),
    st.tuples(st.just("place"), st.sampled_from(_ACTORS), st.sampled_from(_WORKERS),
              st.sampled_from(_NODES)),
    st.tuples(st.just("created"), st.sampled_from(_ACTORS), st.sampled_from(_WORKERS)),
    st.tuples(st.just("init_failed"), st.sampled_from(_ACTORS), st.sampled_from(_WORKERS)),
    st.tuples(st.just("worker_died"), st.sampled_from(_ACTORS), st.sampled_from(_WORKERS)),
    st.tuples(st.just("node_died"), st.sampled_from(_NODES)),
    st.tuples(st.just("kill"), st.sampled_from(_ACTORS), st.booleans()),
    st.tuples(st.just("owner_died"), st.sampled_from([OWNER, b"owner-2"])),
    st.tuples(st.just("scope"), st.sampled_from(_ACTORS)),
    st.tuples(st.just("exit"), st.sampled_from(_ACTORS), st.sampled_from(_WORKERS)),
)


def _event_for(op: tuple[Any, ...], n: int) -> Any:
    kind, c = op[0], f"r{n}"
    if kind == "register":
        _, a, max_restarts, named, detached, unready = op
        owner = OWNER if not a.startswith(b"B") else b"owner-2"
        return ActorRegistered(spec=spec(a, max_restarts=max_restarts, is_detached=detached,
                                         name="same" if named else "", owner_worker_id=owner),
                               request_id=n, has_unready_dependencies=unready, cause_id=c)
    table: dict[str, Any] = {
        "deps": lambda: ActorDependenciesResolved(actor_id=op[1], cause_id=c),
        "place": lambda: ActorPlaced(actor_id=op[1], worker_id=op[2], node_id=op[3],
                                     worker_address="tcp://" + op[2].decode(), cause_id=c),
        "created": lambda: ActorCreated(actor_id=op[1], worker_id=op[2], cause_id=c),
        "init_failed": lambda: ActorCreationFailed(actor_id=op[1], worker_id=op[2],
                                                   message="boom", cause_id=c),
        "worker_died": lambda: ActorWorkerDied(actor_id=op[1], worker_id=op[2],
                                               exit_detail="x", cause_id=c),
        "node_died": lambda: NodeDied(node_id=op[1], cause_id=c),
        "kill": lambda: ActorKilled(actor_id=op[1], no_restart=op[2], cause_id=c),
        "owner_died": lambda: OwnerDied(owner_worker_id=op[1], cause_id=c),
        "scope": lambda: ActorOutOfScope(actor_id=op[1], cause_id=c),
        "exit": lambda: ActorExited(actor_id=op[1], worker_id=op[2], cause_id=c),
    }
    return table[kind]()


@settings(max_examples=300, deadline=None)
@given(st.lists(_ops, min_size=5, max_size=60), st.booleans())
def test_random_event_sequences_keep_invariants(ops: list[tuple[Any, ...]],
                                                restartable: bool) -> None:
    table = ActorTable(is_init_error_restartable=restartable, dead_actors_max=2)
    for n, op in enumerate(ops):
        dead_before = {r.actor_id for r in table.list_actors({"state": "DEAD"})}
        effects = table.handle(_event_for(op, n), float(n))
        table.check_invariants()
        for effect in effects:  # DEAD is terminal: never scheduled or published again
            if isinstance(effect, (ScheduleActor, PublishActor)):
                assert effect.actor_id not in dead_before
    snapshot = table.snapshot()
    again = ActorTable(is_init_error_restartable=restartable, dead_actors_max=2)
    again.restore(msgpack.unpackb(msgpack.packb(snapshot, use_bin_type=True), raw=False))
    assert again.snapshot() == snapshot


def _plausible_event(table: ActorTable, rng: random.Random, n: int,
                     generation: dict[bytes, int]) -> Any:
    """Mostly the next event a real cluster would send for a random actor, sometimes noise.

    A DEAD actor's slot gets a fresh actor id (the next generation), so walks do not stall.
    """
    base = rng.choice(_ACTORS)
    rec = table.get(base + b"%d" % generation[base])
    if rec is not None and rec.state is S.DEAD:
        generation[base] += 1
        rec = None
    actor_id = base + b"%d" % generation[base]
    node = rng.choice(_NODES)
    worker = rng.choice(_WORKERS) + actor_id + node  # a worker lives on one node
    if rec is None or rng.random() < 0.15:
        op: tuple[Any, ...] = rng.choice([
            ("register", actor_id, rng.choice([-1, 0, 1, 3]), rng.random() < 0.5,
             rng.random() < 0.3, rng.random() < 0.3),
            ("node_died", rng.choice(_NODES)),
            ("owner_died", rng.choice([OWNER, b"owner-2"])),
            ("kill", actor_id, rng.random() < 0.5),
            ("scope", actor_id),
            ("place", actor_id, worker, node),
        ])
    elif rec.state is S.DEPENDENCIES_UNREADY:
        op = ("deps", actor_id)
    elif rec.worker_id is None:
        op = ("place", actor_id, worker, node)
    else:
        current = rec.worker_id if rng.random() < 0.8 else worker  # sometimes stale
        op = (rng.choice(["created", "created", "init_failed", "worker_died", "worker_died",
                          "exit"]), actor_id, current)
    return _event_for(op, n)


@pytest.mark.parametrize("seed", range(200))
def test_seeded_cluster_walks_keep_invariants(seed: int) -> None:
    """A model of the cluster's workers: a DEAD actor leaves no worker behind, and no actor
    ever has two workers at once (at most one incarnation alive)."""
    rng = random.Random(seed)
    table = ActorTable(is_init_error_restartable=seed % 2 == 1, dead_actors_max=3)
    running: dict[bytes, tuple[bytes, bytes]] = {}  # worker -> (actor, node)
    generation = dict.fromkeys(_ACTORS, 0)
    for n in range(120):
        event = _plausible_event(table, rng, n, generation)
        effects = table.handle(event, float(n))
        table.check_invariants()
        if isinstance(event, ActorPlaced):
            running[event.worker_id] = (event.actor_id, event.node_id)
        elif isinstance(event, (ActorWorkerDied, ActorExited)):
            running.pop(event.worker_id, None)
        elif isinstance(event, NodeDied):
            running = {w: an for w, an in running.items() if an[1] != event.node_id}
        for effect in effects:
            if isinstance(effect, KillActorWorker):
                running.pop(effect.worker_id, None)
        per_actor: dict[bytes, int] = {}
        for actor_id, _node in running.values():
            per_actor[actor_id] = per_actor.get(actor_id, 0) + 1
        for actor_id, count in per_actor.items():
            rec = table.get(actor_id)
            assert count == 1, f"seed {seed}: {actor_id!r} has {count} workers"
            assert rec is not None and rec.state is not S.DEAD, f"seed {seed}: leaked worker"


def test_an_unschedulable_actor_dies_with_that_cause(d: Driver) -> None:
    from ember.logic.control.actors import ActorUnschedulable
    d.register(max_restarts=3)
    stale = d(ActorUnschedulable(actor_id=b"A", incarnation=7, message="old", cause_id="u0"))
    assert stale == [] and d.state() is S.PENDING_CREATION  # another incarnation's answer
    effects = d(ActorUnschedulable(actor_id=b"A", incarnation=0, message="node x is dead", cause_id="u1"))
    assert match(PublishActor, state=S.DEAD) in effects and KillActorWorker not in types(effects)
    rec = d.table.get(b"A")
    assert rec is not None and rec.death is not None
    assert rec.death.kind is DeathKind.UNSCHEDULABLE and rec.death.message == "node x is dead"


def test_unschedulable_is_ignored_once_a_worker_was_placed(d: Driver) -> None:
    from ember.logic.control.actors import ActorUnschedulable
    d.alive(max_restarts=0)
    assert d(ActorUnschedulable(actor_id=b"A", incarnation=0, message="late", cause_id="u")) == []
    assert d.state() is S.ALIVE
