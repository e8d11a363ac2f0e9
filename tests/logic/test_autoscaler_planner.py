"""The budget-aware planner: unit cases and hypothesis properties (pure, no processes)."""
from hypothesis import given, settings, strategies as st

from ember.logic.autoscaler.model import Budget, NodeState, NodeType, PlanInput, Prepaid
from ember.logic.autoscaler.planner import plan

SMALL = NodeType("small", {"CPU": 2}, cost_per_hour=1.0, max_workers=10)
BIG = NodeType("big", {"CPU": 8}, cost_per_hour=3.0, max_workers=10)
GPU = NodeType("gpu", {"CPU": 4, "GPU": 1}, cost_per_hour=5.0, max_workers=4)
HEAD = NodeState("head", "small", is_head=True, available={"CPU": 0})


def types_of(p):
    return sorted(ln.node_type for ln in p.launches)


def test_cpu_burst_packs_onto_the_cheapest_set():
    p = plan(PlanInput((SMALL, BIG), nodes=(HEAD,), demands=(({"CPU": 1}, 8),)))
    # 8 CPUs: one big at $3/h beats four small at $4/h
    assert types_of(p) == ["big"] and p.rate_per_hour == 3.0 and not p.waiting


def test_demand_that_fits_existing_nodes_launches_nothing():
    node = NodeState("n1", "big", available={"CPU": 8})
    p = plan(PlanInput((SMALL, BIG), nodes=(HEAD, node), demands=(({"CPU": 1}, 8),)))
    assert p.launches == () and p.terminations == ()


def test_prepaid_capacity_goes_first_at_zero_cost():
    pre = NodeType("reserved", {"CPU": 2}, cost_per_hour=10.0, prepaid=Prepaid(2, until=100.0))
    p = plan(PlanInput((pre, BIG), demands=(({"CPU": 2}, 3),), now=50.0))
    assert [ln.cost_per_hour for ln in p.launches if ln.node_type == "reserved"] == [0.0, 0.0]
    assert types_of(p) == ["big", "reserved", "reserved"]
    expired = plan(PlanInput((pre, BIG), demands=(({"CPU": 2}, 3),), now=150.0))
    assert types_of(expired) == ["big"]


def test_infeasible_shape_launches_nothing_and_says_why():
    p = plan(PlanInput((SMALL, BIG), demands=(({"TPU": 1}, 2), ({"CPU": 64}, 1))))
    assert p.launches == ()
    assert sorted(w.reason for w in p.waiting) == ["infeasible", "infeasible"]
    assert any("TPU" in line for line in p.describe())


def test_budget_cap_stops_launches_with_the_cost():
    p = plan(PlanInput((GPU,), demands=(({"GPU": 1}, 3),), budget=Budget(max_cost_per_hour=10.0)))
    assert types_of(p) == ["gpu", "gpu"]
    (w,) = p.waiting
    assert w.reason == "over budget" and w.count == 1 and w.cost_per_hour == 5.0
    assert "over budget" in p.describe()[0] and "$5.00/h" in p.describe()[0]


def test_total_budget_forecast_blocks_launches():
    b = Budget(total=100.0, period_hours=24)
    p = plan(PlanInput((BIG,), demands=(({"CPU": 8}, 3),), budget=b, spent=40.0, period_hours_left=10.0))
    # 40 + 3*10 = 70 fits; 40 + 6*10 = 100 fits; 40 + 9*10 = 130 does not
    assert types_of(p) == ["big", "big"] and p.waiting[0].reason == "over budget"


def test_idle_nodes_go_after_the_timeout_most_expensive_first_never_below_min():
    small = NodeType("small", {"CPU": 2}, cost_per_hour=1.0, min_workers=1)
    nodes = (NodeState("a", "small", idle_since=0.0), NodeState("b", "small", idle_since=0.0),
             NodeState("c", "big", idle_since=0.0), NodeState("d", "big", idle_since=90.0))
    p = plan(PlanInput((small, BIG), nodes=nodes, idle_timeout_s=60.0, now=100.0))
    assert [t.node_id for t in p.terminations] == ["c", "a"]


def test_a_node_with_the_only_copy_of_objects_stays():
    nodes = (NodeState("a", "big", idle_since=0.0, holds_only_copy=True), NodeState("b", "big", idle_since=0.0))
    p = plan(PlanInput((BIG,), nodes=nodes, idle_timeout_s=60.0, now=100.0))
    assert [t.node_id for t in p.terminations] == ["b"]


def test_shrunk_budget_drains_the_most_expensive_idle_nodes_first():
    nodes = (NodeState("s", "small", idle_since=99.0), NodeState("g", "gpu", idle_since=99.0),
             NodeState("b", "big", idle_since=99.0), NodeState("busy", "gpu"))
    p = plan(PlanInput((SMALL, BIG, GPU), nodes=nodes, budget=Budget(max_cost_per_hour=9.0),
                       idle_timeout_s=600.0, now=100.0))
    assert [(t.node_id, t.reason) for t in p.terminations] == [("g", "budget")]
    assert p.rate_per_hour == 9.0


def test_min_workers_and_max_workers():
    t = NodeType("w", {"CPU": 1}, min_workers=2, max_workers=3, cost_per_hour=1.0)
    p = plan(PlanInput((t,), demands=(({"CPU": 1}, 10),)))
    assert types_of(p) == ["w", "w", "w"] and p.waiting[0].reason == "max_workers"
    assert p.launches[0].serves[0] == "min_workers"


def test_upscaling_speed_limits_pending_launches():
    t = NodeType("w", {"CPU": 1}, cost_per_hour=1.0)
    nodes = tuple(NodeState(f"n{i}", "w", available={}) for i in range(10))
    p = plan(PlanInput((t,), nodes=nodes, demands=(({"CPU": 1}, 100),), upscaling_speed=0.5))
    assert len(p.launches) == 5 and p.waiting[0].reason == "upscaling_speed"


def test_request_resources_scales_to_the_bundles_and_keeps_nodes():
    p = plan(PlanInput((SMALL, BIG), requests=({"CPU": 8},) * 2))
    assert types_of(p) == ["big", "big"]
    nodes = (NodeState("b", "big", idle_since=0.0),)
    kept = plan(PlanInput((BIG,), nodes=nodes, requests=({"CPU": 8},), idle_timeout_s=1.0, now=100.0))
    assert kept.terminations == () and kept.launches == ()


# --- properties -------------------------------------------------------------------------------------------------
names = st.sampled_from(["a", "b", "c", "d"])
node_types = st.lists(st.builds(
    NodeType, names, st.fixed_dictionaries({"CPU": st.integers(1, 16)}, optional={"GPU": st.integers(1, 4)}),
    min_workers=st.integers(0, 2), max_workers=st.integers(2, 8),
    cost_per_hour=st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0]),
    prepaid=st.none() | st.builds(Prepaid, st.integers(0, 2), st.sampled_from([0.0, 1e9]))),
    min_size=1, max_size=4, unique_by=lambda t: t.name)
shapes = st.fixed_dictionaries({"CPU": st.sampled_from([0.5, 1, 2, 4, 8])}, optional={"GPU": st.integers(1, 2)})


@st.composite
def inputs(draw):
    ts = draw(node_types)
    nodes = tuple(NodeState(f"n{i}", draw(st.sampled_from([t.name for t in ts])),
                            idle_since=draw(st.none() | st.sampled_from([0.0, 90.0])),
                            holds_only_copy=draw(st.booleans()), available={"CPU": draw(st.integers(0, 2))})
                  for i in range(draw(st.integers(0, 6))))
    budget = Budget(max_cost_per_hour=draw(st.none() | st.sampled_from([0.0, 3.0, 10.0, 30.0])),
                    total=draw(st.none() | st.sampled_from([10.0, 100.0])), period_hours=24)
    return PlanInput(tuple(ts), nodes=nodes, demands=tuple(draw(st.lists(st.tuples(shapes, st.integers(1, 20)),
                                                                          max_size=6))),
                     requests=tuple(draw(st.lists(shapes, max_size=3))), budget=budget,
                     max_workers=draw(st.integers(0, 20)), upscaling_speed=draw(st.sampled_from([0.5, 1.0, 3.0])),
                     idle_timeout_s=60.0, now=100.0, spent=draw(st.sampled_from([0.0, 5.0])),
                     period_hours_left=draw(st.sampled_from([0.0, 2.0, 10.0])))


def _rate(inp):
    from ember.logic.autoscaler.planner import _Ledger
    return _Ledger(inp, {t.name: t for t in inp.node_types}).rate


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_property_never_over_budget_by_launching(inp):
    p = plan(inp)
    paid = [ln for ln in p.launches if ln.cost_per_hour > 0]
    if paid:
        b = inp.budget
        assert b.max_cost_per_hour is None or p.rate_per_hour <= b.max_cost_per_hour + 1e-9
        assert b.total is None or p.forecast <= b.total + 1e-9
    assert p.rate_per_hour <= _rate(inp) + sum(ln.cost_per_hour for ln in p.launches) + 1e-9


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_property_never_below_min_and_never_the_only_copy(inp):
    p = plan(inp)
    by_id = {n.node_id: n for n in inp.nodes}
    for t in inp.node_types:
        before = sum(1 for n in inp.nodes if n.node_type == t.name)
        gone = sum(1 for x in p.terminations if x.node_type == t.name)
        assert gone == 0 or before - gone >= t.min_workers
    assert all(not by_id[x.node_id].holds_only_copy and not by_id[x.node_id].is_head for x in p.terminations)


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_property_every_launch_serves_demand_that_fits_it(inp):
    p = plan(inp)
    types = {t.name: t for t in inp.node_types}
    for ln in p.launches:
        assert ln.serves
        for shape in ln.serves:
            if shape == "min_workers":
                continue
            res = types[ln.node_type].resources
            assert all(res.get(r, 0) >= v for r, v in shape)


@settings(max_examples=200, deadline=None)
@given(inputs(), st.randoms(use_true_random=False))
def test_property_deterministic_and_order_free(inp, rnd):
    nodes, demands = list(inp.nodes), list(inp.demands)
    rnd.shuffle(nodes)
    rnd.shuffle(demands)
    shuffled = PlanInput(**{**{f: getattr(inp, f) for f in inp.__dataclass_fields__},
                            "nodes": tuple(nodes), "demands": tuple(demands)})
    assert plan(inp) == plan(inp) == plan(shuffled)


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_property_a_shrunk_budget_drains_an_idle_paid_node(inp):
    b = inp.budget
    if b.max_cost_per_hour is None or _rate(inp) <= b.max_cost_per_hour + 1e-9:
        return
    types = {t.name: t for t in inp.node_types}
    count = {t: sum(1 for n in inp.nodes if n.node_type == t) for t in types}
    drainable = [n for n in inp.nodes if n.idle_since is not None and not n.holds_only_copy
                 and types[n.node_type].cost_per_hour > 0 and count[n.node_type] > types[n.node_type].min_workers
                 and count[n.node_type] > types[n.node_type].prepaid_count(inp.now)]
    p = plan(inp)
    if drainable and not inp.demands:   # (an idle node that queued demand fits onto is kept: work is coming)
        assert p.terminations, "over budget with an idle paid node, and nothing drained"
    assert not any(ln.cost_per_hour > 0 for ln in p.launches) or p.rate_per_hour <= b.max_cost_per_hour + 1e-9


# --- pending placement groups as demand ---------------------------------------------------------
def _pg_input(groups, nodes=(), **kw):
    from ember.logic.autoscaler.model import NodeType, PlanInput
    types = (NodeType("head", {"CPU": 1}, max_workers=0), NodeType("cpu4", {"CPU": 4}, max_workers=10,
                                                                   cost_per_hour=1.0))
    return PlanInput(types, nodes=nodes, placement_groups=tuple(groups), now=100.0, **kw)


def test_strict_spread_group_launches_one_node_per_bundle():
    from ember.logic.autoscaler.planner import plan
    p = plan(_pg_input([("STRICT_SPREAD", ({"CPU": 1}, {"CPU": 1}, {"CPU": 1}))]))
    assert [ln.node_type for ln in p.launches] == ["cpu4"] * 3


def test_strict_pack_and_pack_groups_share_nodes():
    from ember.logic.autoscaler.planner import plan
    p = plan(_pg_input([("STRICT_PACK", ({"CPU": 2}, {"CPU": 2})), ("PACK", ({"CPU": 1}, {"CPU": 1}))]))
    assert [ln.node_type for ln in p.launches] == ["cpu4", "cpu4"]
    p = plan(_pg_input([("STRICT_PACK", ({"CPU": 3}, {"CPU": 3}))]))
    assert not p.launches and p.waiting and p.waiting[0].reason == "infeasible"


def test_strict_spread_uses_free_existing_nodes_once_each():
    from ember.logic.autoscaler.model import NodeState
    from ember.logic.autoscaler.planner import plan
    nodes = (NodeState("head", "head", is_head=True, available={"CPU": 1}),
             NodeState("w1", "cpu4", available={"CPU": 4}))
    p = plan(_pg_input([("STRICT_SPREAD", ({"CPU": 1},) * 3)], nodes=nodes))
    # one bundle on the head, one on w1, one on a new node: never two on one node
    assert [ln.node_type for ln in p.launches] == ["cpu4"]


def test_strict_spread_bundles_respect_max_workers():
    from ember.logic.autoscaler.planner import plan
    p = plan(_pg_input([("STRICT_SPREAD", ({"CPU": 1},) * 4)], max_workers=2))
    assert len(p.launches) == 2 and sum(w.count for w in p.waiting) == 2
