"""The placement-group table and the node's bundle table, driven directly: placement by
strategy, the two-phase commit and its rollback, removal, node death, and a property test
that no node is ever over-committed."""
import pytest
from hypothesis import given, settings, strategies as st

from ember.logic.control import placement_groups as P
from ember.logic.control.bundle_placement import place
from ember.logic.node.bundles import BundleTable
from ember.logic.node.leases import LeaseManager
from ember.logic.resources import ResourceSet

A, B, C = b"A" * 16, b"B" * 16, b"C" * 16


def spec(pg, bundles, strategy="PACK", **kw):
    return P.PgSpec(pg, tuple(bundles), strategy, **kw)


@pytest.fixture
def table():
    t = P.PgTable()
    t.handle(P.NodesChanged({A: {"CPU": 4}, B: {"CPU": 4}, C: {"CPU": 2}}))
    yield t
    t.check_invariants()


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def answer_all(t, effects, refuse=()):
    """Play the nodes: answer every prepare (refusing nodes in ``refuse``) and commit."""
    out = []
    queue = list(effects)
    while queue:
        e = queue.pop(0)
        if isinstance(e, P.PrepareBundles):
            more = t.handle(P.BundlesPrepared(e.pg_id, e.attempt, e.node_id, e.node_id not in refuse, "no room"))
        elif isinstance(e, P.CommitBundles):
            more = t.handle(P.BundlesCommitted(e.pg_id, e.attempt, e.node_id))
        else:
            out.append(e)
            continue
        queue += more
    return out


def test_strategies_place_as_ray_does():
    free = {A: ResourceSet({"CPU": 4}), B: ResourceSet({"CPU": 4}), C: ResourceSet({"CPU": 2})}
    two = [ResourceSet({"CPU": 1})] * 2
    assert set(place(two, "STRICT_PACK", free).values()) == {A}
    assert len(set(place(two, "STRICT_SPREAD", free).values())) == 2
    assert len(set(place(two, "SPREAD", free).values())) == 2
    assert set(place(two, "PACK", free).values()) == {A}
    big = [ResourceSet({"CPU": 3})] * 3
    assert place(big, "STRICT_PACK", free) is None
    assert place(big, "STRICT_SPREAD", free) is None  # C has 2 CPUs only
    assert len(set(place([ResourceSet({"CPU": 3})] * 2 + [ResourceSet({"CPU": 2})], "PACK", free).values())) == 3
    assert place([ResourceSet({"CPU": 1})] * 4, "STRICT_SPREAD", free) is None


def test_one_node_group_is_prepared_and_committed_in_one_round(table):
    eff = table.handle(P.PgCreated(spec(b"g1", [{"CPU": 1}, {"CPU": 1}], "STRICT_PACK")))
    [prep] = of(eff, P.PrepareBundles)
    assert prep.commit and prep.node_id == A
    eff = table.handle(P.BundlesPrepared(b"g1", prep.attempt, A, True))
    assert of(eff, P.PgChanged)[0].state is P.PgState.CREATED
    assert table.get(b"g1").state is P.PgState.CREATED
    assert table.bundle_resources_on(A)["CPU_group_" + b"g1".hex()] == 2.0


def test_two_phase_commit_across_nodes(table):
    eff = table.handle(P.PgCreated(spec(b"g2", [{"CPU": 1}] * 3, "STRICT_SPREAD")))
    preps = of(eff, P.PrepareBundles)
    assert len(preps) == 3 and not any(p.commit for p in preps)
    commits = []
    for p in preps:
        commits += of(table.handle(P.BundlesPrepared(b"g2", p.attempt, p.node_id, True)), P.CommitBundles)
    assert table.get(b"g2").state is P.PgState.COMMITTING and len(commits) == 3
    for c in commits[:2]:
        assert table.handle(P.BundlesCommitted(b"g2", c.attempt, c.node_id)) == []
    eff = table.handle(P.BundlesCommitted(b"g2", commits[2].attempt, commits[2].node_id))
    assert of(eff, P.PgChanged) and table.get(b"g2").state is P.PgState.CREATED


def test_a_refusal_rolls_back_every_prepared_bundle(table):
    eff = table.handle(P.PgCreated(spec(b"g3", [{"CPU": 1}] * 3, "STRICT_SPREAD")))
    preps = of(eff, P.PrepareBundles)
    out = []
    for p in preps:
        out += table.handle(P.BundlesPrepared(b"g3", p.attempt, p.node_id, p.node_id != C, "no room"))
    cancels = of(out, P.CancelBundles)
    assert sorted(c.node_id for c in cancels) == [A, B] and not any(c.is_removed for c in cancels)
    assert not of(out, P.CommitBundles)
    rec = table.get(b"g3")
    assert rec.state is P.PgState.PENDING and not rec.nodes
    assert all(r.is_empty() for r in table.reserved.values())
    # The node table moves (C freed something): it is tried again, and succeeds.
    eff = table.handle(P.NodesChanged({A: {"CPU": 4}, B: {"CPU": 4}, C: {"CPU": 2}}))
    answer_all(table, eff)
    assert table.get(b"g3").state is P.PgState.CREATED
    assert "rolled back" in [P.TRANSITIONS.get((e.from_state, e.to_state)) for e in table.story(b"g3")]


def test_a_late_yes_after_the_node_was_declared_dead_is_cancelled(table):
    eff = table.handle(P.PgCreated(spec(b"g4", [{"CPU": 1}] * 2, "STRICT_SPREAD")))
    p1, p2 = of(eff, P.PrepareBundles)
    table.handle(P.BundlesPrepared(b"g4", p1.attempt, p1.node_id, True, indices=(p1.bundles[0][0],)))
    eff = table.handle(P.NodeDied(p2.node_id))   # it said nothing yet: counted as a no
    assert [c.node_id for c in of(eff, P.CancelBundles)] == [p1.node_id]
    late = table.handle(P.BundlesPrepared(b"g4", p2.attempt, p2.node_id, True, indices=(p2.bundles[0][0],)))
    assert [(c.node_id, c.indices) for c in of(late, P.CancelBundles)] == [(p2.node_id, [p2.bundles[0][0]])]


def test_a_group_too_big_for_the_cluster_warns_once_and_waits(table):
    eff = table.handle(P.PgCreated(spec(b"g5", [{"CPU": 8}])))
    [warn] = of(eff, P.WarnInfeasible)
    assert "cannot be placed" in warn.message and table.get(b"g5").state is P.PgState.PENDING
    assert not of(table.handle(P.NodesChanged({A: {"CPU": 4}, B: {"CPU": 4}, C: {"CPU": 2}})), P.WarnInfeasible)
    eff = table.handle(P.NodesChanged({A: {"CPU": 4}, B: {"CPU": 4}, C: {"CPU": 2}, b"D" * 16: {"CPU": 8}}))
    answer_all(table, eff)
    assert table.get(b"g5").state is P.PgState.CREATED


def test_a_pending_group_is_placed_when_another_is_removed(table):
    answer_all(table, table.handle(P.PgCreated(spec(b"big", [{"CPU": 4}, {"CPU": 4}], "STRICT_SPREAD"))))
    eff = table.handle(P.PgCreated(spec(b"next", [{"CPU": 3}])))
    assert not of(eff, P.PrepareBundles) and not of(eff, P.WarnInfeasible)
    eff = table.handle(P.PgRemoveRequested(b"big"))
    assert len([c for c in of(eff, P.CancelBundles) if c.is_removed]) == 2
    assert of(eff, P.PrepareBundles)
    answer_all(table, eff)
    assert table.get(b"next").state is P.PgState.CREATED and table.get(b"big").state is P.PgState.REMOVED


def test_names_job_end_and_detached(table):
    answer_all(table, table.handle(P.PgCreated(spec(b"n1", [{"CPU": 1}], name="x", namespace="ns", job_id=b"j1"))))
    with pytest.raises(ValueError, match="same name"):
        table.handle(P.PgCreated(spec(b"n2", [{"CPU": 1}], name="x", namespace="ns")))
    answer_all(table, table.handle(P.PgCreated(spec(b"d1", [{"CPU": 1}], is_detached=True, job_id=b"j1"))))
    assert table.lookup_named("x", "ns") == b"n1"
    table.handle(P.JobFinished(b"j1"))
    assert table.get(b"n1").state is P.PgState.REMOVED and table.lookup_named("x", "ns") is None
    assert table.get(b"d1").state is P.PgState.CREATED


def test_node_death_re_places_the_lost_bundles(table):
    eff = table.handle(P.PgCreated(spec(b"s1", [{"CPU": 1}] * 2, "STRICT_SPREAD")))
    answer_all(table, eff)
    rec = table.get(b"s1")
    lost_node = rec.nodes[0]
    eff = table.handle(P.NodeDied(lost_node))
    assert rec.state is P.PgState.PREPARING
    [prep] = of(eff, P.PrepareBundles)
    assert prep.node_id not in (lost_node, rec.nodes[1]) and [b[0] for b in prep.bundles] == [0]
    answer_all(table, eff)
    assert rec.state is P.PgState.CREATED and len(set(rec.nodes.values())) == 2


def test_bad_transition_raises():
    t = P.PgTable()
    rec = P.PgRecord(spec(b"z", [{"CPU": 1}]), state=P.PgState.CREATED)
    from ember.logic.fsm import InvalidTransition
    with pytest.raises(InvalidTransition):
        t._move(rec, P.PgState.PENDING, "test")


# --- the node's side -------------------------------------------------------------------------------
def test_node_prepares_all_or_nothing_and_commit_shows_group_resources():
    lm = LeaseManager(A, {"CPU": 2})
    bt = BundleTable()
    reason, change = bt.prepare(b"p", [(0, {"CPU": 1}), (1, {"CPU": 2})], lm.available)
    assert reason and change.is_empty() and not bt.bundles
    reason, change = bt.prepare(b"p", [(0, {"CPU": 1}), (1, {"CPU": 1})], lm.available)
    assert reason is None
    lm.on_bundle_resources(change)
    assert lm.available.get("CPU") == 0 and lm.total.get("CPU") == 2
    lm.on_bundle_resources(bt.commit(b"p", [0, 1]))
    hexid = b"p".hex()
    assert lm.total.get(f"CPU_group_{hexid}") == 2 and lm.available.get(f"CPU_group_1_{hexid}") == 1
    lm.check_invariants()
    lm.on_bundle_resources(bt.cancel(b"p", [0, 1], True))
    assert lm.available.get("CPU") == 2 and not any("_group_" in k for k in lm.total.units)
    assert b"p" in bt.removed
    lm.check_invariants()
    assert bt.prepare(b"p", [(0, {"CPU": 1})], lm.available)[0] == "the placement group was removed"


# --- the property: nothing is ever over-committed ----------------------------------------------------
bundle = st.dictionaries(st.sampled_from(["CPU", "GPU", "x"]), st.integers(1, 3), min_size=1, max_size=2)
D = b"D" * 16

op = st.one_of(
    st.tuples(st.just("create"), st.lists(bundle, min_size=1, max_size=4),
              st.sampled_from(["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"])),
    st.tuples(st.just("remove"), st.integers(0, 20)),
    st.tuples(st.just("answer"), st.booleans()),
    st.tuples(st.just("nodes"), st.booleans()),
    st.tuples(st.just("kill"), st.sampled_from([A, B, C, D])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=40))
def test_no_node_is_ever_over_committed(ops):
    """Real node bundle tables answer the control store's table, in random orders, while nodes
    die; after every step no node reserves more than it has, and at the end a CREATED group
    holds every bundle on live nodes and a PENDING or REMOVED one holds none."""
    caps = {A: {"CPU": 4, "GPU": 2, "x": 3}, B: {"CPU": 3, "x": 2}, C: {"CPU": 2, "GPU": 1}, D: {"CPU": 2, "x": 1}}
    nodes = {n: (LeaseManager(n, c), BundleTable()) for n, c in caps.items()}
    alive = set(caps)
    t = P.PgTable()
    inbox: list = t.handle(P.NodesChanged(caps))
    created = 0
    for o in ops:
        if o[0] == "create":
            inbox += t.handle(P.PgCreated(spec(bytes([created]), o[1], o[2])))
            created += 1
        elif o[0] == "remove" and created:
            inbox += t.handle(P.PgRemoveRequested(bytes([o[1] % created])))
        elif o[0] == "nodes":
            inbox += t.handle(P.NodesChanged({n: caps[n] for n in alive}))
        elif o[0] == "kill" and o[1] in alive and len(alive) > 1:
            alive.discard(o[1])
            del nodes[o[1]]  # its reservations die with it
            inbox += t.handle(P.NodeDied(o[1]))
        elif o[0] == "answer" and inbox:
            e = inbox.pop(0 if o[1] else -1)
            inbox += _deliver(t, nodes, e)
        t.check_invariants()
        for lm, bt in nodes.values():
            lm.check_invariants()
            assert all(v >= 0 for v in lm.available.units.values()), lm.available
    while inbox:
        inbox += _deliver(t, nodes, inbox.pop(0))
    t.check_invariants()
    for pg_id, rec in t.groups.items():
        held = sorted(i for (p, i) in sum((list(bt.bundles) for _, bt in nodes.values()), []) if p == pg_id)
        if rec.state is P.PgState.CREATED:
            assert held == list(range(len(rec.spec.bundles)))
            assert set(rec.nodes.values()) <= alive
        elif rec.state in (P.PgState.REMOVED, P.PgState.PENDING):
            assert held == []


def _deliver(t, nodes, e):
    """Carry one effect to its node, as the shells do (a dead node: a prepare fails, the rest is lost)."""
    if isinstance(e, (P.PrepareBundles, P.CommitBundles, P.CancelBundles)) and e.node_id not in nodes:
        if isinstance(e, P.PrepareBundles):
            return t.handle(P.BundlesPrepared(e.pg_id, e.attempt, e.node_id, False, "node unreachable"))
        return []
    if isinstance(e, P.PrepareBundles):
        lm, bt = nodes[e.node_id]
        reason, change = bt.prepare(e.pg_id, [(i, r) for i, r in e.bundles], lm.available)
        if reason is None:
            if e.commit:
                change.add_total = bt.commit(e.pg_id, [i for i, _ in e.bundles]).add_total
            lm.on_bundle_resources(change)
        return t.handle(P.BundlesPrepared(e.pg_id, e.attempt, e.node_id, reason is None, reason or "",
                                          indices=tuple(i for i, _ in e.bundles)))
    if isinstance(e, P.CommitBundles):
        lm, bt = nodes[e.node_id]
        lm.on_bundle_resources(bt.commit(e.pg_id, e.indices))
        return t.handle(P.BundlesCommitted(e.pg_id, e.attempt, e.node_id))
    if isinstance(e, P.CancelBundles):
        lm, bt = nodes[e.node_id]
        lm.on_bundle_resources(bt.cancel(e.pg_id, e.indices, e.is_removed))
    return []
