"""How long a STRICT_SPREAD placement group of 1-CPU bundles takes to be ready on the multi-host bed.

Builds a bed of N hosts (network namespaces, tests/bed/netbed.py; needs root), connects as the
driver, and times ``placement_group([{"CPU": 1}] * N, strategy="STRICT_SPREAD")`` to ``wait()``
returning True, then removes the group; repeats and prints min / median / p90 in milliseconds.
Run: python benchmarks/pg_bed_latency.py [--hosts 4] [--repeat 50]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import ember  # noqa: E402
from bed.netbed import HostSpec, NetBed, bed_unavailable_reason  # noqa: E402
from ember.util.placement_group import placement_group, remove_placement_group  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    reason = bed_unavailable_reason()
    if reason is not None:
        sys.exit(f"cannot build the bed: {reason}")
    with NetBed([HostSpec(num_cpus=1)] * args.hosts) as bed:
        bed.connect()
        bed.wait_nodes(args.hosts)
        times_ms = []
        for _ in range(args.repeat + 3):
            start = time.perf_counter()
            pg = placement_group([{"CPU": 1}] * args.hosts, strategy="STRICT_SPREAD")
            assert pg.wait(30), "not placed"
            times_ms.append((time.perf_counter() - start) * 1000)
            remove_placement_group(pg)
            while ember.available_resources().get("CPU", 0) < args.hosts:  # bundles released everywhere
                time.sleep(0.01)
        times_ms = sorted(times_ms[3:])
        print(f"{args.hosts}-host STRICT_SPREAD of 1-CPU bundles, create -> ready, {args.repeat} runs: "
              f"min {times_ms[0]:.2f} ms, median {statistics.median(times_ms):.2f} ms, "
              f"p90 {times_ms[int(len(times_ms) * 0.9)]:.2f} ms")
        bed.disconnect()


if __name__ == "__main__":
    main()
