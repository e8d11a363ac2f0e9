"""The per-scheduling-key task queue, driven directly."""
import pytest

from ember.logic.owner.key_queue import KeyQueue


@pytest.fixture
def q():
    kq = KeyQueue(depth_max=4, short_task_s=0.005, pending_max=4)
    yield kq
    kq.check_invariants()


def test_tasks_wait_until_a_lease_is_ready(q):
    for t in "abc":
        q.task_added(t)
    assert q.next_pushes() == []
    assert q.lease_requests_wanted() == 3
    q.leases_requested(3)
    assert q.lease_requests_wanted() == 0
    q.lease_request_ended()
    q.lease_ready("L1")
    assert q.next_pushes() == [("L1", "a")]  # depth 1 until tasks are known to be short


def test_short_tasks_are_pipelined(q):
    q.lease_ready("L1")
    for t in range(6):
        q.task_added(t)
    assert q.next_pushes() == [("L1", 0)]
    q.task_answered("L1", 0.0002)
    assert [t for _, t in q.next_pushes()] == [1, 2, 3, 4]


def test_long_tasks_spread_over_leases_not_pipelined(q):
    q.lease_ready("L1")
    q.lease_ready("L2")
    for t in range(4):
        q.task_added(t)
    q.mean_task_s = 1.0
    assert q.next_pushes() == [("L1", 0), ("L2", 1)]
    assert q.lease_requests_wanted() == 2


def test_idle_leases_only_when_nothing_waits(q):
    q.lease_ready("L1")
    q.task_added("a")
    assert q.idle_leases() == []
    q.next_pushes()
    assert q.idle_leases() == []
    q.task_answered("L1", 0.1)
    assert q.idle_leases() == ["L1"]


def test_failed_push_puts_the_task_back_first_and_drops_the_lease(q):
    q.lease_ready("L1")
    q.task_added("a")
    q.task_added("b")
    (lease, task), = q.next_pushes()
    q.push_failed(lease, task)
    assert list(q.queue) == ["a", "b"] and q.in_flight == {}


def test_retry_goes_to_the_front_and_cancel_removes(q):
    q.task_added("a")
    q.task_added("b", front=True)
    assert list(q.queue) == ["b", "a"]
    assert q.task_removed("a") and not q.task_removed("zzz")


def test_lease_request_bookkeeping_is_checked():
    q = KeyQueue(depth_max=4, short_task_s=0.005, pending_max=4)
    with pytest.raises(AssertionError):
        q.lease_request_ended()
