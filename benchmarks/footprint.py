"""Idle memory of a cluster with its dashboard on: ember against Ray, measured in one run.

    .venv/bin/python benchmarks/footprint.py [--ray-python benchmarks/.ray-venv/bin/python]
                                             [--idle-s 30] [--json out.json]

For each runtime a fresh interpreter starts a local cluster with the dashboard
(``init(num_cpus=2, include_dashboard=True)``), waits until its processes and their RSS have
settled, stays idle ``--idle-s`` more seconds (Ray's dashboard agents start late), then sums the
PSS of every process the cluster started (``ember/benchmarks/footprint.py``: the driver's
descendants, processes naming the session, processes carrying a marker variable), the driver
itself counted apart.  PSS shares each shared page among the processes mapping it, so the sum
counts shared libraries and shared memory once.  Ray needs ``ray[default]`` for its dashboard:
``RAY_EXTRAS=default bash benchmarks/install_ray.sh``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1024 * 1024


def _helpers():
    """ember/benchmarks/footprint.py loaded by path: it needs only psutil, so Ray's venv can run it."""
    path = os.path.join(ROOT, "ember", "benchmarks", "footprint.py")
    spec = importlib.util.spec_from_file_location("_footprint", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _settle(find, rss_of, polls: int = 4, poll_s: float = 1.0, max_s: float = 60.0) -> None:
    deadline = time.monotonic() + max_s
    last, calm = (set(), 0), 0
    while time.monotonic() < deadline and calm < polls:
        time.sleep(poll_s)
        procs = find()
        now = ({p.pid for p in procs}, rss_of(procs))
        calm = calm + 1 if now[0] == last[0] and abs(now[1] - last[1]) <= 0.01 * max(now[1], 1) else 0
        last = now


def child(runtime: str, idle_s: float) -> dict:
    import psutil
    fp = _helpers()
    tag = uuid.uuid4().hex
    os.environ[fp.TAG_ENV] = tag
    if runtime == "ember":
        sys.path.insert(0, ROOT)
    rt = __import__(runtime)
    ctx = rt.init(num_cpus=2, include_dashboard=True)
    url = getattr(ctx, "dashboard_url", None) or ctx["dashboard_url"]  # Ray: the attribute; ember: both
    try:
        markers = fp.session_markers(rt)
        find = lambda: fp.cluster_processes(os.getpid(), markers, tag)  # noqa: E731
        _settle(find, fp.rss_bytes)
        time.sleep(idle_s)
        procs = find()
        rows = []
        for p in procs:
            try:
                rows.append({"pid": p.pid, "name": " ".join(p.cmdline()[:4])[:120],
                             "pss_mib": round(p.memory_full_info().pss / MIB, 1)})
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        driver = psutil.Process(os.getpid()).memory_full_info().pss
        return {"runtime": runtime, "version": rt.__version__, "dashboard_url": str(url),
                "processes": len(rows), "pss_mib": round(sum(r["pss_mib"] for r in rows), 1),
                "driver_pss_mib": round(driver / MIB, 1), "rows": sorted(rows, key=lambda r: -r["pss_mib"])}
    finally:
        rt.shutdown()


def measure(python: str, runtime: str, idle_s: float) -> dict:
    env = dict(os.environ)
    env.pop("EMBER_ADDRESS", None)
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([python, os.path.abspath(__file__), "--child", runtime, "--idle-s", str(idle_s)],
                         capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith("FOOTPRINT "):
            return json.loads(line[len("FOOTPRINT "):])
    raise RuntimeError(f"{runtime} child failed (exit {out.returncode}):\n{out.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", choices=("ember", "ray"))
    parser.add_argument("--ember-python", default=sys.executable)
    parser.add_argument("--ray-python", default=os.path.join(HERE, ".ray-venv", "bin", "python"))
    parser.add_argument("--idle-s", type=float, default=30.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.child:
        print("FOOTPRINT " + json.dumps(child(args.child, args.idle_s)), flush=True)
        return 0
    results = [measure(args.ember_python, "ember", args.idle_s), measure(args.ray_python, "ray", args.idle_s)]
    for r in results:
        print(f"{r['runtime']} {r['version']}: {r['pss_mib']} MiB PSS in {r['processes']} processes "
              f"(+ driver {r['driver_pss_mib']} MiB)")
        for row in r["rows"]:
            print(f"    {row['pss_mib']:8.1f} MiB  {row['pid']:>7}  {row['name']}")
    ember, ray = results
    print(f"ember / Ray: {ember['pss_mib'] / ray['pss_mib']:.3f} (processes only), "
          f"{(ember['pss_mib'] + ember['driver_pss_mib']) / (ray['pss_mib'] + ray['driver_pss_mib']):.3f} "
          "(with the drivers)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "idle_s": args.idle_s, "results": results}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
