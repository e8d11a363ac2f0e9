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
    ObjectCreateAborted,
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
    ObjectRecycled,
    ObjectRecycleFailed,
    ObjectUnpinned,
    OwnerDied,
    PoolTrimTimerFired,
    RecycleObject,
    RestoreDone,
    RestoreFailed,
    RestoreObject,
    SchedulePoolTrim,
    SpillObject,
    StoreSpaceMeasured,
    TrimPoolFile,
    pool_key,
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
        st.tuples(st.just("timer"), st.integers(0, 5)),
        st.tuples(st.just("abort"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("owner_died"), st.integers(0, 2)),
        st.tuples(st.just("no_space"), st.integers(0, N_IDS - 1)),
        st.tuples(st.just("measured"), st.integers(0, 120)),
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
        self.pooled: set[int] = set()     # files in the pool, as the shell knows them
        self.recycling: list[tuple[str, int]] = []  # reports to send back right after
        self.timer_at: float | None = None

    def feed(self, event: object) -> None:
        is_free = isinstance(event, (ObjectFreed, OwnerDied, ObjectCreateAborted, ObjectSealed))
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
            elif isinstance(eff, RecycleObject):
                assert is_free or not self.pins[eff.object_id[0]], "recycled a live object"
                self.recycling.append(("ok" if self.n % 3 else "mapped", eff.file_id))
            elif isinstance(eff, TrimPoolFile):
                self.pooled.remove(eff.file_id)  # only confirmed files are trimmed
            elif isinstance(eff, SchedulePoolTrim):
                self.timer_at = eff.at_s
            if isinstance(eff, CreateAllowed) and eff.recycled_file_id is not None:
                self.pooled.remove(eff.recycled_file_id)  # taken once, and only if confirmed
            if isinstance(eff, (CreateAllowed, CreateRefused, RestoreDone, RestoreFailed)):
                self.answers[eff.req_id] = self.answers.get(eff.req_id, 0) + 1
        self.table.check_invariants()
        assert self.table.used_bytes + self.table.pool_bytes <= self.table.capacity_bytes
        while self.recycling:  # the real shell answers at once, after the batch
            how, file_id = self.recycling.pop(0)
            if how == "ok":
                self.pooled.add(file_id)
                self.feed(ObjectRecycled(file_id))
            else:
                self.feed(ObjectRecycleFailed(file_id, "mapped"))

    def fire_timer(self) -> None:
        if self.timer_at is not None:
            self.n = max(self.n, int(self.timer_at) + 1)
            self.timer_at = None
            self.feed(PoolTrimTimerFired())

    def finish(self, index: int, ok: bool) -> None:
        kind, object_id = self.io.pop(index % len(self.io))
        if kind == "spill":
            self.feed(ObjectSpilled(object_id, f"/s/{object_id.hex()}") if ok
                      else ObjectSpillFailed(object_id, "io"))
        else:
            self.feed(ObjectRestored(object_id) if ok else ObjectRestoreFailed(object_id, "io"))


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(0, 120), st.integers(0, 80), st.integers(0, 4))
def test_random_sequences_keep_invariants(sequence, capacity, pool_max, pool_files_max):
    table = ObjectTable(capacity_bytes=capacity, pool_max_bytes=pool_max,
                        pool_files_max=pool_files_max, pool_idle_s=10.0)
    shell = _Shell(table)
    for step, op in enumerate(sequence):
        kind, i = op[0], op[1]
        if kind == "create":
            req = f"c{step}"
            shell.asked.add(req)
            shell.feed(ObjectCreateRequested(req, oid(i), op[2], op[3], writer=i % 2,
                                             owner=f"owner{i % 3}" if op[3] else ""))
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
        elif kind == "timer":
            shell.fire_timer()
        elif kind == "abort":
            shell.feed(ObjectCreateAborted(oid(i)))
        elif kind == "owner_died":
            shell.feed(OwnerDied(f"owner{i}"))
        elif kind == "no_space":
            shell.feed(ObjectCreateAborted(oid(i), is_out_of_space=True))
        elif kind == "measured":
            shell.feed(StoreSpaceMeasured(i))
    while shell.io:  # let every I/O in flight finish: nothing may stay waiting
        shell.finish(0, True)
    assert table.num_waiting_requests == 0
    assert set(shell.answers) == shell.asked
    assert all(count == 1 for count in shell.answers.values())
    assert shell.pooled == {fid for fid, _size, _ok in table.pool_files()}
    for _ in range(3):  # idle: every pooled file is trimmed in the end
        shell.n += 100
        shell.fire_timer()
    assert table.pool_bytes == 0 and not shell.pooled


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


# --- the file pool (rules 8-12) ----------------------------------------------------------

@pytest.fixture
def pooled():
    t = ObjectTable(capacity_bytes=100, pool_max_bytes=50, pool_files_max=3, pool_idle_s=10.0)
    yield t
    t.check_invariants()


def free_into_pool(t: ObjectTable, n: int, now: float = 0.0) -> int:
    """Free sealed object n and confirm its file was pooled; returns the file id."""
    effects = t.handle(ObjectFreed(oid(n)), now)
    recycle = [e for e in effects if isinstance(e, RecycleObject)]
    assert len(recycle) == 1 and recycle[0].object_id == oid(n), effects
    t.handle(ObjectRecycled(recycle[0].file_id), now)
    return recycle[0].file_id


def test_freed_object_is_pooled_and_reused(pooled):
    put(pooled, 1, 40)
    assert pooled.handle(ObjectFreed(oid(1)), 1.0) == [RecycleObject(oid(1), 1)]
    # not confirmed yet: its bytes are held, and it cannot be handed out
    assert pooled.used_bytes == 0 and pooled.pool_bytes == 40 and pooled.available_bytes == 60
    assert pooled.handle(ObjectCreateRequested("b", oid(2), 40, True), 1.0) == [CreateAllowed("b")]
    pooled.handle(ObjectSealed(oid(2)), 1.0)
    assert pooled.handle(ObjectRecycled(1), 2.0) == [SchedulePoolTrim(11.0)]  # idle since freed
    assert pooled.pool_files() == [(1, 40, True)]
    effects = pooled.handle(ObjectCreateRequested("c", oid(3), 30, True), 3.0)
    assert effects == [CreateAllowed("c", recycled_file_id=1)]
    assert pooled.pool_bytes == 0 and pooled.used_bytes == 70 and pooled.available_bytes == 30
    notes = [entry.note for entry in pooled.story(pool_key(1))]
    assert notes == ["pooled, 40 bytes", f"taken by {oid(3).hex()}"]


def test_recycle_failed_returns_the_bytes(pooled):
    put(pooled, 1, 40)
    pooled.handle(ObjectFreed(oid(1)), 0.0)
    assert pooled.handle(ObjectRecycleFailed(1, "mapped"), 0.0) == []
    assert pooled.pool_bytes == 0 and pooled.available_bytes == 100 and pooled.num_pool_files == 0


def test_waiting_create_admitted_when_recycling_fails_or_confirms(pooled):
    put(pooled, 1, 45)
    put(pooled, 2, 45)
    pooled.handle(ObjectPinned(oid(2)), 0.0)
    assert pooled.handle(ObjectFreed(oid(1)), 0.0) == [RecycleObject(oid(1), 1)]
    # 10 free, 45 being recycled: the create waits for the shell's report
    assert pooled.handle(ObjectCreateRequested("c", oid(3), 50, True), 0.0) == []
    assert pooled.handle(ObjectRecycled(1), 0.0) == [
        SchedulePoolTrim(10.0), CreateAllowed("c", recycled_file_id=1)]
    assert pooled.used_bytes == 95 and pooled.pool_bytes == 0


def test_reports_about_unknown_pool_files_raise(pooled):
    with pytest.raises(InvalidTransition):
        pooled.handle(ObjectRecycled(7), 0.0)
    put(pooled, 1, 10)
    free_into_pool(pooled, 1)
    with pytest.raises(InvalidTransition):
        pooled.handle(ObjectRecycleFailed(1), 0.0)  # already confirmed


def test_only_owner_frees_of_sealed_objects_are_pooled(pooled):
    # larger than the pool: deleted
    put(pooled, 1, 60)
    assert pooled.handle(ObjectFreed(oid(1)), 0.0) == [DeleteObject(oid(1))]
    # a create its writer aborted: deleted (rule 14)
    pooled.handle(ObjectCreateRequested("b", oid(2), 10, True), 0.0)
    assert pooled.handle(ObjectCreateAborted(oid(2)), 0.0) == [DeleteObject(oid(2))]
    assert pooled.state_of(oid(2)) is None and pooled.used_bytes == 0
    # a secondary copy evicted for room is deleted, not pooled
    put(pooled, 3, 30, is_primary=False)
    put(pooled, 4, 40)
    assert pooled.handle(ObjectCreateRequested("e", oid(5), 50, True), 0.0) == [
        DeleteObject(oid(3)), CreateAllowed("e")]
    # a spilled object has no shm file left to pool
    pooled.handle(ObjectSealed(oid(5)), 0.0)
    assert pooled.handle(ObjectCreateRequested("f", oid(6), 20, True), 0.0) == [SpillObject(oid(4))]
    pooled.handle(ObjectSpilled(oid(4), "/s/4"), 0.0)
    assert pooled.handle(ObjectFreed(oid(4)), 0.0) == [DeleteSpillFile("/s/4")]


def test_pool_bounds_trim_the_oldest(pooled):
    for n in (1, 2, 3):
        put(pooled, n, 15)
    for n in (1, 2, 3):
        free_into_pool(pooled, n)
    assert [f[0] for f in pooled.pool_files()] == [1, 2, 3]
    put(pooled, 4, 5)
    # 3 files is the limit: the oldest goes to make room for the 4th
    assert pooled.handle(ObjectFreed(oid(4)), 0.0) == [TrimPoolFile(1), RecycleObject(oid(4), 4)]
    pooled.handle(ObjectRecycled(4), 0.0)
    put(pooled, 5, 40)
    # 50 bytes at most: 2 and 3 go (oldest first) before 40 more bytes fit
    assert pooled.handle(ObjectFreed(oid(5)), 0.0) == [
        TrimPoolFile(2), TrimPoolFile(3), RecycleObject(oid(5), 5)]
    pooled.handle(ObjectRecycled(5), 0.0)
    assert pooled.pool_files() == [(4, 5, True), (5, 40, True)]


def test_best_fit_prefers_the_same_writer_then_larger_then_closest(pooled):
    sizes = {1: 12, 2: 20, 3: 16}
    for n, size in sizes.items():
        pooled.handle(ObjectCreateRequested(f"r{n}", oid(n), size, True, writer="w1" if n == 2 else "w2"), 0.0)
        pooled.handle(ObjectSealed(oid(n)), 0.0)
    for n in sizes:
        free_into_pool(pooled, n)
    # writer w1 last wrote file 2 (20 bytes): taken for 14 bytes though 16 fits closer
    assert pooled.handle(ObjectCreateRequested("a", oid(4), 14, True, writer="w1"), 0.0) == [
        CreateAllowed("a", recycled_file_id=2)]
    # another writer: 15 bytes -> 16 (at least as large) rather than 12
    assert pooled.handle(ObjectCreateRequested("b", oid(5), 15, True, writer="w9"), 0.0) == [
        CreateAllowed("b", recycled_file_id=3)]
    # nothing within [size/2, 2*size]: a new file
    assert pooled.handle(ObjectCreateRequested("c", oid(6), 30, True), 0.0) == [CreateAllowed("c")]
    assert pooled.handle(ObjectCreateRequested("d", oid(7), 5, True), 0.0) == [CreateAllowed("d")]
    # smaller but within half: taken
    assert pooled.handle(ObjectCreateRequested("e", oid(8), 20, True), 0.0) == [
        CreateAllowed("e", recycled_file_id=1)]


def test_pooled_files_are_trimmed_before_anything_is_spilled(pooled):
    put(pooled, 1, 25)
    put(pooled, 2, 25)
    put(pooled, 3, 40)
    free_into_pool(pooled, 1)
    free_into_pool(pooled, 2)
    # 60 bytes: 10 free + 50 pooled -> trims (no best fit in [30, 120]) then grants
    effects = pooled.handle(ObjectCreateRequested("d", oid(4), 60, True), 0.0)
    assert effects == [TrimPoolFile(1), TrimPoolFile(2), CreateAllowed("d")]
    assert pooled.state_of(oid(3)) is ObjectState.SEALED


def test_the_file_a_create_takes_is_kept_while_others_are_trimmed(pooled):
    put(pooled, 1, 20)
    put(pooled, 2, 30)
    put(pooled, 3, 40)
    free_into_pool(pooled, 1)
    free_into_pool(pooled, 2)
    # 45 bytes: takes file 2 (30) and the 10 free bytes; file 1 is trimmed for the other 5
    assert pooled.handle(ObjectCreateRequested("d", oid(4), 45, True), 0.0) == [
        TrimPoolFile(1), CreateAllowed("d", recycled_file_id=2)]
    assert pooled.used_bytes == 85 and pooled.pool_bytes == 0


def test_request_that_cannot_fit_is_refused_without_trimming(pooled):
    put(pooled, 1, 30)
    put(pooled, 2, 50)
    pooled.handle(ObjectPinned(oid(2)), 0.0)
    free_into_pool(pooled, 1)
    effects = pooled.handle(ObjectCreateRequested("c", oid(3), 90, True), 0.0)
    assert effects == [CreateRefused("c", "full", 90, 100, 80)]
    assert pooled.pool_bytes == 30


def test_pool_and_spill_together_make_room(pooled):
    put(pooled, 1, 40)
    put(pooled, 2, 20)
    put(pooled, 3, 40)
    free_into_pool(pooled, 2)
    # 60 bytes: nothing fits in [30, 120]; trim file 1 (20) and spill object 1 (40)
    effects = pooled.handle(ObjectCreateRequested("d", oid(4), 60, True), 0.0)
    assert effects == [TrimPoolFile(1), SpillObject(oid(1))]
    assert pooled.handle(ObjectSpilled(oid(1), "/s/1"), 0.0) == [CreateAllowed("d")]


def test_idle_pooled_files_are_trimmed_by_the_timer(pooled):
    put(pooled, 1, 10)
    put(pooled, 2, 10)
    assert pooled.handle(ObjectFreed(oid(1)), 0.0) == [RecycleObject(oid(1), 1)]
    assert pooled.handle(ObjectRecycled(1), 0.0) == [SchedulePoolTrim(10.0)]
    pooled.handle(ObjectFreed(oid(2)), 4.0)
    assert pooled.handle(ObjectRecycled(2), 4.0) == []  # the timer is already set
    assert pooled.handle(PoolTrimTimerFired(), 10.0) == [TrimPoolFile(1), SchedulePoolTrim(14.0)]
    assert pooled.handle(PoolTrimTimerFired(), 14.0) == [TrimPoolFile(2)]
    assert pooled.pool_bytes == 0
    assert pooled.handle(PoolTrimTimerFired(), 20.0) == []


def test_freed_during_restore_is_pooled(pooled):
    put(pooled, 1, 40)
    put(pooled, 2, 50)
    pooled.handle(ObjectCreateRequested("c", oid(3), 40, True), 0.0)  # spills 1
    pooled.handle(ObjectSpilled(oid(1), "/s/1"), 0.0)
    pooled.handle(ObjectSealed(oid(3)), 0.0)
    pooled.handle(ObjectFreed(oid(3)), 0.0)
    pooled.handle(ObjectRecycled(1), 0.0)
    # the restore of 1 (40) cannot use the pooled file: it is trimmed to make room
    assert pooled.handle(ObjectRestoreRequested("r", oid(1)), 0.0) == [
        TrimPoolFile(1), RestoreObject(oid(1), "/s/1")]
    pooled.handle(ObjectFreed(oid(1)), 0.0)
    assert pooled.handle(ObjectRestored(oid(1)), 0.0) == [
        RecycleObject(oid(1), 2), DeleteSpillFile("/s/1"), RestoreFailed("r", oid(1), "freed")]
    pooled.handle(ObjectRecycleFailed(2, "mapped"), 0.0)
    assert pooled.pool_bytes == 0 and pooled.used_bytes == 50


# --- rule 14: a free that overtakes the seal; rule 13: an owner's death ---------------------------


def test_free_before_seal_waits_for_the_seal_then_pools_the_file(pooled):
    """The cause of the flaky recycling test: the owner's free reached the daemon before
    the writer's seal (sent by another thread), and the file was deleted, not pooled."""
    assert pooled.handle(ObjectCreateRequested("a", oid(1), 20, True), 0.0) == [CreateAllowed("a")]
    assert pooled.handle(ObjectFreed(oid(1)), 0.0) == []  # the writer still writes: bytes kept
    assert pooled.used_bytes == 20 and pooled.state_of(oid(1)) is ObjectState.CREATING
    assert pooled.handle(ObjectSealed(oid(1)), 1.0) == [RecycleObject(oid(1), 1)]
    assert pooled.state_of(oid(1)) is None and pooled.used_bytes == 0
    pooled.handle(ObjectRecycled(1), 1.0)
    assert pooled.pool_files() == [(1, 20, True)]
    notes = [entry.note for entry in pooled.story(oid(1))]
    assert "freed; waiting for the writer's seal" in notes


def test_free_then_abort_deletes_and_a_late_seal_is_ignored(table):
    table.handle(ObjectCreateRequested("a", oid(1), 20, True), 0.0)
    table.handle(ObjectFreed(oid(1)), 0.0)
    assert table.handle(ObjectCreateAborted(oid(1)), 0.0) == [DeleteObject(oid(1))]
    assert table.handle(ObjectSealed(oid(1)), 0.0) == []
    assert table.handle(ObjectCreateAborted(oid(2)), 0.0) == []  # unknown: ignored
    assert table.num_objects == 0 and table.used_bytes == 0


def test_owner_death_frees_every_object_it_owns_in_any_state(table):
    def create(n, size, owner):
        return table.handle(ObjectCreateRequested(f"r{n}", oid(n), size, True, owner=owner), 0.0)

    create(1, 30, "driver:1")
    table.handle(ObjectSealed(oid(1)), 0.0)
    create(2, 30, "worker:2")
    table.handle(ObjectSealed(oid(2)), 0.0)
    create(3, 30, "driver:1")
    table.handle(ObjectSealed(oid(3)), 0.0)
    create(5, 5, "driver:1")  # still being written
    assert create(4, 30, "driver:1") == [SpillObject(oid(1))]  # 1 is spilling, 4 waits
    assert table.objects_of("driver:1") == [oid(1), oid(3), oid(5)]
    effects = table.handle(OwnerDied("driver:1", "owner-died"), 0.0)
    assert effects == [DeleteObject(oid(3), "owner-died"), CreateAllowed("r4")]
    # 1 waits for its spill, 5 for its seal; 4 was admitted after the death (the shell
    # aborts it: its writer is gone)
    assert table.objects_of("driver:1") == [oid(1), oid(5), oid(4)]
    assert table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0) == [DeleteSpillFile("/s/1")]
    assert table.handle(ObjectSealed(oid(5)), 0.0) == [RecycleObject(oid(5), 1)]  # rule 14
    table.handle(ObjectRecycled(1), 0.0)
    assert table.handle(ObjectCreateAborted(oid(4)), 0.0) == [DeleteObject(oid(4))]
    assert table.objects_of("driver:1") == [] and table.objects_of("worker:2") == [oid(2)]
    assert table.used_bytes == 30 and table.num_objects == 1
    assert table.handle(OwnerDied("nobody"), 0.0) == []


def test_out_of_space_abort_lowers_the_capacity_so_later_creates_spill(table):
    put(table, 1, 30)
    table.handle(ObjectCreateRequested("b", oid(2), 40, True), 0.0)
    assert table.handle(ObjectCreateAborted(oid(2), is_out_of_space=True), 0.0) == [
        DeleteObject(oid(2))]
    assert table.capacity_bytes == 30 and table.used_bytes == 30
    assert table.handle(ObjectCreateRequested("c", oid(3), 20, True), 0.0) == [SpillObject(oid(1))]
    assert table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0) == [CreateAllowed("c")]
    assert table.handle(ObjectCreateRequested("d", oid(4), 40, True), 0.0) == [
        CreateRefused.match(req_id="d", reason="too_large", capacity_bytes=30)]


def test_capacity_lowered_by_out_of_space_grows_back_with_measured_room(table):
    put(table, 1, 30)
    table.handle(ObjectCreateRequested("b", oid(2), 40, True), 0.0)
    table.handle(ObjectCreateAborted(oid(2), is_out_of_space=True), 0.0)
    assert table.capacity_bytes == 30 and table.configured_capacity_bytes == 100
    table.handle(ObjectCreateRequested("c", oid(3), 20, True), 0.0)  # spills 1, waits
    assert table.handle(StoreSpaceMeasured(5), 0.0) == []  # 30 + 5 held/free: still waits
    assert table.capacity_bytes == 35
    assert table.handle(StoreSpaceMeasured(500), 0.0) == [CreateAllowed("c")]
    assert table.capacity_bytes == 100  # never above the configured capacity
    table.handle(ObjectSpilled(oid(1), "/s/1"), 0.0)
    assert table.handle(StoreSpaceMeasured(0), 0.0) == [] and table.capacity_bytes == 100


def test_a_promoted_copy_is_a_primary_of_its_owner(table):
    from ember.logic.node.object_table import ObjectPromoted
    put(table, 2, 30, is_primary=False)   # a pulled copy
    put(table, 3, 30, is_primary=False)
    table.handle(ObjectPromoted(oid(2), "driver:1", "promoted"), 0.0)   # its primary's node died
    table.handle(ObjectPromoted(oid(9), "driver:1"), 0.0)               # no copy here: ignored
    assert table.objects_of("driver:1") == [oid(2)]
    effects = table.handle(ObjectCreateRequested("d", oid(4), 80, True), 0.0)
    assert effects == [DeleteObject(oid(3)), SpillObject(oid(2))]   # spilled, not dropped, like a primary
    assert table.state_of(oid(2)) is ObjectState.SPILLING
    table.handle(ObjectSpilled(oid(2), "/s/2"), 0.0)
    assert table.handle(OwnerDied("driver:1"), 0.0) == [DeleteSpillFile("/s/2")]
