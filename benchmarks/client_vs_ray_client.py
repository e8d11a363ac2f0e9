"""The remote client against Ray Client, on this machine, in one run (docs/performance.md).

Starts an ember head with its client server (``ember start --head``) and a Ray head with its
client server (``ray start --head --ray-client-server-port``), both with 2 CPUs, then runs a
fresh client process per runtime, alternating, ``--repeat`` times; each client connects with
``ember://`` / ``ray://`` and measures:

- ``client_task_round_trip``   ms per ``get(f.remote())``, one at a time (median of the calls)
- ``client_tasks_sync``        tasks/s, submit one and get it, repeated
- ``client_tasks_async``       tasks/s, submit 1000 then get them all
- ``client_put_100mib``        s to put a 100 MiB numpy array
- ``client_get_100mib``        s to get it back

Rows are medians over the repeats.  Ray: ``benchmarks/.ray-venv`` (``bash benchmarks/install_ray.sh``),
or ``--ray-python``.  Run: ``python benchmarks/client_vs_ray_client.py [--repeat 3] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CLIENT = r"""
import json, statistics, sys, time
import numpy as np
MODULE, ADDRESS = sys.argv[1], sys.argv[2]
rt = __import__(MODULE)
rt.init(ADDRESS)

@rt.remote
def f(x=0):
    return x

rt.get(f.remote())
rt.get([f.remote() for _ in range(200)])           # warm: workers started, leases held
rows = {}
times = []
for _ in range(300):
    t = time.perf_counter(); rt.get(f.remote()); times.append(time.perf_counter() - t)
rows["client_task_round_trip"] = statistics.median(times) * 1e3
n, t = 0, time.perf_counter()
while time.perf_counter() - t < 3:
    rt.get(f.remote()); n += 1
rows["client_tasks_sync"] = n / (time.perf_counter() - t)
best = 0.0
for _ in range(3):
    t = time.perf_counter(); rt.get([f.remote() for _ in range(1000)])
    best = max(best, 1000 / (time.perf_counter() - t))
rows["client_tasks_async"] = best
arr = np.ones(100 * 1024 * 1024 // 8)
puts, gets = [], []
for _ in range(3):
    t = time.perf_counter(); ref = rt.put(arr); puts.append(time.perf_counter() - t)
    t = time.perf_counter(); back = rt.get(ref); gets.append(time.perf_counter() - t)
    assert back.shape == arr.shape
    del ref, back
rows["client_put_100mib"] = min(puts)
rows["client_get_100mib"] = min(gets)
print("ROWS " + json.dumps(rows), flush=True)
rt.shutdown()
"""

UNITS = {"client_task_round_trip": "ms", "client_tasks_sync": "tasks/s", "client_tasks_async": "tasks/s",
         "client_put_100mib": "s", "client_get_100mib": "s"}
HIGHER_IS_BETTER = {"client_tasks_sync", "client_tasks_async"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ember(tmp: str) -> tuple[str, dict]:
    env = {**os.environ, "EMBER_TMPDIR": tmp}
    port = _free_port()
    out = subprocess.run([sys.executable, "-m", "ember.cli.main", "start", "--head", "--port", "0", "--num-cpus", "2",
                          "--include-dashboard", "false", "--client-server-port", str(port)],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    session = json.load(open(os.path.join(tmp, "current_cluster")))["session_dir"]
    env["EMBER_CLUSTER_TOKEN"] = open(os.path.join(session, "token")).read().strip()
    del out
    return f"ember://127.0.0.1:{port}", env


def start_ray(ray_python: str, tmp: str) -> tuple[str, dict, subprocess.Popen]:
    """``ray start --head --block`` in a process group of its own, stopped by signalling that group
    (never ``ray stop``, which would stop every Ray of this user on the machine)."""
    ray_bin = os.path.join(os.path.dirname(ray_python), "ray")
    port = _free_port()
    # Token authentication on both sides, as ember's (Ray turns it on when ~/.ray/auth_token exists,
    # and its client then needs RAY_AUTH_MODE=token to send the token).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    proc = subprocess.Popen([ray_bin, "start", "--head", "--block", "--port", str(_free_port()), "--num-cpus", "2",
                             "--include-dashboard", "false", "--ray-client-server-port", str(port), "--temp-dir", tmp,
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"ray://127.0.0.1:{port}", env, proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}")
            time.sleep(0.5)
    stop_ray(proc)
    raise RuntimeError("Ray's client server did not listen within 180 s")


def stop_ray(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            time.sleep(2)  # its children leave after it
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything of the group still there
    except ProcessLookupError:
        pass


def run_client(python: str, module: str, address: str, env: dict, tries: int = 3) -> dict:
    """One client's rows; a client that failed to start is tried again (Ray Client's per-client
    server sometimes fails to start on a loaded machine), at most ``tries`` times."""
    for attempt in range(1, tries + 1):
        try:
            return _run_client_once(python, module, address, env)
        except RuntimeError as e:
            if attempt == tries:
                raise
            print(f"{module} client failed (try {attempt}), again: {str(e)[-300:]}", flush=True)
    raise AssertionError("unreachable")


def _run_client_once(python: str, module: str, address: str, env: dict) -> dict:
    done = subprocess.run([python, "-c", CLIENT, module, address], env=env, capture_output=True, text=True,
                          timeout=600)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("ROWS ")]
    if not lines:
        raise RuntimeError(f"{module} client failed (rc={done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][5:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ray-python", default=os.path.join(HERE, ".ray-venv", "bin", "python"))
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    ember_tmp = tempfile.mkdtemp(prefix="ember-clientbench-")
    ray_tmp = tempfile.mkdtemp(prefix="rayclient-")
    ember_address, ember_env = start_ember(ember_tmp)
    try:
        ray_address, ray_env, ray_proc = start_ray(args.ray_python, ray_tmp)
        try:
            results: dict[str, list[dict]] = {"ember": [], "ray": []}
            for i in range(args.repeat):
                results["ember"].append(run_client(sys.executable, "ember", ember_address, ember_env))
                results["ray"].append(run_client(args.ray_python, "ray", ray_address, ray_env))
                print(f"run {i + 1}: ember {results['ember'][-1]}\n       ray   {results['ray'][-1]}", flush=True)
        finally:
            stop_ray(ray_proc)
    finally:
        subprocess.run([sys.executable, "-m", "ember.cli.main", "stop"], env=ember_env, capture_output=True,
                       timeout=120)
        shutil.rmtree(ember_tmp, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    table = []
    print(f"\n| row | ember | Ray Client | ember / Ray (higher = ember better) |\n| --- | --- | --- | --- |")
    for row, unit in UNITS.items():
        e = statistics.median(r[row] for r in results["ember"])
        r_ = statistics.median(r[row] for r in results["ray"])
        ratio = e / r_ if row in HIGHER_IS_BETTER else r_ / e
        table.append({"row": row, "unit": unit, "ember": e, "ray": r_, "ratio": ratio})
        print(f"| {row} | {e:.3g} {unit} | {r_:.3g} {unit} | {ratio:.1f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": results, "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
