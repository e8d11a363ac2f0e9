"""Time the autoscaler planner on 1,000 pending shapes over 20 node types: python -m ember.benchmarks.autoscaler_planner"""
from __future__ import annotations

import random
import statistics
import time

from ember.logic.autoscaler.model import Budget, NodeState, NodeType, PlanInput, Prepaid
from ember.logic.autoscaler.planner import plan


def make_input(seed: int = 0, shapes: int = 1000, types: int = 20) -> PlanInput:
    rnd = random.Random(seed)
    ts = []
    for i in range(types):
        res = {"CPU": rnd.choice([2, 4, 8, 16, 32, 64]), "memory": rnd.choice([8, 16, 64, 256]) * 2**30}
        if i % 4 == 0:
            res["GPU"] = rnd.choice([1, 2, 4, 8])
        ts.append(NodeType(f"type{i:02d}", res, max_workers=rnd.randint(5, 50),
                           cost_per_hour=round(rnd.uniform(0.1, 30), 2),
                           prepaid=Prepaid(2, 1e12) if i % 7 == 0 else None))
    demands = []
    for _ in range(shapes):
        shape = {"CPU": rnd.choice([0.5, 1, 2, 4, 8]), "memory": rnd.choice([1, 2, 4]) * 2**30}
        if rnd.random() < 0.2:
            shape["GPU"] = rnd.choice([1, 2])
        if rnd.random() < 0.01:
            shape["TPU"] = 1
        demands.append((shape, rnd.randint(1, 4)))
    nodes = tuple(NodeState(f"n{i:03d}", ts[i % types].name, idle_since=rnd.choice([None, 0.0]),
                            available={"CPU": 1}) for i in range(50))
    return PlanInput(tuple(ts), nodes=nodes, demands=tuple(demands), max_workers=400, upscaling_speed=10.0,
                     budget=Budget(max_cost_per_hour=2000.0, total=1e6, period_hours=720),
                     idle_timeout_s=60.0, now=100.0, period_hours_left=300.0)


def main() -> None:
    inp = make_input()
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        p = plan(inp)
        times.append(time.perf_counter() - t0)
    print(f"planner: 1000 shapes x 20 node types: median {statistics.median(times) * 1e3:.1f} ms, "
          f"min {min(times) * 1e3:.1f} ms; {len(p.launches)} launches, {len(p.terminations)} terminations, "
          f"{len(p.waiting)} waiting")


if __name__ == "__main__":
    main()
