"""ObjectTable: events in, effects out."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.logic.fsm import InvalidTransition
from ember.logic.node.object_table import (
    CreateAllowed,
    CreateRefused,
    DeleteObject,
    DeleteSpillFile,
    ObjectAccessed,
    ObjectCreateRequested,
    ObjectFreed,
    ObjectPinned,
    ObjectRestored,
    ObjectRestoreFailed,
    ObjectRestoreRequested,
    ObjectSealed,
    ObjectSpilled,
    ObjectSpillFailed,
    ObjectState,
    ObjectTable,
    ObjectTableError,
    ObjectUnpinned,
    RestoreDone,
    RestoreFailed,
    RestoreObject,
    SpillObject,
)


def oid(n: int) -> bytes:
    return bytes([n]) * 28


@pytest.fixture
def table():
    t = ObjectTable(capacity_bytes=100)
    yield t
    t.check_invariants()


def put(t: ObjectTable, n: int, size: int, is_primary: bool = True) -> list:
    """Create + seal object n (must be allowed at once)."""
    effects = t.handle(ObjectCreateRequested(f"r{n}", oid(n), size, is_primary), now=0.0)
    assert CreateAllowed.match(req_id=f"r{n}") in effects
    t.handle(ObjectSealed(oid(n)), now=0.0)
    return effects


def test_create_fits_then_seal(table):
    assert table.handle(ObjectCreateRequested("a", oid(1), 40, True), 1.0) == [CreateAllowed("a")]
    assert table.used_bytes == 40 and table.state_of(oid(1)) is ObjectState.CREATING
    assert table.handle(ObjectSealed(oid(1)), 2.0) == []
    assert table.state_of(oid(1)) is ObjectState.SEALED
    assert table.num_objects == 1 and table.available_bytes == 60


def test_too_large_and_exists_refused(table):
    assert table.handle(ObjectCreateRequested("a", oid(1), 101, True), 0.0) == [
        CreateRefused("a", "too_large", 101, 100, 0)]
    put(table, 1, 10)
    assert table.handle(ObjectCreateRequested("b", oid(1), 10, True), 0.0) == [
        CreateRefused.match(req_id="b", reason="exists")]


def test_full_store_spills_lru_primary_and_waits(table):
    put(table, 1, 40)
    put(table, 2, 40)
    effects = table.handle(ObjectCreateRequested("c", oid(3), 30, True), 0.0)
    assert effects == [SpillObject(oid(1))]  # oldest; the create waits
    assert table.state_of(oid(1)) is ObjectState.SPILLING
    assert table.used_bytes == 80 and table.num_waiting_requests == 1
    effects = table.handle(ObjectSpilled(oid(1), "/spill/1"), 0.0)
    assert effects == [CreateAllowed("c")]
    assert table.used_bytes == 70 and table.spilled_bytes == 40
    assert table.spill_url_of(oid(1)) == "/spill/1"


def test_access_changes_lru_order(table):
    put(table, 1, 40)
    put(table, 2, 40)
    table.handle(ObjectAccessed(oid(1)), 0.0)
    assert table.handle(ObjectCreateRequested("c", oid(3), 30, True), 0.0) == [
        SpillObject(oid(2))]


def test_pinned_never_spilled_and_refusal_when_nothing_spillable(table):
    put(table, 1, 40)
    put(table, 2, 40)
    table.handle(ObjectPinned(oid(1)), 0.0)
    assert table.handle(ObjectCreateRequested("c", oid(3), 30, True), 0.0) == [
        SpillObject(oid(2))]
    table.handle(ObjectSpilled(oid(2), "/s/2"), 0.0)
    table.handle(ObjectSealed(oid(3)), 0.0)
    table.handle(ObjectPinned(oid(3)), 0.0)
    # 30 free; pinned 1 (40) and 3 (30): nothing spillable, so refuse at once
    effects = table.handle(ObjectCreateRequested("d", oid(4), 50, True), 0.0)
    assert effects == [CreateRefused("d", "full", 50, 100, 70)]
    assert table.num_waiting_requests == 0
    table.handle(ObjectUnpinned(oid(3)), 0.0)
    assert table.handle(ObjectCreateRequested("e", oid(4), 50, True), 0.0) == [
        SpillObject(oid(3))]


def test_unpin_more_than_pinned_raises(table):
    put(table, 1, 10)
    with pytest.raises(ObjectTableError):
        table.handle(ObjectUnpinned(oid(1)), 0.0)


def test_creating_objects_are_not_spillable(table):
    table.handle(ObjectCreateRequested("a", oid(1), 60, True), 0.0)
    assert table.handle(ObjectCreateRequested("b", oid(2), 60, True), 0.0) == [
        CreateRefused.match(req_id="b", reason="full", used_bytes=60)]


def test_secondary_copies_deleted_first_and_at_once(table):
    put(table, 1, 30)               # primary, oldest
    put(table, 2, 30, is_primary=False)
    put(table, 3, 30, is_primary=False)
    effects = table.handle(ObjectCreateRequested("d", oid(4), 40, True), 0.0)
    assert effects == [DeleteObject(oid(2)), CreateAllowed("d")]
    assert table.state_of(oid(2)) is None
    assert table.state_of(oid(1)) is ObjectState.SEALED


def test_later_requests_wait_behind_the_first(table):
    put(table, 1, 90)
    assert table.handle(ObjectCreateRequested("b", oid(2), 50, True), 0.0) == [
        SpillObject(oid(1))]
    assert table.handle(ObjectCreateRequested("c", oid(3), 5, True), 0.0) == []
    assert table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0) == [
        CreateAllowed("b"), CreateAllowed("c")]


def test_restore_flow_and_spill_file_reuse(table):
    put(table, 1, 60)
    table.handle(ObjectCreateRequested("b", oid(2), 60, True), 0.0)
    table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0)
    table.handle(ObjectSealed(oid(2)), 0.0)
    # restoring 1 needs room: 2 is spilled first, then the restore starts
    assert table.handle(ObjectRestoreRequested("x", oid(1)), 0.0) == [SpillObject(oid(2))]
    assert table.handle(ObjectRestoreRequested("y", oid(1)), 0.0) == []
    assert table.handle(ObjectSpilled(oid(2), "/s/2"), 0.0) == [RestoreObject(oid(1), "/s/1")]
    assert table.state_of(oid(1)) is ObjectState.RESTORING
    assert table.handle(ObjectRestored(oid(1)), 0.0) == [RestoreDone("x"), RestoreDone("y")]
    assert table.spilled_bytes == 120  # both spill files remain
    assert table.handle(ObjectRestoreRequested("z", oid(1)), 0.0) == [RestoreDone("z")]
    # evicting 1 again drops the shm copy without a second spill
    assert table.handle(ObjectRestoreRequested("w", oid(2)), 0.0) == [
        DeleteObject(oid(1)), RestoreObject(oid(2), "/s/2")]
    assert table.state_of(oid(1)) is ObjectState.SPILLED


def test_restore_failures(table):
    assert table.handle(ObjectRestoreRequested("x", oid(9)), 0.0) == [
        RestoreFailed("x", oid(9), "unknown")]
    put(table, 1, 60)
    table.handle(ObjectCreateRequested("b", oid(2), 60, True), 0.0)
    table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0)
    table.handle(ObjectSealed(oid(2)), 0.0)
    table.handle(ObjectPinned(oid(2)), 0.0)
    assert table.handle(ObjectRestoreRequested("y", oid(1)), 0.0) == [
        RestoreFailed("y", oid(1), "full")]
    table.handle(ObjectUnpinned(oid(2)), 0.0)
    table.handle(ObjectFreed(oid(2)), 0.0)
    assert table.handle(ObjectRestoreRequested("z", oid(1)), 0.0) == [
        RestoreObject(oid(1), "/s/1")]
    assert table.handle(ObjectRestoreFailed(oid(1), "disk gone"), 0.0) == [
        RestoreFailed("z", oid(1), "disk gone")]
    assert table.state_of(oid(1)) is ObjectState.SPILLED and table.used_bytes == 0


def test_free_in_each_state(table):
    put(table, 1, 50)
    assert table.handle(ObjectFreed(oid(1)), 0.0) == [DeleteObject(oid(1))]
    assert table.handle(ObjectFreed(oid(1)), 0.0) == []  # duplicate: ignored
    put(table, 2, 60)
    table.handle(ObjectCreateRequested("c", oid(3), 60, True), 0.0)  # spills 2
    assert table.handle(ObjectFreed(oid(2)), 0.0) == []  # spill in flight
    assert table.handle(ObjectSpilled(oid(2), "/s/2"), 0.0) == [
        DeleteSpillFile("/s/2"), CreateAllowed("c")]
    assert table.spilled_bytes == 0
    table.handle(ObjectSealed(oid(3)), 0.0)
    table.handle(ObjectCreateRequested("d", oid(4), 60, True), 0.0)  # spills 3
    table.handle(ObjectSpilled(oid(3), "/s/3"), 0.0)
    table.handle(ObjectSealed(oid(4)), 0.0)
    assert table.handle(ObjectFreed(oid(3)), 0.0) == [DeleteSpillFile("/s/3")]
    assert table.handle(ObjectFreed(oid(4)), 0.0) == [DeleteObject(oid(4))]
    assert table.num_objects == 0 and table.used_bytes == 0


def test_free_of_waiting_create_and_during_restore(table):
    put(table, 1, 90)
    table.handle(ObjectCreateRequested("b", oid(2), 50, True), 0.0)
    assert table.handle(ObjectFreed(oid(2)), 0.0) == [
        CreateRefused.match(req_id="b", reason="freed")]
    table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0)
    table.handle(ObjectRestoreRequested("r", oid(1)), 0.0)
    assert table.handle(ObjectFreed(oid(1)), 0.0) == []
    assert table.handle(ObjectRestored(oid(1)), 0.0) == [
        DeleteObject(oid(1)), DeleteSpillFile("/s/1"), RestoreFailed("r", oid(1), "freed")]


def test_spill_failure_of_a_pinned_object_refuses_full(table):
    put(table, 1, 60)
    assert table.handle(ObjectCreateRequested("b", oid(2), 60, True), 0.0) == [
        SpillObject(oid(1))]
    table.handle(ObjectPinned(oid(1)), 0.0)
    assert table.handle(ObjectSpillFailed(oid(1), "ENOSPC"), 0.0) == [
        CreateRefused.match(req_id="b", reason="full")]
    assert table.state_of(oid(1)) is ObjectState.SEALED


def test_spill_failure_is_not_retried_until_the_disk_may_have_room(table):
    put(table, 1, 30)
    put(table, 2, 30)
    assert table.handle(ObjectCreateRequested("b", oid(3), 70, True), 0.0) == [
        SpillObject(oid(1))]
    # a failed object is not chosen again: the next candidate is tried, then the
    # request is refused, naming the disk
    assert table.handle(ObjectSpillFailed(oid(1), "ENOSPC"), 0.0) == [SpillObject(oid(2))]
    disk_full = "OSError: No space left on device"
    assert table.handle(ObjectSpillFailed(oid(2), disk_full), 0.0) == [
        CreateRefused.match(req_id="b", reason="spill_failed", detail=disk_full,
                            needed_bytes=70, used_bytes=60, capacity_bytes=100)]
    assert table.handle(ObjectCreateRequested("c", oid(4), 50, True), 0.0) == [
        CreateRefused.match(req_id="c", reason="spill_failed")]
    # room that does not need objects 1 and 2 is still made
    put(table, 5, 20)
    assert table.handle(ObjectCreateRequested("d", oid(6), 30, True), 0.0) == [SpillObject(oid(5))]
    # a spill that succeeds means the disk has room again: 1 and 2 may be chosen again
    assert table.handle(ObjectSpilled(oid(5), "/s/5"), 0.0) == [CreateAllowed("d")]
    table.handle(ObjectSealed(oid(6)), 0.0)
    assert table.handle(ObjectCreateRequested("e", oid(7), 50, True), 0.0) == [
        SpillObject(oid(1)), SpillObject(oid(2))]


def test_freeing_a_spill_file_lets_failed_objects_spill_again(table):
    put(table, 1, 50)
    put(table, 2, 50)
    table.handle(ObjectCreateRequested("b", oid(3), 50, True), 0.0)  # spills 1
    table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0)
    table.handle(ObjectSealed(oid(3)), 0.0)
    assert table.handle(ObjectCreateRequested("c", oid(4), 50, True), 0.0) == [SpillObject(oid(2))]
    assert table.handle(ObjectSpillFailed(oid(2), "ENOSPC"), 0.0) == [SpillObject(oid(3))]
    assert table.handle(ObjectSpillFailed(oid(3), "ENOSPC"), 0.0) == [
        CreateRefused.match(req_id="c", reason="spill_failed", detail="ENOSPC")]
    assert table.handle(ObjectFreed(oid(1)), 0.0) == [DeleteSpillFile("/s/1")]
    assert table.handle(ObjectCreateRequested("d", oid(4), 50, True), 0.0) == [SpillObject(oid(2))]


def test_reports_that_do_not_match_raise(table):
    put(table, 1, 10)
    with pytest.raises(InvalidTransition):
        table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0)
    with pytest.raises(InvalidTransition):
        table.handle(ObjectRestored(oid(7)), 0.0)
    assert table.handle(ObjectSealed(oid(8)), 0.0) == []  # seal after free: ignored


def test_story_and_cause_ids(table):
    table.handle(ObjectCreateRequested("a", oid(1), 60, True, cause_id="put-1"), 1.0)
    table.handle(ObjectSealed(oid(1), cause_id="seal-1"), 2.0)
    effects = table.handle(ObjectCreateRequested("b", oid(2), 60, True, cause_id="put-2"), 3.0)
    assert effects == [SpillObject(oid(1), cause_id="put-2")]
    story = table.story(oid(1))
    assert [(e.to_state, e.cause_id) for e in story] == [
        (ObjectState.CREATING, "put-1"), (ObjectState.SEALED, "seal-1"),
        (ObjectState.SPILLING, "put-2")]
    assert story[-1].at_s == 3.0


def test_unknown_event_type_rejected(table):
    with pytest.raises(TypeError):
        table.handle(object(), 0.0)  # type: ignore[arg-type]


# --- property: random sequences -----------------------------------------------------------

N_IDS = 8
ops = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, N_IDS - 1), st.integers(0, 60), st.booleans()),
        st.tuples(st.just("seal"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("access"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("pin"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("unpin"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("free"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("restore"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("finish_io"), st.integers(0, 5), st.booleans()),
    ),
    max_size=80,
)


class _Shell:
    """Carries out effects like the real shell would, with I/O completing on demand."""

    def __init__(self, table: ObjectTable) -> None:
        self.table = table
        self.pins = [0] * N_IDS
        self.io: list[tuple[str, bytes]] = []
        self.answers: dict[str, int] = {}
        self.asked: set[str] = set()
        self.n = 0

    def feed(self, event: object) -> None:
        is_free = isinstance(event, ObjectFreed)
        effects = self.table.handle(event, float(self.n))
        self.n += 1
        for eff in effects:
            if isinstance(eff, SpillObject):
                assert self.pins[eff.object_id[0]] == 0, "spilled a pinned object"
                self.io.append(("spill", eff.object_id))
            elif isinstance(eff, RestoreObject):
                self.io.append(("restore", eff.object_id))
            elif isinstance(eff, DeleteObject) and not is_free:
                assert self.pins[eff.object_id[0]] == 0, "evicted a pinned object"
            elif isinstance(eff, (CreateAllowed, CreateRefused, RestoreDone, RestoreFailed)):
                self.answers[eff.req_id] = self.answers.get(eff.req_id, 0) + 1
        self.table.check_invariants()
        assert self.table.used_bytes <= self.table.capacity_bytes

    def finish(self, index: int, ok: bool) -> None:
        kind, object_id = self.io.pop(index % len(self.io))
        if kind == "spill":
            self.feed(ObjectSpilled(object_id, f"/s/{object_id.hex()}") if ok
                      else ObjectSpillFailed(object_id, "io"))
        else:
            self.feed(ObjectRestored(object_id) if ok else ObjectRestoreFailed(object_id, "io"))


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, 120))
def test_random_sequences_keep_invariants(sequence, capacity):
    table = ObjectTable(capacity_bytes=capacity)
    shell = _Shell(table)
    for step, op in enumerate(sequence):
        kind, i = op[0], op[1]
        if kind == "create":
            req = f"c{step}"
            shell.asked.add(req)
            shell.feed(ObjectCreateRequested(req, oid(i), op[2], op[3]))
        elif kind == "seal":
            shell.feed(ObjectSealed(oid(i)))
        elif kind == "access":
            shell.feed(ObjectAccessed(oid(i)))
        elif kind == "pin":
            if table.state_of(oid(i)) is not None:
                shell.pins[i] += 1
            shell.feed(ObjectPinned(oid(i)))
        elif kind == "unpin":
            if shell.pins[i] > 0 and table.pins_of(oid(i)) > 0:
                shell.pins[i] -= 1
                shell.feed(ObjectUnpinned(oid(i)))
        elif kind == "free":
            shell.pins[i] = 0
            shell.feed(ObjectFreed(oid(i)))
        elif kind == "restore":
            req = f"r{step}"
            shell.asked.add(req)
            shell.feed(ObjectRestoreRequested(req, oid(i)))
        elif kind == "finish_io" and shell.io:
            shell.finish(i, op[2])
    while shell.io:  # let every I/O in flight finish: nothing may stay waiting
        shell.finish(0, True)
    assert table.num_waiting_requests == 0
    assert set(shell.answers) == shell.asked
    assert all(count == 1 for count in shell.answers.values())


def test_entries_list_every_object_with_state_size_and_kind(table):
    put(table, 1, 40)
    put(table, 2, 30, is_primary=False)
    table.handle(ObjectCreateRequested("c", oid(3), 20, True), 0.0)
    assert sorted(table.entries()) == [
        (oid(1), ObjectState.SEALED, 40, True),
        (oid(2), ObjectState.SEALED, 30, False),
        (oid(3), ObjectState.CREATING, 20, True)]
    # making room: the secondary copy goes, the older primary is spilled
    table.handle(ObjectCreateRequested("d", oid(4), 50, True), 0.0)
    table.handle(ObjectSpilled(oid(1), "/spill/1"), 0.0)
    states = {o: s for o, s, _size, _primary in table.entries()}
    assert states[oid(1)] is ObjectState.SPILLED and oid(2) not in states
