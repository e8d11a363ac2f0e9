"""The node daemon's scheduler, driven directly: grants, queues, spillback, infeasible."""
import pytest

from ember.logic.node import leases as L
from ember.logic.resources import ResourceSet

NODE = b"N" * 16
OTHER = b"O" * 16
JOB = b"J1"


def req(rid, client="c", res=None, strategy=None, spill=False):
    return L.LeaseRequest(rid, client, JOB, ResourceSet(res or {"CPU": 1}), strategy or ["DEFAULT"], spill)


def started(effects):
    return [e for e in effects if isinstance(e, L.StartWorker)]


def register_all(lm, effects):
    out = []
    for e in started(effects):
        out += lm.on_worker_registered(e.worker_id, "addr-" + e.worker_id.hex()[-4:])
    return out


@pytest.fixture
def lm():
    m = L.LeaseManager(NODE, {"CPU": 2, "GPU": 2})
    yield m
    m.check_invariants()


def test_grant_starts_a_worker_then_grants(lm):
    eff = lm.on_lease_requested(req(1))
    assert len(started(eff)) == 1
    grants = register_all(lm, eff)
    assert [type(g) for g in grants] == [L.GrantLease]
    assert lm.available.get("CPU") == 1


def test_idle_worker_is_reused(lm):
    g = register_all(lm, lm.on_lease_requested(req(1)))[0]
    lm.on_lease_returned(g.lease_id, False)
    eff = lm.on_lease_requested(req(2))
    assert [type(e) for e in eff] == [L.GrantLease] and eff[0].worker_id == g.worker_id


def test_queue_when_full_and_grant_on_return(lm):
    g1 = register_all(lm, lm.on_lease_requested(req(1)))[0]
    g2 = register_all(lm, lm.on_lease_requested(req(2)))[0]
    assert lm.on_lease_requested(req(3)) == []
    eff = lm.on_lease_returned(g1.lease_id, False)
    assert [type(e) for e in eff] == [L.GrantLease] and eff[0].req_id == 3
    assert g2


def test_infeasible_everywhere(lm):
    eff = lm.on_lease_requested(req(1, res={"CPU": 8}))
    assert isinstance(eff[0], L.RejectInfeasible) and "CPU" in eff[0].message


def test_spill_to_node_that_fits_custom_resource(lm):
    lm.on_cluster_view([L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1, "special": 1}),
                                   ResourceSet({"CPU": 1, "special": 1}))])
    eff = lm.on_lease_requested(req(1, res={"CPU": 1, "special": 1}))
    assert isinstance(eff[0], L.SpillLease) and eff[0].node_id == OTHER


def test_spill_when_busy_and_other_node_free(lm):
    lm.on_cluster_view([L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 2}), ResourceSet({"CPU": 2}))])
    register_all(lm, lm.on_lease_requested(req(1, res={"CPU": 2})))
    eff = lm.on_lease_requested(req(2, res={"CPU": 1}))
    assert isinstance(eff[0], L.SpillLease)


def test_spilled_request_is_never_spilled_again(lm):
    lm.on_cluster_view([L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 2}), ResourceSet({"CPU": 2}))])
    register_all(lm, lm.on_lease_requested(req(1, res={"CPU": 2})))
    assert lm.on_lease_requested(req(2, spill=True)) == []  # queued here


def test_gpu_ids_whole_and_fractional(lm):
    g = register_all(lm, lm.on_lease_requested(req(1, res={"CPU": 0.5, "GPU": 1})))[0]
    assert len(g.gpu_ids) == 1
    h = register_all(lm, lm.on_lease_requested(req(2, res={"CPU": 0.5, "GPU": 0.5})))[0]
    i = register_all(lm, lm.on_lease_requested(req(3, res={"CPU": 0.5, "GPU": 0.5})))[0]
    assert h.gpu_ids == i.gpu_ids and h.gpu_ids != g.gpu_ids


def test_blocked_worker_lends_its_cpu(lm):
    g1 = register_all(lm, lm.on_lease_requested(req(1)))[0]
    register_all(lm, lm.on_lease_requested(req(2)))
    assert lm.on_lease_requested(req(3)) == []
    eff = lm.on_worker_blocked(g1.lease_id)
    eff += register_all(lm, eff)
    assert any(isinstance(e, L.GrantLease) and e.req_id == 3 for e in eff)
    lm.on_worker_unblocked(g1.lease_id)
    assert lm.available.get("CPU") == -1  # oversubscribed until someone returns


def test_client_disconnect_kills_its_workers_and_drops_requests(lm):
    g = register_all(lm, lm.on_lease_requested(req(1, client="driver")))[0]
    register_all(lm, lm.on_lease_requested(req(2, client="driver")))
    lm.on_lease_requested(req(3, client="driver"))
    eff = lm.on_client_disconnected("driver")
    assert {e.worker_id for e in eff if isinstance(e, L.KillWorker)} >= {g.worker_id}
    assert lm.queue == [] and lm.available.get("CPU") == 2


def test_control_store_disconnect_keeps_its_actor_workers(lm):
    """The control store holds actor leases; losing it (head killed) must not kill actors."""
    actor = L.LeaseRequest(1, "gcs", JOB, ResourceSet({"CPU": 1}), ["DEFAULT"], False, for_actor=True)
    g = register_all(lm, lm.on_lease_requested(actor))[0]
    eff = lm.on_client_disconnected("gcs")
    assert not [e for e in eff if isinstance(e, L.KillWorker)]
    assert g.lease_id in lm.leases and lm.available.get("CPU") == 1
    assert lm.on_worker_died(g.worker_id) is not None and lm.available.get("CPU") == 2


def test_worker_death_frees_its_lease(lm):
    g = register_all(lm, lm.on_lease_requested(req(1)))[0]
    lm.on_worker_died(g.worker_id)
    assert lm.available.get("CPU") == 2 and not lm.leases


def test_node_affinity_hard_to_unknown_node_is_unschedulable(lm):
    lm.on_lease_requested(req(1, strategy=["NODE_AFFINITY", OTHER, False]))
    eff = lm.on_cluster_view([])  # the fresh view does not know it either
    assert isinstance(eff[0], L.RejectUnschedulable) and "not a node of this cluster" in eff[0].message


def test_node_affinity_soft_falls_back_here(lm):
    eff = lm.on_lease_requested(req(1, strategy=["NODE_AFFINITY", OTHER, True]))
    assert started(eff)


def test_spread_alternates_between_nodes(lm):
    lm.on_cluster_view([L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 2}), ResourceSet({"CPU": 2}))])
    kinds = []
    for i in range(4):
        eff = lm.on_lease_requested(req(i, strategy=["SPREAD"]))
        kinds.append("spill" if any(isinstance(e, L.SpillLease) for e in eff) else "here")
        register_all(lm, eff)
    assert kinds.count("spill") >= 1 and kinds.count("here") >= 1


def test_prestart_and_job_finish(lm):
    eff = lm.on_job_started(JOB, 2)
    assert len(started(eff)) == 2
    register_all(lm, eff)
    kills = lm.on_job_finished(JOB)
    assert len([k for k in kills if isinstance(k, L.KillWorker)]) == 2


def test_requests_queued_for_starting_workers_count_as_taken():
    lm = L.LeaseManager(NODE, {"CPU": 1})
    lm.on_cluster_view([L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 1}))])
    first = lm.on_lease_requested(req(1))
    assert started(first)  # queued here while its worker starts
    second = lm.on_lease_requested(req(2))
    assert isinstance(second[0], L.SpillLease) and second[0].node_id == OTHER
    lm.check_invariants()


def test_queued_request_spills_when_the_view_shows_a_free_node():
    lm = L.LeaseManager(NODE, {"CPU": 1})
    register_all(lm, lm.on_lease_requested(req(1)))
    busy = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({}))
    lm.on_cluster_view([busy])
    assert lm.on_lease_requested(req(2)) == []  # everyone busy: wait here
    free = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 1}))
    eff = lm.on_cluster_view([free])
    assert isinstance(eff[0], L.SpillLease) and eff[0].req_id == 2 and lm.queue == []
    lm.check_invariants()


def test_node_affinity_to_a_node_not_in_the_view_yet_waits_for_a_fresh_view(lm):
    eff = lm.on_lease_requested(req(1, strategy=["NODE_AFFINITY", OTHER, False]))
    assert [type(e) for e in eff] == [L.RefreshView]
    assert lm.on_lease_requested(req(2, strategy=["NODE_AFFINITY", OTHER, False])) == []  # one refresh at a time
    view = [L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 4}), ResourceSet({"CPU": 4}))]
    eff = lm.on_cluster_view(view)
    assert [(type(e), e.req_id) for e in eff] == [(L.SpillLease, 1), (L.SpillLease, 2)]


def test_node_affinity_to_a_node_unknown_after_a_fresh_view_is_unschedulable(lm):
    assert [type(e) for e in lm.on_lease_requested(req(1, strategy=["NODE_AFFINITY", OTHER, False]))] == [L.RefreshView]
    eff = lm.on_cluster_view([])
    assert [type(e) for e in eff] == [L.RejectUnschedulable] and "not a node of this cluster" in eff[0].message


def test_node_affinity_to_a_dead_node_is_unschedulable_at_once(lm):
    lm.on_cluster_view([L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 4}), ResourceSet(), False)])
    eff = lm.on_lease_requested(req(1, strategy=["NODE_AFFINITY", OTHER, False]))
    assert [type(e) for e in eff] == [L.RejectUnschedulable] and "is dead" in eff[0].message


def test_a_busy_spillback_target_passes_the_request_on_once():
    lm = L.LeaseManager(NODE, {"CPU": 1})
    register_all(lm, lm.on_lease_requested(req(1)))  # the only CPU is taken
    free = b"F" * 16
    lm.on_cluster_view([L.NodeView(free, "free:1", ResourceSet({"CPU": 2}), ResourceSet({"CPU": 2}))])
    first = L.LeaseRequest(2, "c", JOB, ResourceSet({"CPU": 1}), ["DEFAULT"], True, spill_hops=1)
    eff = lm.on_lease_requested(first)
    assert [(type(e), getattr(e, "node_id", None)) for e in eff] == [(L.SpillLease, free)]
    again = L.LeaseRequest(3, "c", JOB, ResourceSet({"CPU": 1}), ["DEFAULT"], True, spill_hops=2)
    assert lm.on_lease_requested(again) == []  # second hop: it waits here
    legacy = L.LeaseRequest(4, "c", JOB, ResourceSet({"CPU": 1}), ["DEFAULT"], True)  # hops not counted
    assert lm.on_lease_requested(legacy) == []


def test_blocked_workers_warn_at_the_threshold_then_at_each_doubling():
    lm = L.LeaseManager(NODE, {"CPU": 1}, max_starting=100, warn_workers_at=2)
    warned = []
    for rid in range(1, 10):        # nested blocking tasks: each level blocks, lends its CPU, needs a new worker
        for e in lm.on_lease_requested(req(rid)):
            if isinstance(e, L.StartWorker) and e.warn_count:
                warned.append(e.warn_count)
        grants = [g for w in list(lm.workers) if lm.workers[w].state is L.WorkerState.STARTING
                  for g in lm.on_worker_registered(w, "a-" + w.hex())]
        for g in grants:
            lm.on_worker_blocked(g.lease_id)
    assert warned == [2, 4, 8]
    lm.check_invariants()


def test_default_warning_threshold_scales_with_cpus():
    assert L.LeaseManager(NODE, {"CPU": 2}).warn_workers_at == 32
    assert L.LeaseManager(NODE, {"CPU": 64}).warn_workers_at == 256
