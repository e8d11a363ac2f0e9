"""The `wait` policy's shortcut (logic/placement._wait_candidates) picks what a scan of every
node's cost picks: random clusters, shapes, argument bytes and queues (found by the simulator:
the scan was most of a decision's time at thousands of nodes)."""
import random

from ember.logic import placement
from ember.logic.placement import NodeLoad, PlacementParams
from ember.logic.resources import ResourceSet


def _full_scan(local, cands, shape, arg_bytes, task_s, params):
    costs = [placement.cost_s(n, shape, arg_bytes, task_s, params) for n in cands]
    best = min(range(len(cands)), key=lambda i: costs[i])
    if cands[0] is local and costs[0] <= costs[best] + params.keep_margin_s:
        return local
    return cands[best]


def test_shortcut_equals_full_scan():
    rng = random.Random(5)
    params = PlacementParams()
    for case in range(3000):
        n = rng.randint(1, 30)
        nodes = []
        for i in range(n):
            total = rng.choice([2, 4, 8])
            nodes.append(NodeLoad(bytes([i]) + b"node", f"a{i}", ResourceSet({"CPU": total}),
                                  ResourceSet({"CPU": rng.choice([0, 0.5, 1, 2, total])}), True, {},
                                  rng.choice([0, 0, 1, 3]), rng.choice([0.0, 0.05, 0.5])))
        shape = ResourceSet({"CPU": rng.choice([0.5, 1, 2])})
        arg_bytes = {f"a{rng.randrange(n)}": rng.choice([0, 10**6, 10**8]) for _ in range(rng.randint(0, 3))}
        local, others = nodes[0], nodes[1:]
        cands = [local] + sorted(others, key=lambda x: x.node_id)
        cands = [c for c in cands if shape.fits_in(c.total)]
        if not cands:
            continue
        got = placement._by_policy(local, others, cands, shape, arg_bytes, 0.1, params)
        assert got is _full_scan(local, cands, shape, arg_bytes, 0.1, params), case
