"""ember's scalability envelope on one machine, beside Ray's when Ray is installed (issue #20).

Each row runs in a fresh driver process (so memory is the row's own) and prints its time, the
peak PSS summed over the cluster's processes (sampled every 0.2 s) and the driver's peak RSS.

    python benchmarks/envelope.py                      # the full rows (minutes; Ray too if importable)
    python benchmarks/envelope.py --quick              # small sizes (the suite runs an even smaller one)
    python benchmarks/envelope.py --rows actors,many_args --runtime ember
    python benchmarks/envelope.py --json out.json

Ray runs from ``benchmarks/.ray-venv`` (``benchmarks/install_ray.sh``) when it exists, else from
this interpreter if it can import ray, else its rows are skipped with that reason.

Rows (full size / quick size):
- ``queued_tasks``: N no-op tasks submitted at once, then fetched (100,000 / 2,000).
- ``many_args``: one task with N list arguments of 10,000 ints each, Ray's shape (10,000 / 300).
- ``many_returns``: one task with ``num_returns=N`` (3,000 / 100).
- ``get_many_refs``: one ``get`` of N small objects (10,000 / 1,000).
- ``actors``: N actors with ``num_cpus=0`` created and called once; also the rate of the first
  100 and of the last 100 (1,000 / 30).
- ``spill_restore``: N MiB of 8 MiB objects put through a store of a quarter of that (at least
  80 MiB), then all read back (8,192 / 256).
- ``nested``: a chain of N nested blocking tasks (100 / 10).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RAY_PYTHON = os.path.join(HERE, ".ray-venv", "bin", "python")

FULL = {"queued_tasks": 100_000, "many_args": 10_000, "many_returns": 3_000, "get_many_refs": 10_000,
        "actors": 1_000, "spill_restore": 8_192, "nested": 100}
QUICK = {"queued_tasks": 2_000, "many_args": 300, "many_returns": 100, "get_many_refs": 1_000,
         "actors": 30, "spill_restore": 256, "nested": 10}
TINY = {"queued_tasks": 200, "many_args": 50, "many_returns": 20, "get_many_refs": 100,
        "actors": 4, "spill_restore": 200, "nested": 3}


# --- rows (run inside the child driver) --------------------------------------------------------------------
def row_queued_tasks(rt: Any, n: int) -> dict:
    @rt.remote
    def noop() -> None:
        return None

    refs = [noop.remote() for _ in range(n)]
    rt.get(refs)
    return {}


def row_many_args(rt: Any, n: int) -> dict:
    @rt.remote
    def sum_args(*args: Any) -> int:
        return sum(sum(a) for a in args)

    args = [[1] * 10_000 for _ in range(n)]
    assert rt.get(sum_args.remote(*args)) == 10_000 * n
    return {}


def row_many_returns(rt: Any, n: int) -> dict:
    @rt.remote(num_returns=n)
    def many() -> tuple:
        return tuple(range(n))

    assert rt.get(list(many.remote())) == list(range(n))
    return {}


def row_get_many_refs(rt: Any, n: int) -> dict:
    refs = [rt.put(i) for i in range(n)]
    assert rt.get(refs)[-1] == n - 1
    return {}


def row_actors(rt: Any, n: int) -> dict:
    @rt.remote(num_cpus=0)
    class Actor:
        def ping(self) -> int:
            return 1

    actors, rates = [], []
    step = max(1, min(100, n // 3 or 1))
    for _ in range(0, n, step):
        started = time.perf_counter()
        batch = [Actor.remote() for _ in range(step)]
        rt.get([a.ping.remote() for a in batch])
        rates.append(step / (time.perf_counter() - started))
        actors.extend(batch)
    return {"first_rate_per_s": round(rates[0], 2), "last_rate_per_s": round(rates[-1], 2)}


def row_spill_restore(rt: Any, total_mib: int) -> dict:
    import numpy as np
    count = max(2, total_mib // 8)
    started = time.perf_counter()
    refs = [rt.put(np.full(8 * 1024 * 1024 // 8, i, dtype=np.int64)) for i in range(count)]
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    for i, ref in enumerate(refs):
        assert int(rt.get(ref)[0]) == i
    return {"put_s": round(put_s, 3), "get_back_s": round(time.perf_counter() - started, 3)}


def row_nested(rt: Any, depth: int) -> dict:
    @rt.remote(num_cpus=1)
    def nest(level: int) -> int:
        if level == 0:
            return 0
        return 1 + rt.get(nest.remote(level - 1))

    assert rt.get(nest.remote(depth)) == depth
    return {}


ROWS: dict[str, Callable[[Any, int], dict]] = {
    "queued_tasks": row_queued_tasks, "many_args": row_many_args, "many_returns": row_many_returns,
    "get_many_refs": row_get_many_refs, "actors": row_actors, "spill_restore": row_spill_restore,
    "nested": row_nested,
}


# --- the child driver ------------------------------------------------------------------------------------
def _cluster_pss_mib(driver_pid: int) -> float:
    import psutil
    total = 0
    try:
        procs = psutil.Process(driver_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.Error, OSError):
            pass
    return total / 2**20


def child(runtime: str, row: str, n: int) -> dict:
    import psutil
    if runtime == "ray":
        import ray as rt
    else:
        sys.path.insert(0, ROOT)
        import ember as rt
    kwargs: dict[str, Any] = {"num_cpus": 2}
    if row == "spill_restore":
        kwargs["object_store_memory"] = max(80, n // 4) * 2**20   # 80 MiB: ember's minimum store
    if runtime == "ember":
        kwargs["address"] = "local"
    rt.init(**kwargs)
    me = psutil.Process()
    peak = {"pss": 0.0, "rss": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["pss"] = max(peak["pss"], _cluster_pss_mib(me.pid))
            peak["rss"] = max(peak["rss"], me.memory_info().rss / 2**20)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    extra = ROWS[row](rt, n)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    rt.shutdown()
    return {"row": row, "runtime": runtime, "n": n, "time_s": round(elapsed, 3),
            "cluster_pss_mib": round(peak["pss"], 1), "driver_rss_mib": round(peak["rss"], 1), **extra}


# --- the parent: one child per row and runtime ----------------------------------------------------------
def _python_for(runtime: str) -> str | None:
    if runtime == "ember":
        return sys.executable
    if os.path.exists(RAY_PYTHON):
        return RAY_PYTHON
    probe = subprocess.run([sys.executable, "-c", "import ray"], capture_output=True)
    return sys.executable if probe.returncode == 0 else None


def run_row(runtime: str, row: str, n: int, timeout_s: float) -> dict:
    python = _python_for(runtime)
    if python is None:
        return {"row": row, "runtime": runtime, "n": n, "skipped": "ray is not installed (benchmarks/install_ray.sh)"}
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [python, os.path.abspath(__file__), "--child", row, "--runtime", runtime, "--n", str(n)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"row": row, "runtime": runtime, "n": n, "failed": f"did not finish in {timeout_s:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"row": row, "runtime": runtime, "n": n, "failed": " | ".join(tail)}
    return json.loads(lines[-1])


def _table(results: list[dict]) -> str:
    lines = ["| row | n | runtime | time s | cluster PSS MiB | driver RSS MiB | more |",
             "| --- | ---: | --- | ---: | ---: | ---: | --- |"]
    for r in results:
        if "skipped" in r or "failed" in r:
            lines.append(f"| {r['row']} | {r['n']} | {r['runtime']} | - | - | - | {r.get('skipped') or r.get('failed')} |")
            continue
        more = ", ".join(f"{k}={v}" for k, v in r.items()
                         if k not in ("row", "runtime", "n", "time_s", "cluster_pss_mib", "driver_rss_mib"))
        lines.append(f"| {r['row']} | {r['n']} | {r['runtime']} | {r['time_s']} | {r['cluster_pss_mib']} | "
                     f"{r['driver_rss_mib']} | {more} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--tiny", action="store_true", help="smallest sizes (the test suite's smoke run)")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows")
    ap.add_argument("--runtime", default="both", choices=["both", "ember", "ray"])
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per row and runtime")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.runtime, args.child, args.n)), flush=True)
        return
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    runtimes = ["ember", "ray"] if args.runtime == "both" else [args.runtime]
    results = []
    for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
        if row not in ROWS:
            raise SystemExit(f"unknown row {row!r}; rows: {', '.join(ROWS)}")
        for runtime in runtimes:
            result = run_row(runtime, row, sizes[row], args.timeout)
            results.append(result)
            print(json.dumps(result), flush=True)
    print(_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
