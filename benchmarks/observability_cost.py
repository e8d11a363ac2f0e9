"""What task events and metrics cost the task path: CPU time per task summed over every process of a
private 2-CPU cluster (driver, control store, node daemon, workers), with each feature on and off,
alternated in one sitting.  CPU time per task holds on a loaded machine where wall-clock rates swing.

    python benchmarks/observability_cost.py [--n 20000] [--reps 3]

Modes: off (EMBER_TASK_EVENTS_REPORT_INTERVAL_S=0, EMBER_METRICS_*_PORT=-1), events, metrics, both.
The multi-client case has 4 zero-CPU actors each submitting n/4 no-op tasks; the user-metrics case
adds a Counter.inc per task in the task (both on).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

MODES = {
    "off": {"EMBER_TASK_EVENTS_REPORT_INTERVAL_S": "0", "EMBER_METRICS_EXPORT_PORT": "-1",
            "EMBER_METRICS_HEAD_PORT": "-1"},
    "events": {"EMBER_METRICS_EXPORT_PORT": "-1", "EMBER_METRICS_HEAD_PORT": "-1"},
    "metrics": {"EMBER_TASK_EVENTS_REPORT_INTERVAL_S": "0"},
    "both": {},
}

CHILD = r'''
import json, sys, time, psutil, ember
from ember.util.metrics import Counter
n = int(sys.argv[1])
ember.init(num_cpus=2)

@ember.remote
def noop():
    return None

@ember.remote
def counted():
    Counter("bench_calls", "calls").inc()
    return None

@ember.remote(num_cpus=0)
class Submitter:
    def run(self, k):
        ember.get([noop.remote() for _ in range(k)])

def cpu_s():
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times(); total += t.user + t.system
        except psutil.Error:
            pass
    return total

def measure(fn):
    fn(500)
    time.sleep(1.2)   # the warm-up's events are flushed outside the window
    c0, w0 = cpu_s(), time.perf_counter()
    fn(n)
    time.sleep(1.2)   # this run's events flushed (and counted) inside the window
    return (cpu_s() - c0) / n * 1e6, n / (time.perf_counter() - w0 - 1.2)

subs = [Submitter.remote() for _ in range(4)]
out = {
    "single_client_tasks_async": measure(lambda k: ember.get([noop.remote() for _ in range(k)])),
    "multi_client_tasks_async": measure(lambda k: ember.get([s.run.remote(k // 4) for s in subs])),
    "tasks_with_user_counter": measure(lambda k: ember.get([counted.remote() for _ in range(k)])),
}
print(json.dumps(out))
ember.shutdown()
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    results: dict[str, dict[str, list]] = {mode: {} for mode in MODES}
    for rep in range(args.reps):
        for mode, env in MODES.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.n)], capture_output=True, text=True,
                                 timeout=900, env={**os.environ, **env})
            if out.returncode != 0:
                sys.exit(out.stderr[-3000:])
            row = json.loads(out.stdout.strip().splitlines()[-1])
            for name, (cpu_us, rate) in row.items():
                results[mode].setdefault(name, []).append((cpu_us, rate))
            print(f"rep {rep} {mode:8s} " + "  ".join(f"{k}: {v[0]:.0f} us/task {v[1]:.0f}/s" for k, v in row.items()),
                  flush=True)
    print("\nmedian CPU us per task (wall-clock tasks/s):")
    for name in results["off"]:
        base = statistics.median(c for c, _ in results["off"][name])
        cells = []
        for mode in MODES:
            cpu = statistics.median(c for c, _ in results[mode][name])
            rate = statistics.median(r for _, r in results[mode][name])
            cells.append(f"{mode} {cpu:.0f} ({(cpu / base - 1) * 100:+.1f}%, {rate:.0f}/s)")
        print(f"  {name}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
