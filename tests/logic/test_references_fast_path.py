"""ReferenceTable fast paths (add_ref / drop_local): the same decisions as RefAdded /
RefDropped through handle(), checked case by case and against random histories."""
from __future__ import annotations

from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.logic.owner.references import (
    DROP_HELD, DROP_RELEASED, DROP_SLOW, DROP_UNTRACKED, BorrowedRefReceived, BorrowerAdded,
    FreeObject, LineageRecorded, NotifyOwnerReleased, ObjectContainsRefs, RefAdded, RefDropped,
    ReferenceCountingError, ReferenceTable, TaskArgsReleased, TaskSubmittedWithArgs)

ME = "10.0.0.1:7000"
OTHER = "10.0.0.2:7000"
A, B = b"A" * 4, b"B" * 4


@pytest.fixture
def table() -> Iterator[ReferenceTable]:
    t = ReferenceTable()
    yield t
    t.check_invariants()


def test_add_ref_creates_then_counts(table: ReferenceTable) -> None:
    table.add_ref(A, ME, True)
    table.add_ref(A, ME, True)
    summary = table.summary(A)
    assert summary is not None and summary.local_count == 2 and summary.is_owned
    assert table.drop_local(A) == DROP_HELD
    assert table.drop_local(A) == DROP_RELEASED
    assert A not in table


def test_add_ref_refuses_a_different_ownership(table: ReferenceTable) -> None:
    table.add_ref(A, ME, True)
    with pytest.raises(ReferenceCountingError):
        table.add_ref(A, ME, False)
    table.drop_local(A)


def test_drop_of_an_untracked_ref_changes_nothing(table: ReferenceTable) -> None:
    assert table.drop_local(A) == DROP_UNTRACKED
    assert len(table) == 0


def test_unannounced_borrow_is_released_on_the_fast_path(table: ReferenceTable) -> None:
    table.add_ref(A, OTHER, False)
    assert table.drop_local(A) == DROP_RELEASED
    assert A not in table


def test_announced_borrow_takes_the_slow_path(table: ReferenceTable) -> None:
    table.add_ref(A, OTHER, False)
    table.handle(BorrowedRefReceived(A, OTHER), 0.0)
    assert table.drop_local(A) == DROP_SLOW
    assert A in table  # unchanged
    assert table.handle(RefDropped(A), 1.0) == [NotifyOwnerReleased(OTHER, A)]


def test_object_containing_refs_takes_the_slow_path(table: ReferenceTable) -> None:
    table.add_ref(A, ME, True)
    table.add_ref(B, ME, True)
    table.handle(ObjectContainsRefs(A, (B,)), 0.0)
    assert table.drop_local(B) == DROP_HELD  # still inside A
    assert table.drop_local(A) == DROP_SLOW
    assert table.handle(RefDropped(A), 1.0) == [FreeObject(A, frozenset()), FreeObject(B, frozenset())]


def test_lineage_pin_takes_the_slow_path(table: ReferenceTable) -> None:
    table.add_ref(A, ME, True)
    table.handle(LineageRecorded(A, b"t1"), 0.0)
    assert table.drop_local(A) == DROP_SLOW
    effects = table.handle(RefDropped(A), 1.0)
    assert FreeObject.match(object_id=A) in effects and len(effects) == 2


def test_other_holds_keep_the_object(table: ReferenceTable) -> None:
    table.add_ref(A, ME, True)
    table.handle(TaskSubmittedWithArgs(b"t1", (A,)), 0.0)
    table.handle(BorrowerAdded(A, OTHER), 0.0)
    assert table.drop_local(A) == DROP_HELD
    assert table.handle(TaskArgsReleased(b"t1"), 1.0) == []
    assert A in table


_OPS = st.lists(st.tuples(st.sampled_from(["add", "drop", "borrow", "contain"]),
                          st.integers(0, 3), st.integers(0, 3)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_fast_paths_decide_like_handle(ops: list[tuple[str, int, int]]) -> None:
    """Two tables fed the same history, one through the fast paths where they apply,
    release the same objects and keep the same records."""
    fast, slow = ReferenceTable(), ReferenceTable()
    ids = [bytes([65 + i]) * 4 for i in range(4)]
    live: dict[bytes, int] = {}
    for op, i, j in ops:
        oid, owner = ids[i], (ME if i < 2 else OTHER)
        if op == "add":
            fast.add_ref(oid, owner, owner == ME)
            slow.handle(RefAdded(oid, owner, owner == ME), 0.0)
            live[oid] = live.get(oid, 0) + 1
        elif op == "drop" and live.get(oid):
            live[oid] -= 1
            done = fast.drop_local(oid)
            expected = slow.handle(RefDropped(oid), 0.0)
            if done == DROP_SLOW:
                assert fast.handle(RefDropped(oid), 0.0) == expected
            elif done == DROP_RELEASED:
                assert expected in ([FreeObject(oid, frozenset())], [])
                assert (expected == []) == (owner != ME)
            else:
                assert done == DROP_HELD and expected == []
        elif op == "borrow" and live.get(oid) and owner != ME:
            assert (fast.handle(BorrowedRefReceived(oid, owner), 0.0)
                    == slow.handle(BorrowedRefReceived(oid, owner), 0.0))
        elif op == "contain" and i != j and live.get(ids[i]) and ids[j] in slow:
            fast.handle(ObjectContainsRefs(ids[i], (ids[j],)), 0.0)
            slow.handle(ObjectContainsRefs(ids[i], (ids[j],)), 0.0)
        assert sorted(fast.object_ids()) == sorted(slow.object_ids())
        fast.check_invariants()
        slow.check_invariants()
