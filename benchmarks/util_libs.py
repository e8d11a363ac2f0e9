"""The libraries on ember, measured in one run: joblib and multiprocessing.Pool.

Rows (each the best and the median of ``--repeat`` runs, after one warm-up run):

- ``joblib 10,000 calls``: ``Parallel(n_jobs=N)`` over 10,000 calls of a tiny function, with
  ember's backend (``parallel_backend("ember")``) and with joblib's own loky;
- ``Pool.map 100,000 items``: ``Pool(N).map`` of a tiny function over 100,000 ints, with
  ``ember.util.multiprocessing.Pool``, Python's ``multiprocessing.Pool`` and, when a Ray
  venv is given (``--ray-python``, default ``benchmarks/.ray-venv`` or ``/work/main/benchmarks/.ray-venv``),
  Ray's ``ray.util.multiprocessing.Pool`` (run in that interpreter, same machine, same N).

Ray's joblib backend needs joblib inside the Ray venv; when it is missing that row says so.

    python benchmarks/util_libs.py [--cpus 2] [--repeat 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

N_CALLS = 10_000
N_ITEMS = 100_000


def tiny(x: int) -> int:
    return x * 2 + 1


def measure(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    fn()  # warm-up: workers started, functions shipped
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"best_s": min(times), "median_s": statistics.median(times)}


def joblib_rows(cpus: int, repeat: int) -> dict[str, dict]:
    import joblib

    import ember
    from ember.util.joblib import register_ember

    def run(backend: str) -> None:
        with joblib.parallel_backend(backend, n_jobs=cpus):
            out = joblib.Parallel()(joblib.delayed(tiny)(i) for i in range(N_CALLS))
        assert out[-1] == tiny(N_CALLS - 1)

    ember.init(num_cpus=cpus)
    register_ember()
    try:
        rows = {"joblib 10,000 calls, ember": measure(lambda: run("ember"), repeat)}
    finally:
        ember.shutdown()
    rows["joblib 10,000 calls, loky"] = measure(lambda: run("loky"), repeat)
    return rows


def pool_rows(cpus: int, repeat: int) -> dict[str, dict]:
    import multiprocessing

    import ember
    from ember.util.multiprocessing import Pool

    items = list(range(N_ITEMS))
    ember.init(num_cpus=cpus)
    try:
        with Pool(cpus) as pool:
            rows = {"Pool.map 100,000 items, ember": measure(lambda: pool.map(tiny, items), repeat)}
    finally:
        ember.shutdown()
    with multiprocessing.get_context("fork").Pool(cpus) as mp_pool:
        rows["Pool.map 100,000 items, multiprocessing"] = measure(lambda: mp_pool.map(tiny, items), repeat)
    return rows


_RAY_POOL = """
import json, statistics, sys, time
import ray
from ray.util.multiprocessing import Pool
def tiny(x): return x * 2 + 1
cpus, repeat, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
items = list(range(n))
with Pool(cpus) as pool:
    pool.map(tiny, items)
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); pool.map(tiny, items); times.append(time.perf_counter() - t)
try:
    import joblib
    has_joblib = True
except ImportError:
    has_joblib = False
ray.shutdown()
print(json.dumps({"best_s": min(times), "median_s": statistics.median(times), "has_joblib": has_joblib}))
"""


def ray_rows(ray_python: str, cpus: int, repeat: int) -> dict[str, dict]:
    if not os.path.exists(ray_python):
        return {"Pool.map 100,000 items, Ray": {"skipped": f"no Ray interpreter at {ray_python}"}}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBER_", "RAY_ADDRESS"))}
    done = subprocess.run([ray_python, "-c", _RAY_POOL, str(cpus), str(repeat), str(N_ITEMS)],
                          capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        return {"Pool.map 100,000 items, Ray": {"skipped": done.stderr[-500:]}}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    rows = {"Pool.map 100,000 items, Ray": {"best_s": out["best_s"], "median_s": out["median_s"]}}
    if not out["has_joblib"]:
        rows["joblib 10,000 calls, Ray"] = {"skipped": "joblib is not installed in the Ray venv"}
    return rows


def default_ray_python() -> str:
    for venv in (os.path.join(HERE, ".ray-venv"), "/work/main/benchmarks/.ray-venv"):
        path = os.path.join(venv, "bin", "python")
        if os.path.exists(path):
            return path
    return os.path.join(HERE, ".ray-venv", "bin", "python")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ray-python", default=default_ray_python())
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows: dict[str, dict] = {}
    rows.update(joblib_rows(args.cpus, args.repeat))
    rows.update(pool_rows(args.cpus, args.repeat))
    rows.update(ray_rows(args.ray_python, args.cpus, args.repeat))
    for name, row in rows.items():
        if "skipped" in row:
            print(f"{name:45s} skipped: {row['skipped']}")
        else:
            print(f"{name:45s} best {row['best_s'] * 1000:9.1f} ms   median {row['median_s'] * 1000:9.1f} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
