"""ReferenceTable: one test per rule, then hypothesis property tests over random histories."""
from __future__ import annotations

from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from ember.logic.owner.references import (
    BorrowedRefReceived, BorrowerAdded, BorrowerDied, BorrowerRemoved, FreeObject,
    LineageRecorded, NodeRemoved, NotifyOwnerBorrowing, NotifyOwnerReleased,
    ObjectContainsRefs, ObjectInlined, ObjectLocationAdded, ObjectLocationRemoved,
    RecoverObject, RefAdded, RefDropped, ReferenceCountingError, ReferenceTable,
    ReleaseLineage, TaskArgsReleased, TaskSubmittedWithArgs)

ME = "10.0.0.1:7000"
OTHER = "10.0.0.2:7000"
W1, W2 = "10.0.0.3:7001", "10.0.0.4:7001"
A, B, C, D = b"A" * 4, b"B" * 4, b"C" * 4, b"D" * 4
T1, T2 = b"t1", b"t2"


@pytest.fixture
def table() -> Iterator[ReferenceTable]:
    t = ReferenceTable()
    yield t
    t.check_invariants()


def own(t: ReferenceTable, *object_ids: bytes) -> None:
    for object_id in object_ids:
        assert t.handle(RefAdded(object_id, ME, True), 0.0) == []


def borrow(t: ReferenceTable, object_id: bytes, owner: str = OTHER) -> list[object]:
    assert t.handle(RefAdded(object_id, owner, False), 0.0) == []
    return list(t.handle(BorrowedRefReceived(object_id, owner), 0.0))


def free(object_id: bytes, *nodes: str) -> FreeObject:
    return FreeObject(object_id, frozenset(nodes))


# --- local refs --------------------------------------------------------------------------
def test_owned_object_freed_when_last_local_ref_drops(table: ReferenceTable) -> None:
    own(table, A)
    table.handle(RefAdded(A, ME, True), 1.0)
    assert table.handle(RefDropped(A), 2.0) == []
    assert table.handle(RefDropped(A), 3.0) == [free(A)]
    assert A not in table and len(table) == 0


def test_dropping_an_untracked_ref_raises(table: ReferenceTable) -> None:
    with pytest.raises(ReferenceCountingError):
        table.handle(RefDropped(A), 0.0)


def test_owned_flag_must_agree(table: ReferenceTable) -> None:
    own(table, A)
    with pytest.raises(ReferenceCountingError):
        table.handle(RefAdded(A, OTHER, False), 0.0)


def test_fast_path_add_and_remove(table: ReferenceTable) -> None:
    assert table.add_local(A) is False  # untracked: the caller must use handle()
    assert A not in table
    own(table, A)
    assert table.add_local(A) is True
    assert table.remove_local(A) is True
    assert table.remove_local(A) is False  # last hold: nothing changed, use handle()
    summary = table.summary(A)
    assert summary is not None and summary.local_count == 1
    assert table.handle(RefDropped(A), 0.0) == [free(A)]
    assert table.remove_local(A) is False


def test_fast_path_remove_last_local_while_a_task_pins(table: ReferenceTable) -> None:
    own(table, A)
    table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    assert table.remove_local(A) is True
    assert table.handle(TaskArgsReleased(T1), 0.0) == [free(A)]


# --- submitted-task refs -------------------------------------------------------------------
def test_task_args_pin_until_released(table: ReferenceTable) -> None:
    own(table, A, B)
    table.handle(TaskSubmittedWithArgs(T1, (A, B, A)), 0.0)
    assert table.handle(RefDropped(A), 0.0) == []
    assert table.handle(RefDropped(B), 0.0) == []
    summary = table.summary(A)
    assert summary is not None and summary.submitted_count == 2
    effects = table.handle(TaskArgsReleased(T1), 0.0)
    assert sorted(effects, key=repr) == [free(A), free(B)]


def test_two_tasks_pin_independently(table: ReferenceTable) -> None:
    own(table, A)
    table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    table.handle(TaskSubmittedWithArgs(T2, (A,)), 0.0)
    table.handle(RefDropped(A), 0.0)
    assert table.handle(TaskArgsReleased(T2), 0.0) == []
    assert table.handle(TaskArgsReleased(T1), 0.0) == [free(A)]


def test_unknown_task_release_is_a_no_op(table: ReferenceTable) -> None:
    assert table.handle(TaskArgsReleased(T1), 0.0) == []
    own(table, A)
    table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    table.handle(TaskArgsReleased(T1), 0.0)
    assert table.handle(TaskArgsReleased(T1), 0.0) == []  # a second release changes nothing
    assert table.summary(A) is not None


def test_task_submit_errors(table: ReferenceTable) -> None:
    with pytest.raises(ReferenceCountingError):
        table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    own(table, A)
    table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    with pytest.raises(ReferenceCountingError):
        table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    table.handle(TaskArgsReleased(T1), 0.0)


# --- contained refs ------------------------------------------------------------------------
def test_inner_lives_while_outer_lives_then_cascades(table: ReferenceTable) -> None:
    own(table, A, B)
    table.handle(ObjectContainsRefs(B, (A,)), 0.0)
    assert table.handle(RefDropped(A), 0.0) == []
    assert table.handle(RefDropped(B), 0.0) == [free(B), free(A)]


def test_inner_with_own_refs_outlives_outer(table: ReferenceTable) -> None:
    own(table, A, B)
    table.handle(ObjectContainsRefs(B, (A, A)), 0.0)  # a duplicate inner counts once
    assert table.handle(RefDropped(B), 0.0) == [free(B)]
    assert table.handle(RefDropped(A), 0.0) == [free(A)]


def test_inner_in_two_outers(table: ReferenceTable) -> None:
    own(table, A, B, C)
    table.handle(ObjectContainsRefs(B, (A,)), 0.0)
    table.handle(ObjectContainsRefs(C, (A,)), 0.0)
    table.handle(RefDropped(A), 0.0)
    assert table.handle(RefDropped(B), 0.0) == [free(B)]
    assert table.handle(RefDropped(C), 0.0) == [free(C), free(A)]


def test_deep_cascade_has_no_recursion_limit(table: ReferenceTable) -> None:
    ids = [i.to_bytes(4, "big") for i in range(5000)]
    own(table, ids[0])
    for inner, outer in zip(ids, ids[1:]):
        own(table, outer)
        table.handle(ObjectContainsRefs(outer, (inner,)), 0.0)
        table.handle(RefDropped(inner), 0.0)
    effects = table.handle(RefDropped(ids[-1]), 0.0)
    assert effects == [free(i) for i in reversed(ids)]


def test_contains_errors(table: ReferenceTable) -> None:
    own(table, A)
    with pytest.raises(ReferenceCountingError):
        table.handle(ObjectContainsRefs(B, (A,)), 0.0)  # outer untracked
    with pytest.raises(ReferenceCountingError):
        table.handle(ObjectContainsRefs(A, (B,)), 0.0)  # inner untracked
    with pytest.raises(ReferenceCountingError):
        table.handle(ObjectContainsRefs(A, (A,)), 0.0)


# --- borrowers (owner side) ------------------------------------------------------------------
def test_borrower_keeps_owned_object_alive(table: ReferenceTable) -> None:
    own(table, A)
    table.handle(BorrowerAdded(A, W1), 0.0)
    table.handle(BorrowerAdded(A, W2), 0.0)
    assert table.handle(RefDropped(A), 0.0) == []
    assert table.handle(BorrowerRemoved(A, W1), 0.0) == []
    assert table.handle(BorrowerRemoved(A, W1), 0.0) == []  # repeated: no-op
    assert table.handle(BorrowerRemoved(A, W2), 0.0) == [free(A)]


def test_borrower_died_releases_everything_it_held(table: ReferenceTable) -> None:
    own(table, A, B, C)
    for object_id in (A, B, C):
        table.handle(BorrowerAdded(object_id, W1), 0.0)
    table.handle(BorrowerAdded(C, W2), 0.0)
    for object_id in (B, A, C):
        table.handle(RefDropped(object_id), 0.0)
    assert table.handle(BorrowerDied(W1), 0.0) == [free(A), free(B)]
    assert table.handle(BorrowerDied(W1), 0.0) == []
    assert table.handle(BorrowerDied(W2), 0.0) == [free(C)]


def test_stray_borrower_messages_are_ignored(table: ReferenceTable) -> None:
    assert table.handle(BorrowerAdded(A, W1), 0.0) == []  # arrived after the free
    assert table.handle(BorrowerRemoved(A, W1), 0.0) == []
    borrow(table, B)
    assert table.handle(BorrowerAdded(B, W1), 0.0) == []  # not ours to track
    summary = table.summary(B)
    assert summary is not None and summary.borrowers == frozenset()
    table.handle(RefDropped(B), 0.0)
    assert len(table) == 0


# --- borrowed refs (borrower side) -------------------------------------------------------------
def test_borrowed_ref_announced_once_and_released_once(table: ReferenceTable) -> None:
    assert borrow(table, A) == [NotifyOwnerBorrowing(OTHER, A)]
    assert borrow(table, A) == []
    assert table.handle(RefDropped(A), 0.0) == []
    assert table.handle(RefDropped(A), 0.0) == [NotifyOwnerReleased(OTHER, A)]
    assert borrow(table, A) == [NotifyOwnerBorrowing(OTHER, A)]  # a new episode
    assert table.handle(RefDropped(A), 0.0) == [NotifyOwnerReleased(OTHER, A)]


def test_unannounced_foreign_ref_is_released_silently(table: ReferenceTable) -> None:
    table.handle(RefAdded(A, OTHER, False), 0.0)
    assert table.handle(RefDropped(A), 0.0) == []
    assert A not in table


def test_borrowed_ref_received_before_ref_added_raises(table: ReferenceTable) -> None:
    with pytest.raises(ReferenceCountingError):
        table.handle(BorrowedRefReceived(A, OTHER), 0.0)


def test_own_ref_deserialized_is_not_a_borrow(table: ReferenceTable) -> None:
    own(table, A)
    assert table.handle(BorrowedRefReceived(A, ME), 0.0) == []
    assert table.handle(RefDropped(A), 0.0) == [free(A)]


def test_borrowed_ref_pinned_by_task_then_released(table: ReferenceTable) -> None:
    borrow(table, A)
    table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    assert table.handle(RefDropped(A), 0.0) == []
    assert table.handle(TaskArgsReleased(T1), 0.0) == [NotifyOwnerReleased(OTHER, A)]


def test_borrowed_inner_released_when_owned_outer_freed(table: ReferenceTable) -> None:
    borrow(table, A)
    own(table, B)
    table.handle(ObjectContainsRefs(B, (A,)), 0.0)
    assert table.handle(RefDropped(A), 0.0) == []
    assert table.handle(RefDropped(B), 0.0) == [free(B), NotifyOwnerReleased(OTHER, A)]


# --- lineage and locations -------------------------------------------------------------------
def test_lineage_released_when_last_pinning_object_freed(table: ReferenceTable) -> None:
    own(table, A, B)
    table.handle(LineageRecorded(A, T1), 0.0)
    table.handle(LineageRecorded(A, T1), 0.0)  # repeated: one pin
    table.handle(LineageRecorded(B, T1), 0.0)
    assert table.handle(RefDropped(A), 0.0) == [free(A)]
    assert table.handle(RefDropped(B), 0.0) == [free(B), ReleaseLineage(T1)]


def test_lineage_errors(table: ReferenceTable) -> None:
    with pytest.raises(ReferenceCountingError):
        table.handle(LineageRecorded(A, T1), 0.0)
    own(table, A)
    table.handle(LineageRecorded(A, T1), 0.0)
    with pytest.raises(ReferenceCountingError):
        table.handle(LineageRecorded(A, T2), 0.0)
    borrow(table, B)
    with pytest.raises(ReferenceCountingError):
        table.handle(LineageRecorded(B, T1), 0.0)


def test_free_names_the_plasma_nodes(table: ReferenceTable) -> None:
    own(table, A)
    table.handle(ObjectLocationAdded(A, "n1"), 0.0)
    table.handle(ObjectLocationAdded(A, "n2"), 0.0)
    assert table.handle(RefDropped(A), 0.0) == [free(A, "n1", "n2")]
    assert table.handle(ObjectLocationAdded(A, "n3"), 0.0) == []  # late report: ignored


def test_losing_the_last_copy_asks_for_recovery(table: ReferenceTable) -> None:
    own(table, A, B, C)
    table.handle(LineageRecorded(A, T1), 0.0)
    for object_id in (A, B, C):
        table.handle(ObjectLocationAdded(object_id, "n1"), 0.0)
    table.handle(ObjectLocationAdded(B, "n2"), 0.0)
    table.handle(ObjectInlined(C), 0.0)
    assert table.handle(NodeRemoved("n1"), 0.0) == [RecoverObject(A, T1)]
    assert table.handle(ObjectLocationRemoved(B, "n9"), 0.0) == []
    assert table.handle(ObjectLocationRemoved(B, "n2"), 0.0) == [RecoverObject(B, None)]
    summary = table.summary(C)
    assert summary is not None and summary.is_inline and summary.plasma_nodes == frozenset()
    for object_id in (A, B, C):
        table.handle(RefDropped(object_id), 0.0)


# --- causes, story, matchers, invariants -------------------------------------------------------
def test_effects_carry_the_cause(table: ReferenceTable) -> None:
    own(table, A, B)
    table.handle(ObjectContainsRefs(B, (A,)), 0.0)
    table.handle(RefDropped(A, cause_id="c1"), 0.0)
    effects = table.handle(RefDropped(B, cause_id="c2"), 0.0)
    assert [e.cause_id for e in effects] == ["c2", "c2"]
    assert effects[1] == FreeObject.match(object_id=A, cause_id="c2")
    assert effects[1] != FreeObject.match(object_id=B)
    assert effects[1] != NotifyOwnerReleased.match(object_id=A)
    with pytest.raises(TypeError):
        FreeObject.match(node=1)


def test_story_follows_an_object_through_its_tasks(table: ReferenceTable) -> None:
    own(table, A, B)
    table.handle(TaskSubmittedWithArgs(T1, (A,), cause_id="submit"), 1.0)
    table.handle(RefDropped(A, cause_id="gc"), 2.0)
    table.handle(TaskArgsReleased(T1, cause_id="done"), 3.0)
    story = table.story(A)
    assert [type(item).__name__ for _, item in story] == [
        "RefAdded", "TaskSubmittedWithArgs", "RefDropped", "TaskArgsReleased", "FreeObject"]
    assert [now for now, _ in story] == [0.0, 1.0, 2.0, 3.0, 3.0]
    assert [type(item).__name__ for _, item in table.story(B)] == ["RefAdded"]
    table.handle(RefDropped(B), 4.0)


def test_story_log_is_bounded() -> None:
    t = ReferenceTable(log_entries_max=10)
    own(t, A)
    for _ in range(50):
        t.handle(RefAdded(A, ME, True), 0.0)
    assert len(t.story(A)) == 10


def test_check_invariants_catches_corruption(table: ReferenceTable) -> None:
    own(table, A)
    table.handle(TaskSubmittedWithArgs(T1, (A,)), 0.0)
    assert table.add_local(A)
    table._records[A].submitted = 0  # simulate a bug
    with pytest.raises(ReferenceCountingError, match="submitted"):
        table.check_invariants()
    table._records[A].submitted = 1
    table.check_invariants()
    table.handle(TaskArgsReleased(T1), 0.0)
    table.handle(RefDropped(A), 0.0)
    table.handle(RefDropped(A), 0.0)


def test_unknown_event_type_raises(table: ReferenceTable) -> None:
    with pytest.raises(TypeError):
        table.handle(object(), 0.0)  # type: ignore[arg-type]


# --- property tests: random histories against a reachability model ----------------------------
OBJECTS_MAX = 12
BORROWERS = (W1, W2, "10.0.0.5:7001")
FOREIGN = tuple(b"F" + bytes([i]) * 3 for i in range(4))
LINEAGE_TASKS = (b"L0", b"L1", None)


class ReferenceHistory(RuleBasedStateMachine):
    """Drives a ReferenceTable with random valid events and keeps an independent model of
    who holds what.  After every step: nothing reachable was freed, nothing was freed or
    released twice, and everything unreachable was freed (no leak)."""

    @initialize()
    def start(self) -> None:
        self.table = ReferenceTable(log_entries_max=64)
        self.now = 0.0
        self.next_id = 0
        self.next_task = 0
        self.local: dict[bytes, int] = {}
        self.tasks: dict[bytes, list[bytes]] = {}
        self.contains: dict[bytes, set[bytes]] = {}
        self.borrowers: dict[bytes, set[str]] = {}
        self.owned_alive: set[bytes] = set()
        self.freed: set[bytes] = set()
        self.foreign_alive: set[bytes] = set()
        self.announced: set[bytes] = set()
        self.lineage: dict[bytes, bytes] = {}

    # --- the model ----------------------------------------------------------------------
    def reachable(self) -> set[bytes]:
        direct = {o for o, n in self.local.items() if n > 0}
        direct.update(o for args in self.tasks.values() for o in args)
        direct.update(o for o, bs in self.borrowers.items() if bs)
        seen, stack = set(direct), list(direct)
        while stack:
            for inner in self.contains.get(stack.pop(), ()):
                if inner not in seen:
                    seen.add(inner)
                    stack.append(inner)
        return seen

    def live_pins(self) -> dict[bytes, int]:
        pins: dict[bytes, int] = {}
        for object_id, task_id in self.lineage.items():
            if object_id in self.owned_alive:
                pins[task_id] = pins.get(task_id, 0) + 1
        return pins

    def apply(self, event: object, use_fast_path: bool = False) -> None:
        self.now += 1.0
        pins_before = self.live_pins()
        effects = self.table.handle(event, self.now)  # type: ignore[arg-type]
        reachable = self.reachable()
        freed_now: set[bytes] = set()
        released_lineage: set[bytes] = set()
        for effect in effects:
            if isinstance(effect, FreeObject):
                assert effect.object_id in self.owned_alive, f"double or bogus free {effect}"
                assert effect.object_id not in reachable, f"freed a reachable object {effect}"
                assert effect.cause_id == event.cause_id  # type: ignore[attr-defined]
                self.owned_alive.discard(effect.object_id)
                self.freed.add(effect.object_id)
                freed_now.add(effect.object_id)
                self.contains.pop(effect.object_id, None)
            elif isinstance(effect, NotifyOwnerReleased):
                assert effect.object_id in self.announced, f"release without borrow {effect}"
                assert effect.object_id not in reachable
                self.announced.discard(effect.object_id)
                self.foreign_alive.discard(effect.object_id)
                self.contains.pop(effect.object_id, None)
            elif isinstance(effect, NotifyOwnerBorrowing):
                assert effect.object_id not in self.announced, f"announced twice {effect}"
                self.announced.add(effect.object_id)
            elif isinstance(effect, ReleaseLineage):
                released_lineage.add(effect.task_id)
            else:
                raise AssertionError(f"unexpected effect {effect}")
        # Silent release of unannounced foreign refs.
        for object_id in list(self.foreign_alive):
            if object_id not in reachable and object_id not in self.announced:
                self.foreign_alive.discard(object_id)
        pins_after = self.live_pins()
        assert released_lineage == {t for t in pins_before if t not in pins_after}

    @invariant()
    def agrees_with_model(self) -> None:
        if not hasattr(self, "table"):
            return
        self.table.check_invariants()
        reachable = self.reachable()
        assert self.owned_alive | self.foreign_alive == reachable  # no leak, nothing lost
        assert set(self.table.object_ids()) == reachable
        assert not self.freed & reachable

    def held(self) -> list[bytes]:
        return sorted(o for o, n in self.local.items() if n > 0)

    # --- rules --------------------------------------------------------------------------
    @precondition(lambda self: self.next_id < OBJECTS_MAX)
    @rule(lineage=st.sampled_from(LINEAGE_TASKS))
    def create_owned(self, lineage: bytes | None) -> None:
        object_id = self.next_id.to_bytes(4, "big")
        self.next_id += 1
        self.owned_alive.add(object_id)
        self.local[object_id] = 1
        self.apply(RefAdded(object_id, ME, True))
        if lineage is not None:
            self.lineage[object_id] = lineage
            self.apply(LineageRecorded(object_id, lineage))

    @precondition(lambda self: self.next_id < OBJECTS_MAX)
    @rule(data=st.data())
    def put_containing(self, data: st.DataObject) -> None:
        held = self.held()
        if not held:
            return
        inners = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=3))
        self.create_owned(None)
        outer = (self.next_id - 1).to_bytes(4, "big")
        self.contains[outer] = set(inners)
        self.apply(ObjectContainsRefs(outer, tuple(inners), cause_id="put"))

    @rule(data=st.data(), fast=st.booleans())
    def add_ref(self, data: st.DataObject, fast: bool) -> None:
        reachable = sorted(self.reachable())
        if not reachable:
            return
        object_id = data.draw(st.sampled_from(reachable))
        self.local[object_id] = self.local.get(object_id, 0) + 1
        if not (fast and self.table.add_local(object_id)):
            is_owned = object_id in self.owned_alive
            self.apply(RefAdded(object_id, ME if is_owned else OTHER, is_owned))

    @rule(data=st.data(), fast=st.booleans())
    def drop_ref(self, data: st.DataObject, fast: bool) -> None:
        held = self.held()
        if not held:
            return
        object_id = data.draw(st.sampled_from(held))
        self.local[object_id] -= 1
        if not (fast and self.table.remove_local(object_id)):
            self.apply(RefDropped(object_id, cause_id="gc"))

    @rule(data=st.data())
    def submit_task(self, data: st.DataObject) -> None:
        held = self.held()
        if not held:
            return
        args = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=4))
        task_id = b"t%d" % self.next_task
        self.next_task += 1
        self.tasks[task_id] = args
        self.apply(TaskSubmittedWithArgs(task_id, tuple(args)))

    @rule(data=st.data())
    def finish_task(self, data: st.DataObject) -> None:
        if not self.tasks:
            return
        task_id = data.draw(st.sampled_from(sorted(self.tasks)))
        del self.tasks[task_id]
        self.apply(TaskArgsReleased(task_id, cause_id="done"))

    @rule(data=st.data(), borrower=st.sampled_from(BORROWERS))
    def borrower_added(self, data: st.DataObject, borrower: str) -> None:
        candidates = sorted(self.reachable() & self.owned_alive)
        if not candidates:
            return
        object_id = data.draw(st.sampled_from(candidates))
        self.borrowers.setdefault(object_id, set()).add(borrower)
        self.apply(BorrowerAdded(object_id, borrower))

    @rule(data=st.data())
    def borrower_removed(self, data: st.DataObject) -> None:
        pairs = sorted((o, b) for o, bs in self.borrowers.items() for b in bs)
        if not pairs:
            return
        object_id, borrower = data.draw(st.sampled_from(pairs))
        self.borrowers[object_id].discard(borrower)
        self.apply(BorrowerRemoved(object_id, borrower, cause_id="released"))

    @rule(borrower=st.sampled_from(BORROWERS))
    def borrower_died(self, borrower: str) -> None:
        for holders in self.borrowers.values():
            holders.discard(borrower)
        self.apply(BorrowerDied(borrower, cause_id="died"))

    @rule(object_id=st.sampled_from(FOREIGN), announce=st.booleans())
    def receive_foreign(self, object_id: bytes, announce: bool) -> None:
        self.local[object_id] = self.local.get(object_id, 0) + 1
        self.foreign_alive.add(object_id)
        self.apply(RefAdded(object_id, OTHER, False))
        if announce:
            self.apply(BorrowedRefReceived(object_id, OTHER))

    def teardown(self) -> None:
        if not hasattr(self, "table"):
            return
        for task_id in sorted(self.tasks):
            del self.tasks[task_id]
            self.apply(TaskArgsReleased(task_id))
        for object_id in sorted(self.borrowers):
            for borrower in sorted(self.borrowers[object_id]):
                self.borrowers[object_id].discard(borrower)
                self.apply(BorrowerRemoved(object_id, borrower))
        for object_id in self.held():
            while self.local[object_id]:
                self.local[object_id] -= 1
                self.apply(RefDropped(object_id))
        self.agrees_with_model()
        assert len(self.table) == 0 and not self.owned_alive and not self.announced
        assert self.freed == {i.to_bytes(4, "big") for i in range(self.next_id)}


TestReferenceHistory = ReferenceHistory.TestCase
TestReferenceHistory.settings = settings(
    max_examples=300, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
