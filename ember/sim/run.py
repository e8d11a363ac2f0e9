"""One simulated run: build the cluster, schedule the workload and the faults, run, report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ember.sim import faults as F
from ember.sim.checkers import Checker
from ember.sim.cluster import Cluster, SimConfig
from ember.sim.network import NetParams
from ember.sim.owner import SimOwner
from ember.sim.world import InvariantBroken, World
from ember.sim import workloads as W

WORKLOADS = ("tasks", "actors", "pgs", "autoscaler")


@dataclass
class RunSpec:
    workload: str = "tasks"
    nodes: int = 50
    seed: int = 1
    size: int = 0                 # tasks / actors / groups (0: the workload's default for --nodes)
    fault_rate: float = 0.2       # faults per simulated second
    loss: float = 1e-5
    faults: Optional[list] = None  # an explicit plan (a repro); None: drawn from the seed
    until_s: float = 3600.0
    max_events: int = 200_000_000
    cpus: int = 8
    drivers: int = 0


@dataclass
class RunResult:
    spec: RunSpec
    ok: bool
    error: str
    makespan_s: float
    events: int
    delay_p50: float
    delay_p99: float
    head_msgs: dict
    head_bytes: dict
    figures: dict
    trace: list
    faults: list
    extra: dict = field(default_factory=dict)


def default_size(workload: str, nodes: int) -> int:
    return {"tasks": 200 * nodes, "actors": 10 * nodes, "pgs": max(20, nodes // 2), "autoscaler": 40 * nodes}[workload]


def build(spec: RunSpec) -> tuple[World, Cluster, Any, list]:
    if spec.workload not in WORKLOADS:
        raise ValueError(f"unknown workload {spec.workload!r}; known: {WORKLOADS}")
    world = World(spec.seed)
    cfg = SimConfig(nodes=spec.nodes, cpus=spec.cpus, net=NetParams(loss=spec.loss))
    c = Cluster(world, cfg)
    c.start_head()
    size = spec.size or default_size(spec.workload, spec.nodes)
    first = 2 if spec.workload == "autoscaler" else spec.nodes
    for i in range(first):
        c.add_node(i)
    drivers = spec.drivers or max(1, min(16, spec.nodes // 300 + 1))
    drivers = min(drivers, first)
    for j in range(drivers):  # driver j runs on node j, which the fault plan never crashes
        c.protected.add(j)
        c.owners.append(SimOwner(c, j, c.nodes[j]))
        c.net.add(c.owners[-1].name, c.owners[-1], f"m{j}")
    if spec.workload == "tasks":
        wl: Any = W.TasksWorkload(c, size)
    elif spec.workload == "actors":
        wl = W.ActorsWorkload(c, size)
    elif spec.workload == "pgs":
        wl = W.PgsWorkload(c, size)
    else:
        wl = W.AutoscalerWorkload(c, size, max_nodes=spec.nodes)
    c.workload = wl
    horizon = {"tasks": 30.0, "actors": 25.0, "pgs": 30.0, "autoscaler": 60.0}[spec.workload]
    plan = spec.faults if spec.faults is not None else F.draw(spec.seed, spec.nodes if spec.workload != "autoscaler"
                                                              else 2, horizon, spec.fault_rate)
    F.schedule(c, plan)
    world.after(0.5, wl.start)   # the nodes have registered
    return world, c, wl, plan


def run(spec: RunSpec) -> RunResult:
    world, c, wl, plan = build(spec)
    checker = Checker(c)
    world.after_event = checker
    error = ""
    try:
        world.run(spec.until_s, spec.max_events, wl.done)
        if not wl.done():
            error = f"liveness: not finished by {world.now:.1f} s simulated: {wl.liveness()}"
        else:
            checker.final()
            wl.final_checks()
    except InvariantBroken as e:
        error = f"invariant: {e}"
    except AssertionError as e:  # a logic class's own check_invariants
        error = f"invariant: {type(e).__name__}: {e}"
    makespan = world.now
    return RunResult(spec, not error, error, makespan, world.events_run, c.percentile(0.5), c.percentile(0.99),
                     dict(c.net.head_msgs), dict(c.net.head_bytes), wl.figures(), list(world.trace), plan,
                     {"view entries sent": c.view_entries_sent, "view snapshots built": c.view_builds,
                      "network messages": c.net.msgs, "connection resets": c.net.resets,
                      "storage writes": c.storage.writes, "fenced writes refused": c.storage.refused,
                      "heads": len(c.heads), "rebuilt though an unreported copy lived": c.rebuilt_with_copy})


def shrink(spec: RunSpec, result: RunResult, budget: int = 40) -> tuple[RunSpec, RunResult]:
    """The smallest fault plan (and no message loss, if it still fails without) that fails the same way."""
    kind = result.error.split(":")[0]

    def fails(candidate: RunSpec) -> Optional[RunResult]:
        r = run(candidate)
        return r if not r.ok and r.error.split(":")[0] == kind else None

    best, best_result = spec, result
    tries = 0
    if spec.loss:
        cand = RunSpec(**{**spec.__dict__, "loss": 0.0, "faults": list(result.faults)})
        r = fails(cand)
        tries += 1
        if r is not None:
            best, best_result = cand, r
    faults = list(best_result.faults)
    chunk = max(1, len(faults) // 2)
    while chunk >= 1 and tries < budget:
        i, changed = 0, False
        while i < len(faults) and tries < budget:
            cand_faults = faults[:i] + faults[i + chunk:]
            cand = RunSpec(**{**best.__dict__, "faults": cand_faults})
            r = fails(cand)
            tries += 1
            if r is not None:
                faults, best, best_result, changed = cand_faults, cand, r, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return best, best_result


def repro_line(spec: RunSpec, faults: list) -> str:
    plan = ",".join(f.encode() for f in faults)
    size = f" --size {spec.size}" if spec.size else ""
    return (f"python -m ember.sim --workload {spec.workload} --nodes {spec.nodes} --seed {spec.seed}{size} "
            f"--loss {spec.loss:g} --faults '{plan}'")
