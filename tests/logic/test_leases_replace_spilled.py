"""A request spilled to a node on a stale view moves on when a fresher view shows a free node
(it used to wait there for ever: a Pool's second actor hung while the other node was idle)."""
from ember.logic.node import leases as L
from ember.logic.resources import ResourceSet

NODE = b"N" * 16
OTHER = b"O" * 16


def test_spilled_request_queued_here_moves_to_a_node_that_became_free():
    lm = L.LeaseManager(NODE, {"CPU": 1})
    for e in lm.on_lease_requested(L.LeaseRequest(1, "c", b"J", ResourceSet({"CPU": 1}), ["DEFAULT"], False)):
        if isinstance(e, L.StartWorker):
            lm.on_worker_registered(e.worker_id, "addr")
    busy = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({}))
    lm.on_cluster_view([busy])
    spilled = L.LeaseRequest(2, "c", b"J", ResourceSet({"CPU": 1}), ["DEFAULT"], True)
    assert lm.on_lease_requested(spilled) == []  # spilled here: must queue here for now
    assert lm.on_cluster_view([busy]) == []     # nowhere better yet
    free = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 1}))
    eff = lm.on_cluster_view([free])
    assert len(eff) == 1 and isinstance(eff[0], L.SpillLease) and eff[0].req_id == 2 and eff[0].node_id == OTHER
    assert lm.queue == []
    lm.check_invariants()


def test_spread_request_queued_on_a_full_node_moves_when_another_is_free():
    """Found by the simulator (`python -m ember.sim --workload actors --nodes 8 --seed 1`): SPREAD
    actor leases queued on nodes full of CPU-holding actors (the view said every node was full)
    waited for ever while restarted nodes sat empty."""
    lm = L.LeaseManager(NODE, {"CPU": 1})
    for e in lm.on_lease_requested(L.LeaseRequest(1, "c", b"J", ResourceSet({"CPU": 1}), ["DEFAULT"], False)):
        if isinstance(e, L.StartWorker):
            lm.on_worker_registered(e.worker_id, "addr")
    busy = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({}))
    lm.on_cluster_view([busy])
    spread = L.LeaseRequest(2, "h", b"J", ResourceSet({}), ["SPREAD"], False, True, placement=ResourceSet({"CPU": 1}))
    assert lm.on_lease_requested(spread) == []   # nowhere fits now: waits here
    assert lm.queue == [spread]
    free = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 1}))
    eff = lm.on_cluster_view([free])
    assert len(eff) == 1 and isinstance(eff[0], L.SpillLease) and eff[0].req_id == 2 and eff[0].node_id == OTHER
    assert lm.queue == []
    lm.check_invariants()


def test_queued_request_moves_even_when_this_node_expects_a_slot_soon():
    """Found by the simulator (actors, 200 nodes, seed 7): a node whose mean slot hold time was
    learnt from one lease given back at once, full of actors that never give theirs back, kept two
    spilled actor leases for ever while most nodes were free."""
    lm = L.LeaseManager(NODE, {"CPU": 1})
    grant = [e for e in lm.on_lease_requested(L.LeaseRequest(1, "c", b"J", ResourceSet({"CPU": 1}), ["DEFAULT"],
                                                              False), now=1.0)]
    for e in grant:
        if isinstance(e, L.StartWorker):
            grant = lm.on_worker_registered(e.worker_id, "addr", now=1.0)
    lease_id = next(e.lease_id for e in grant if isinstance(e, L.GrantLease))
    lm.on_lease_returned(lease_id, False, now=1.0001)        # held 0.1 ms: "slots free up at once"
    for e in lm.on_lease_requested(L.LeaseRequest(2, "h", b"J", ResourceSet({"CPU": 1}), ["DEFAULT"], False,
                                                  True), now=2.0):
        assert isinstance(e, L.GrantLease)                    # an actor takes the CPU for good
    busy = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({}))
    lm.on_cluster_view([busy])
    spilled = L.LeaseRequest(3, "h", b"J", ResourceSet({"CPU": 1}), ["DEFAULT"], True, True, spill_hops=1)
    assert lm.on_lease_requested(spilled, now=3.0) == []
    free = L.NodeView(OTHER, "other:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 1}))
    eff = lm.on_cluster_view([free])
    assert len(eff) == 1 and isinstance(eff[0], L.SpillLease) and eff[0].req_id == 3
    lm.check_invariants()
