"""PullManager and SourceDirectory: events in, effects out (no processes)."""
from __future__ import annotations

import pytest

from ember.logic.node.pull_manager import (BudgetChanged, PullDone, PullFailed, PullManager, PullPriority,
                                           PullRequested, PullState, PullSucceeded, SourceDirectory, StartPull,
                                           least_loaded)

MiB = 1 << 20
A, B = "10.0.0.1:7000", "10.0.0.2:7000"


@pytest.fixture
def pm():
    manager = PullManager(budget_bytes=100 * MiB)
    yield manager
    manager.check_invariants()


def _req(oid: bytes, size: int, priority=PullPriority.GET, sources=(A,)):
    return PullRequested(oid, size, tuple(sources), priority, "c")


def test_a_pull_that_fits_starts_at_once(pm):
    assert pm.handle(_req(b"x", 10 * MiB), 0.0) == [StartPull.match(object_id=b"x", size_bytes=10 * MiB, attempt=1)]
    assert pm.state_of(b"x") is PullState.ACTIVE
    assert pm.handle(PullSucceeded(b"x"), 1.0) == [PullDone(b"x", "", "")]
    assert pm.state_of(b"x") is None


def test_concurrent_requests_of_one_object_share_one_pull(pm):
    assert len(pm.handle(_req(b"x", MiB), 0.0)) == 1
    assert pm.handle(_req(b"x", MiB), 0.0) == []
    assert pm.handle(_req(b"x", MiB, sources=(B,)), 0.0) == []
    assert pm.num_active == 1
    assert "joined" in [e.note for e in pm.story(b"x")]


def test_admission_never_pulls_more_than_fits_and_queues_the_rest(pm):
    assert len(pm.handle(_req(b"a", 60 * MiB), 0.0)) == 1
    assert pm.handle(_req(b"b", 60 * MiB), 0.0) == []       # 120 MiB > 100 MiB: waits
    assert pm.handle(_req(b"c", 10 * MiB), 0.0) == []       # head of line: does not overtake b
    assert pm.num_queued == 2 and pm.active_bytes == 60 * MiB
    out = pm.handle(PullSucceeded(b"a"), 1.0)
    assert out == [PullDone.match(object_id=b"a"), StartPull.match(object_id=b"b"), StartPull.match(object_id=b"c")]
    assert pm.active_bytes == 70 * MiB


def test_task_arguments_go_before_get_prefetches(pm):
    pm.handle(_req(b"big", 90 * MiB), 0.0)
    pm.handle(_req(b"get1", 20 * MiB, PullPriority.GET), 0.0)
    pm.handle(_req(b"arg1", 20 * MiB, PullPriority.TASK_ARG), 0.0)
    out = pm.handle(PullSucceeded(b"big"), 1.0)
    starts = [e.object_id for e in out if isinstance(e, StartPull)]
    assert starts == [b"arg1", b"get1"]


def test_a_later_task_argument_request_raises_a_queued_pulls_priority(pm):
    pm.handle(_req(b"big", 90 * MiB), 0.0)
    pm.handle(_req(b"g", 20 * MiB), 0.0)
    pm.handle(_req(b"h", 20 * MiB), 0.0)
    pm.handle(_req(b"h", 20 * MiB, PullPriority.TASK_ARG), 0.0)
    out = pm.handle(PullSucceeded(b"big"), 1.0)
    assert [e.object_id for e in out if isinstance(e, StartPull)] == [b"h", b"g"]


def test_an_object_larger_than_the_store_fails_at_once_with_the_sizes(pm):
    out = pm.handle(_req(b"huge", 200 * MiB), 0.0)
    assert len(out) == 1 and isinstance(out[0], PullDone)
    assert "larger than this node's object store" in out[0].error and str(200 * MiB) in out[0].error


def test_the_head_starts_alone_when_nothing_is_in_flight():
    pm = PullManager(budget_bytes=100 * MiB)
    pm.handle(BudgetChanged(50 * MiB), 0.0)
    assert pm.handle(_req(b"x", 80 * MiB), 0.0) == [PullDone.match(object_id=b"x")]  # > budget: refused
    pm.handle(BudgetChanged(100 * MiB), 0.0)
    assert pm.handle(_req(b"y", 80 * MiB), 0.0) == [StartPull.match(object_id=b"y")]


def test_a_failed_attempt_retries_then_gives_up(pm):
    pm.handle(_req(b"x", MiB), 0.0)
    out = pm.handle(PullFailed(b"x", (), "holder died"), 1.0)
    assert out == [StartPull.match(object_id=b"x", attempt=2)]
    assert pm.handle(PullFailed(b"x", (), "again"), 2.0) == [StartPull.match(attempt=3)]
    out = pm.handle(PullFailed(b"x", (), "and again"), 3.0)
    assert out == [PullDone(b"x", "and again", "")]


def test_a_dead_directory_with_no_other_source_fails_the_pull(pm):
    pm.handle(_req(b"x", MiB), 0.0)
    assert pm.handle(PullFailed(b"x", (A,), "connection refused"), 1.0) == [PullDone.match(error="connection refused")]


def test_retry_goes_to_sources_not_tried(pm):
    pm.handle(_req(b"x", MiB, sources=(A, B)), 0.0)
    assert pm.handle(PullFailed(b"x", (A,), "gone"), 1.0) == [StartPull.match(sources=(B,), attempt=2)]


def test_a_final_failure_is_not_retried(pm):
    pm.handle(_req(b"x", MiB), 0.0)
    assert pm.handle(PullFailed(b"x", (), "store full", is_final=True), 1.0) == [PullDone.match(error="store full")]


def test_least_loaded_prefers_idle_then_older_holders():
    loads, order = {"a": 2, "b": 0, "c": 0}, {"a": 1, "b": 3, "c": 2}
    assert least_loaded(loads, order, 2) == ["c", "b"]


def test_directory_spreads_a_broadcast_over_new_copies():
    d = SourceDirectory("primary")
    assert d.locate(b"o", "n1", 1) == ["primary"]
    assert d.locate(b"o", "n2", 1) == ["primary"]          # only one holder yet
    d.transfer_done(b"o", "n1", ["primary"], [], True)       # n1 now holds a copy
    assert d.locate(b"o", "n3", 1) == ["n1"]               # n1 idle, primary still serves n2
    assert d.load_of(b"o", "primary") == 1 and d.load_of(b"o", "n1") == 1
    d.transfer_done(b"o", "n2", ["primary"], [], True)
    assert sorted(d.locate(b"o", "n4", 2)) == ["n2", "primary"]
    d.check_invariants()


def test_directory_drops_failed_holders_but_never_the_primary():
    d = SourceDirectory("primary")
    d.locate(b"o", "n1", 1)
    d.transfer_done(b"o", "n1", ["primary"], [], True)
    d.locate(b"o", "n2", 2)
    d.transfer_done(b"o", "n2", ["primary", "n1"], ["n1", "primary"], False)
    assert d.holders(b"o") == ["primary"]
    d.forget(b"o")
    assert d.holders(b"o") == []
    d.check_invariants()


def test_a_failed_pull_says_whether_the_copy_is_lost_or_cannot_fit_here() -> None:
    from ember.logic.node.pull_manager import LOST, STORE_FULL
    pm = PullManager(budget_bytes=100)
    assert pm.handle(PullRequested(b"big", 101, (A,), PullPriority.GET), 0.0) == [PullDone.match(kind=STORE_FULL)]
    pm.handle(PullRequested(b"x", 10, (A,), PullPriority.GET), 0.0)
    assert pm.handle(PullFailed(b"x", (A,), "gone"), 1.0) == [PullDone.match(error="gone", kind=LOST)]
    pm.handle(PullRequested(b"y", 10, (A,), PullPriority.GET), 2.0)
    out = pm.handle(PullFailed(b"y", (), "no room", is_final=True, kind=STORE_FULL), 3.0)
    assert out == [PullDone.match(error="no room", kind=STORE_FULL)]
    pm.check_invariants()
