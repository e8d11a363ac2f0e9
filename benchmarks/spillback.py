"""Makespan of the DEFAULT placement policies on the multi-host bed (4 hosts, mixed tasks).

    sudo .venv/bin/python benchmarks/spillback.py [--repeats 3] [--json out.json]

For each policy (``EMBER_SCHEDULING_POLICY``: ``wait`` = the seed's lowest-estimated-wait spillback,
``hybrid`` = Ray's pack-then-spread, ``least_loaded`` = most free CPUs) a fresh 4-host bed
(tests/bed/netbed.py, 2 CPUs per host) runs the same seeded workload from a driver in the root
namespace, attached to the head. Every host's link is shaped to 1 Gbit/s each way (tc tbf), as
between real machines (the placement policy assumes 125 MB/s, ``EMBER_SCHEDULER_BANDWIDTH_BYTES_PER_S``):

1. eight argument blobs (8-32 MiB) are made on hosts 1-3 (hard node affinity), as a job's data
   would lie on the nodes that produced it;
2. the measured part: 128 tasks are submitted at once, of three kinds (three remote functions,
   so three scheduling keys), interleaved: short (20 ms), medium (150 ms) and long (600 ms)
   sleeps; half of the medium and long ones take one of the blobs as argument (the task touches
   every page of it).
   The makespan is the time from the first submit to the last result.

Sleeps stand for work so that the 2 real cores of the test machine are not the bottleneck.
Prints one row per policy (median and all runs) and, with --json, writes them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from bed.netbed import HostSpec, NetBed, bed_unavailable_reason  # noqa: E402

POLICIES = ("wait", "hybrid", "least_loaded")
HOSTS = 4
CPUS_PER_HOST = 2
TASKS = 128
BLOBS = 8
SEED = 7
LINK_MBIT = 1000


def _workload(seed: int) -> list[tuple[str, float, int]]:
    """(kind, sleep_s, blob index or -1) for every measured task, in submission order."""
    rng = random.Random(seed)
    kinds = [("short", 0.02)] * 64 + [("medium", 0.15)] * 40 + [("long", 0.6)] * 24
    rng.shuffle(kinds)
    out = []
    for kind, sleep_s in kinds[:TASKS]:
        blob = rng.randrange(BLOBS) if kind != "short" and rng.random() < 0.5 else -1
        out.append((kind, sleep_s, blob))
    return out


def _named(fn: Any, name: str) -> Any:
    def task(*args: Any) -> Any:
        return fn(*args)
    task.__name__ = task.__qualname__ = name
    return task


def _run_once(policy: str, seed: int) -> dict[str, Any]:
    import numpy as np

    import ember
    from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    specs = [HostSpec(num_cpus=CPUS_PER_HOST) for _ in range(HOSTS)]
    with NetBed(specs, env={"EMBER_SCHEDULING_POLICY": policy}, link_rate_mbit=LINK_MBIT) as bed:
        bed.connect()

        @ember.remote(num_cpus=1)
        def make_blob(size_bytes: int) -> Any:
            return np.ones(size_bytes // 8, dtype=np.float64)

        def _work(sleep_s: float, *blob: Any) -> str:
            if blob:
                float(blob[0][::512].sum())  # touch every page
            time.sleep(sleep_s)
            return ember.get_runtime_context().get_node_id()

        kinds = {kind: ember.remote(num_cpus=1)(_named(_work, kind)) for kind in ("short", "medium", "long")}
        work = kinds["short"]

        rng = random.Random(seed)
        on = [NodeAffinitySchedulingStrategy(node_id=bed.node_id(1 + i % (HOSTS - 1)), soft=False)
              for i in range(BLOBS)]
        blobs = [make_blob.options(scheduling_strategy=on[i]).remote(rng.choice([8, 16, 32]) * 2**20)
                 for i in range(BLOBS)]
        ember.wait(blobs, num_returns=BLOBS, timeout=120)
        # Warm every host's workers and let every node daemon's view catch up.
        ember.get([work.options(scheduling_strategy="SPREAD").remote(0.05) for _ in range(HOSTS * CPUS_PER_HOST)],
                  timeout=120)
        time.sleep(1.5)
        plan = _workload(seed)
        started = time.perf_counter()
        refs = [kinds[k].remote(s) if b < 0 else kinds[k].remote(s, blobs[b]) for k, s, b in plan]
        nodes = ember.get(refs, timeout=300)
        makespan_s = time.perf_counter() - started
        per_host = [0] * HOSTS
        for node_id in nodes:
            per_host[bed.host_of(node_id)] += 1
        bed.disconnect()
    return {"makespan_s": makespan_s, "tasks_per_host": per_host}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    reason = bed_unavailable_reason()
    if reason is not None:
        sys.exit(f"spillback benchmark skipped: {reason}")
    policies = [p for p in args.policies.split(",") if p]
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in policies}
    for r in range(args.repeats):  # interleaved, so a load change on the machine hits every policy
        for policy in policies:
            runs[policy].append(_run_once(policy, SEED + r))
            print(f"run {r + 1} {policy}: {runs[policy][-1]}", flush=True)
    work_s = sum(s for _, s, _ in _workload(SEED))
    print(f"\n{TASKS} tasks, {work_s:.2f} s of sleep in all on {HOSTS * CPUS_PER_HOST} CPUs "
          f"(lower bound {work_s / (HOSTS * CPUS_PER_HOST):.2f} s)")
    print(f"{'policy':<14}{'median makespan s':>20}   runs")
    report = {}
    for policy in policies:
        spans = [x["makespan_s"] for x in runs[policy]]
        report[policy] = {"median_s": statistics.median(spans), "runs_s": spans,
                          "tasks_per_host": [x["tasks_per_host"] for x in runs[policy]]}
        print(f"{policy:<14}{statistics.median(spans):>20.3f}   {', '.join(f'{s:.3f}' for s in spans)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
