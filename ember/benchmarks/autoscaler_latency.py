"""Time from an unmet demand to a task running on a new `local` node:  python -m ember.benchmarks.autoscaler_latency

Each run: `ember up` (head with 1 CPU, workers with 2, no workers yet) in a private EMBER_TMPDIR, a driver
submits one task needing 2 CPUs (infeasible on the head) and reports when it started, `ember down`.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile

CONFIG = """\
cluster_name: latency
max_workers: 2
provider: {type: local}
available_node_types:
  head: {resources: {CPU: 1}, max_workers: 0}
  cpu2: {resources: {CPU: 2}, max_workers: 2, cost_per_hour: 1.0}
head_node_type: head
"""

DRIVER = """
import time, ember
ember.init(address="auto")
@ember.remote(num_cpus=2)
def f():
    return time.time()
t0 = time.time()
print("LATENCY", ember.get(f.remote(), timeout=120) - t0)
"""


def one_run(root: str) -> float:
    env = {**os.environ, "EMBER_TMPDIR": root}
    path = os.path.join(root, "c.yaml")
    with open(path, "w") as f:
        f.write(CONFIG)
    ember = [sys.executable, "-m", "ember.cli.main"]
    subprocess.run([*ember, "up", path, "--yes", "--port", "0"], env=env, check=True, capture_output=True, timeout=120)
    try:
        out = subprocess.run([sys.executable, "-c", DRIVER], env=env, check=True, capture_output=True, text=True,
                             timeout=180).stdout
        return float(out.split("LATENCY")[1].split()[0])
    finally:
        subprocess.run([*ember, "down", path], env=env, capture_output=True, timeout=120)


def main(runs: int = 3) -> None:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="ember-autoscaler-latency-") as root:
            times.append(one_run(root))
    print(f"unmet demand -> task running on a new local node: median {statistics.median(times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
