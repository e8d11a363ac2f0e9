"""python -m ember.sim --nodes 5000 --workload tasks --seed 7   (see docs/scale.md, "The simulator")."""
from __future__ import annotations

import argparse
import sys
import time

from ember.sim import faults as F
from ember.sim.run import WORKLOADS, RunSpec, repro_line, run, shrink


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ember.sim", description=__doc__)
    p.add_argument("--workload", choices=WORKLOADS, default="tasks")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed on (a sweep)")
    p.add_argument("--size", type=int, default=0, help="tasks / actors / groups (default: scales with --nodes)")
    p.add_argument("--cpus", type=int, default=8, help="CPUs per node")
    p.add_argument("--fault-rate", type=float, default=0.2, help="faults per simulated second (0: none)")
    p.add_argument("--loss", type=float, default=1e-5, help="probability that a message resets its connection")
    p.add_argument("--faults", default=None, help="an explicit fault plan (printed by a failing run)")
    p.add_argument("--until", type=float, default=3600.0, help="simulated seconds at most")
    p.add_argument("--no-shrink", action="store_true")
    args = p.parse_args(argv)
    try:
        args.plan = [F.Fault.decode(x) for x in args.faults.split(",") if x] if args.faults is not None else None
    except ValueError as e:
        p.error(f"--faults: {e} (expected at_s:kind:node:duration_s, comma separated)")
    if args.nodes < 1:
        p.error("--nodes must be at least 1")
    return args


def report(r, wall_s: float) -> None:
    mk = max(r.makespan_s, 1e-9)
    print(f"workload {r.spec.workload}, {r.spec.nodes} nodes, seed {r.spec.seed}: "
          f"{'ok' if r.ok else 'FAILED'}")
    print(f"  simulated makespan       {r.makespan_s:10.2f} s")
    print(f"  scheduling delay p50/p99 {r.delay_p50 * 1000:10.1f} / {r.delay_p99 * 1000:.1f} ms")
    print(f"  simulator                {r.events:10d} events in {wall_s:.1f} s = {r.events / max(wall_s, 1e-9):,.0f} events/s")
    print(f"  faults                   {len(r.faults):10d} injected")
    for k, v in r.figures.items():
        print(f"  {k:24s} {v}")
    for k, v in r.extra.items():
        print(f"  {k:24s} {v}")
    print("  control store messages (per simulated second; '>' = sent by the head):")
    for kind, n in sorted(r.head_msgs.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:22s} {n / mk:12,.1f}/s  {r.head_bytes.get(kind, 0) / mk / 1e6:10.2f} MB/s")


def main(argv: list[str] | None = None) -> int:
    a = _parse(sys.argv[1:] if argv is None else argv)
    failures = 0
    for seed in range(a.seed, a.seed + a.seeds):
        spec = RunSpec(workload=a.workload, nodes=a.nodes, seed=seed, size=a.size, fault_rate=a.fault_rate,
                       loss=a.loss, faults=a.plan, until_s=a.until, cpus=a.cpus)
        t0 = time.perf_counter()
        r = run(spec)
        report(r, time.perf_counter() - t0)
        if r.ok:
            continue
        failures += 1
        print(f"\nFAILED with seed {seed}: {r.error}")
        if not a.no_shrink:
            spec, r = shrink(spec, r)
            print(f"shrunk to {len(r.faults)} faults, loss {spec.loss:g}: {r.error}")
        print("repro: " + repro_line(spec, r.faults))
        print("event log (last notable events):")
        for t, text in r.trace[-40:]:
            print(f"  {t:10.4f}  {text}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
