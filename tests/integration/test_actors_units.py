"""The pure pieces actors rely on, driven directly (no processes): the executor's
per-caller call order, and actor leases in the node's LeaseManager (placement shape
for the fit check, running shape held, actor workers outliving their job)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.logic.node import leases as L
from ember.logic.resources import ResourceSet
from ember.shells.worker.actor_executor import CallOrder

pytestmark = pytest.mark.timeout(60)


# --- CallOrder ------------------------------------------------------------------------------
def test_calls_are_released_in_sequence_order():
    order = CallOrder()
    assert order.arrived("a", 1, 0, "a1") == []
    assert order.arrived("a", 2, 0, "a2") == []
    assert order.arrived("b", 0, 0, "b0") == ["b0"]  # callers are independent
    assert order.arrived("a", 0, 0, "a0") == ["a0", "a1", "a2"]
    order.check_invariants()


def test_a_fresh_incarnation_starts_at_the_callers_lowest_pending_call():
    order = CallOrder()
    assert order.arrived("a", 58, 57, "x58") == []
    assert order.arrived("a", 57, 57, "x57") == ["x57", "x58"]
    order.check_invariants()


def test_min_seq_skips_an_abandoned_gap_and_drops_what_waited_below_it():
    order = CallOrder()
    assert order.arrived("a", 0, 0, "x0") == ["x0"]
    assert order.arrived("a", 2, 1, "x2") == []  # 1 is in flight somewhere
    assert order.arrived("a", 4, 4, "x4") == ["x4"]  # caller gave up on 1..3
    assert order.dropped == 1
    order.check_invariants()


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(30))))
def test_any_arrival_order_runs_each_call_once_in_order(arrivals):
    order = CallOrder()
    ran = []
    for seq in arrivals:
        ran += order.arrived("caller", seq, 0, seq)
        order.check_invariants()
    assert ran == list(range(30))


# --- leases for actors --------------------------------------------------------------------------
def _manager(cpus=2.0):
    return L.LeaseManager(b"N" * 16, {"CPU": cpus})


def _grant_one(mgr, req):
    effects = mgr.on_lease_requested(req)
    for eff in list(effects):
        if isinstance(eff, L.StartWorker):
            effects += mgr.on_worker_registered(eff.worker_id, f"w-{eff.worker_id.hex()}")
    grants = [e for e in effects if isinstance(e, L.GrantLease)]
    return grants, effects


def _actor_request(req_id, job=b"J1", placement=None, held=None):
    placement = ResourceSet({"CPU": 1.0}) if placement is None else placement
    return L.LeaseRequest(req_id, "gcs", job, held if held is not None else ResourceSet(), ["DEFAULT"],
                          for_actor=True, description="Actor", placement=placement)


def test_default_actor_needs_a_cpu_to_place_but_holds_none():
    mgr = _manager(cpus=1.0)
    for i in range(5):  # more actors than CPUs
        grants, _ = _grant_one(mgr, _actor_request(i))
        assert len(grants) == 1 and grants[0].resources == {}
        mgr.check_invariants()
    assert mgr.available == ResourceSet({"CPU": 1.0})


def test_actor_waits_while_no_cpu_is_free_to_place_it():
    mgr = _manager(cpus=1.0)
    task = L.LeaseRequest("task", "driver", b"J1", ResourceSet({"CPU": 1.0}), ["DEFAULT"])
    grants, _ = _grant_one(mgr, task)
    assert len(grants) == 1
    grants, _ = _grant_one(mgr, _actor_request("actor"))
    assert grants == [] and len(mgr.queue) == 1
    assert mgr.pending_demands() == [[{"CPU": 1.0}, 1]]
    effects = mgr.on_lease_returned(next(iter(mgr.leases)), False)
    assert [e.req_id for e in effects if isinstance(e, L.GrantLease)] == ["actor"]
    mgr.check_invariants()


def test_actor_with_explicit_resources_holds_them():
    mgr = _manager(cpus=2.0)
    shape = ResourceSet({"CPU": 1.0})
    grants, _ = _grant_one(mgr, _actor_request("a", placement=shape, held=shape))
    assert grants[0].resources == {"CPU": 1.0}
    assert mgr.available == ResourceSet({"CPU": 1.0})
    mgr.check_invariants()


def test_job_end_leaves_actor_workers_to_the_control_store():
    mgr = _manager(cpus=2.0)
    grants, _ = _grant_one(mgr, _actor_request("actor"))
    task = L.LeaseRequest("task", "driver", b"J1", ResourceSet({"CPU": 1.0}), ["DEFAULT"])
    task_grants, _ = _grant_one(mgr, task)
    killed = [e.worker_id for e in mgr.on_job_finished(b"J1") if isinstance(e, L.KillWorker)]
    assert task_grants[0].worker_id in killed
    assert grants[0].worker_id not in killed
    assert grants[0].worker_id in mgr.workers
    mgr.check_invariants()
    effects = mgr.on_lease_returned(grants[0].lease_id, True)  # the control store kills it later
    assert [e.worker_id for e in effects if isinstance(e, L.KillWorker)] == [grants[0].worker_id]
    mgr.check_invariants()
