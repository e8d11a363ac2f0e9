"""CPU time per task and per actor call across every process of a private cluster (driver,
node daemon, control store, workers), in microseconds: a cost figure that holds on a loaded
machine, where the wall-clock rows of ``ember microbenchmark`` swing by several times.

    python benchmarks/task_cpu.py [--n 2000]      (EMBER_TLS_* in the environment: with TLS)
"""
from __future__ import annotations

import argparse
import json
import time

import psutil

import ember


@ember.remote
def _noop():
    return None


@ember.remote
class _Actor:
    def noop(self):
        return None


def _cpu_s(root: psutil.Process) -> float:
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _measure(run, n: int) -> float:
    me = psutil.Process()
    run(200)  # warm up: workers started, leases held
    c0 = _cpu_s(me)
    run(n)
    return (_cpu_s(me) - c0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    ember.init(num_cpus=2)
    actor = _Actor.remote()
    ember.get(actor.noop.remote())
    out = {
        "tasks_sync": _measure(lambda k: [ember.get(_noop.remote()) for _ in range(k)], args.n),
        "tasks_async": _measure(lambda k: ember.get([_noop.remote() for _ in range(k)]), args.n),
        "actor_calls_sync": _measure(lambda k: [ember.get(actor.noop.remote()) for _ in range(k)], args.n),
        "actor_calls_async": _measure(lambda k: ember.get([actor.noop.remote() for _ in range(k)]), args.n),
    }
    ember.shutdown()
    time.sleep(0.2)
    print(json.dumps({"cpu_us_per_call": {k: round(v, 1) for k, v in out.items()}}))


if __name__ == "__main__":
    main()
