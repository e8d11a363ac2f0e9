"""Object transfer between nodes, beside this machine's limits (issue 12).

Rows (every node is a node daemon on this machine, talking over loopback TCP):

- ``cross_node_get``: the driver puts an S-byte numpy array on the head node; a task on a
  second node ``get``s it (timed inside the task: the pull and the mapping).  The first
  transfer writes fresh shared-memory pages; later ones reuse freed files (``median``).
- ``many_small``: the driver puts N objects of 1 MiB; one task on a second node gets the
  list (N MiB pulled by one task).
- ``broadcast``: tasks on K other nodes, started together, each get one B-byte object;
  the time from the first start to the last end, and its ratio to one transfer of B.

With ``--runtime ray`` the same rows run on Ray between ``ray start`` nodes (Ray 2.60 in
``benchmarks/.ray-venv``, or ``--ray-python``); with ``--tls`` ember runs with mutual
TLS (certificates made with trustme).  The machine's limits (``machine_limits.py``:
loopback TCP bandwidth, first touch of shm pages, memcpy) are measured in the same run.

    python benchmarks/transfer.py [--size-mib 1024] [--repeat 3] [--small 1000]
        [--broadcast-mib 512] [--broadcast-nodes 8] [--runtime ember|ray] [--tls] [--json F]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
MiB = 1024 * 1024
GB = 1e9


# --- clusters -------------------------------------------------------------------------------
class EmberCluster:
    def __init__(self, nodes: int, store_bytes: int) -> None:
        import ember
        from ember import lifecycle
        from ember.shells.shared import local_cluster
        from ember.shells.wire import session
        self.rt = ember
        ember.init(address="local", num_cpus=1, resources={"n0": 100}, object_store_memory=store_bytes,
                   include_dashboard=False)
        cluster = lifecycle._local_cluster
        self.procs = []
        for i in range(1, nodes):
            args = local_cluster.node_args(num_cpus=1, num_gpus=None, resources={f"n{i}": 100},
                                           object_store_memory=store_bytes)
            proc, _ = local_cluster.start_node(cluster.gcs_address, cluster.session_dir,
                                               session.token_path(cluster.session_dir), host="127.0.0.1",
                                               is_head=False, tied_to_parent=True, extra=args)
            self.procs.append(proc)
        _wait(lambda: len([n for n in ember.nodes() if n["Alive"]]) >= nodes, "nodes to register")

    def close(self) -> None:
        import signal
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        self.rt.shutdown()


class RayCluster:
    def __init__(self, nodes: int, store_bytes: int) -> None:
        import ray
        self.rt = ray
        self.tmp = tempfile.mkdtemp(prefix="rtx-", dir="/tmp")
        self.ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
        port = 6390
        # the nodes join by address on one machine; Ray 2.60's token auth would need the
        # token handed to each `ray start` (ember's benchmark keeps its auth on)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        base = [self.ray_bin, "start", "--num-cpus", "1", f"--object-store-memory={store_bytes}",
                "--disable-usage-stats"]
        subprocess.run(base + ["--head", f"--port={port}", "--resources", json.dumps({"n0": 100}),
                               "--include-dashboard=false", f"--temp-dir={self.tmp}"], check=True,
                       stdout=subprocess.DEVNULL)
        for i in range(1, nodes):
            subprocess.run(base + [f"--address=127.0.0.1:{port}", "--resources", json.dumps({f"n{i}": 100}),
                                   f"--temp-dir={self.tmp}"], check=True, stdout=subprocess.DEVNULL)
        ray.init(address=f"127.0.0.1:{port}")
        _wait(lambda: len([n for n in ray.nodes() if n["Alive"]]) >= nodes, "nodes to register")

    def close(self) -> None:
        """Stop this cluster's processes only (never `ray stop`: other Ray clusters may run here):
        every process whose command line names this cluster's temp dir, and their children."""
        import psutil
        self.rt.shutdown()
        ours = [p for p in psutil.process_iter(["cmdline"]) if any(self.tmp in a for a in (p.info["cmdline"] or []))]
        family = {p.pid: p for p in ours}
        for p in ours:
            try:
                family.update({c.pid: c for c in p.children(recursive=True)})
            except psutil.Error:
                pass
        for p in family.values():
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(list(family.values()), timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _wait(cond: Callable[[], Any], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --- rows -------------------------------------------------------------------------------------
def _reader(rt: Any) -> Any:
    @rt.remote(num_cpus=0)
    def read(boxed: list) -> tuple[float, float, int]:
        start = time.time()
        values = rt.get(boxed)
        end = time.time()
        return start, end, int(sum(int(v[-1]) for v in values))
    return read


def cross_node_rows(rt: Any, size: int, repeat: int) -> dict[str, Any]:
    read = _reader(rt)
    source = np.full(size, 7, dtype=np.uint8)
    rt.get(read.options(resources={"n1": 1}).remote([rt.put(np.zeros(8, dtype=np.uint8))]))  # warm
    times = []
    for _ in range(repeat):
        ref = rt.put(source)
        start, end, last = rt.get(read.options(resources={"n1": 1}).remote([ref]))
        assert last == 7
        times.append(end - start)
        del ref
        time.sleep(0.5)  # the frees reach every node
    return {"cross_node_get_first_gb_s": size / times[0] / GB,
            "cross_node_get_median_gb_s": size / statistics.median(times[1:] or times) / GB,
            "cross_node_get_s": times}


def many_small_row(rt: Any, count: int) -> dict[str, Any]:
    read = _reader(rt)
    refs = [rt.put(np.full(MiB, i % 250, dtype=np.uint8)) for i in range(count)]
    start, end, total = rt.get(read.options(resources={"n1": 1}).remote(refs))
    assert total == sum(i % 250 for i in range(count))
    return {"many_small_gb_s": count * MiB / (end - start) / GB, "many_small_s": end - start}


def broadcast_row(rt: Any, size: int, nodes: int) -> dict[str, Any]:
    read = _reader(rt)
    for i in range(1, nodes + 1):  # every node's worker is up
        rt.get(read.options(resources={f"n{i}": 1}).remote([rt.put(np.zeros(8, dtype=np.uint8))]))
    ref = rt.put(np.full(size, 3, dtype=np.uint8))
    start, end, _ = rt.get(read.options(resources={"n1": 1}).remote([ref]))
    single_s = end - start
    ref2 = rt.put(np.full(size, 5, dtype=np.uint8))
    results = rt.get([read.options(resources={f"n{i}": 1}).remote([ref2]) for i in range(1, nodes + 1)])
    assert all(r[2] == 5 for r in results)
    took_s = max(r[1] for r in results) - min(r[0] for r in results)
    return {"broadcast_s": took_s, "broadcast_single_s": single_s, "broadcast_ratio": took_s / single_s}


# --- driver -----------------------------------------------------------------------------------
def _tls_env() -> tuple[dict[str, str], str]:
    import trustme
    from ember.shells.wire import tls
    directory = tempfile.mkdtemp(prefix="ember-tls-")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    env = {tls.ENV_CERT: os.path.join(directory, "node.pem"), tls.ENV_KEY: os.path.join(directory, "node.key"),
           tls.ENV_CA: os.path.join(directory, "ca.pem")}
    cert.private_key_and_cert_chain_pem.write_to_path(env[tls.ENV_CERT])
    cert.private_key_pem.write_to_path(env[tls.ENV_KEY])
    ca.cert_pem.write_to_path(env[tls.ENV_CA])
    return env, directory


def run(args: argparse.Namespace) -> dict[str, Any]:
    size = args.size_mib * MiB
    result: dict[str, Any] = {"runtime": args.runtime, "tls": args.tls, "size_bytes": size}
    make = RayCluster if args.runtime == "ray" else EmberCluster
    store = max(5 * size, 2 * args.small * MiB, 3 * args.broadcast_mib * MiB) + 256 * MiB
    if args.size_mib:
        cluster = make(2, store)
        try:
            result.update(cross_node_rows(cluster.rt, size, args.repeat))
            if args.small:
                result.update(many_small_row(cluster.rt, args.small))
        finally:
            cluster.close()
    if args.broadcast_nodes:
        cluster = make(args.broadcast_nodes + 1, 3 * args.broadcast_mib * MiB + 256 * MiB)
        try:
            result.update(broadcast_row(cluster.rt, args.broadcast_mib * MiB, args.broadcast_nodes))
        finally:
            cluster.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--broadcast-mib", type=int, default=512)
    p.add_argument("--broadcast-nodes", type=int, default=8)
    p.add_argument("--runtime", choices=("ember", "ray"), default="ember")
    p.add_argument("--ray-python", default=os.path.join(HERE, ".ray-venv", "bin", "python"))
    p.add_argument("--tls", action="store_true")
    p.add_argument("--no-limits", action="store_true")
    p.add_argument("--json", dest="json_path", default=None)
    args = p.parse_args(argv)
    if args.runtime == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:  # run in the Ray venv
            return subprocess.call([args.ray_python, __file__, *(argv if argv is not None else sys.argv[1:])])
    limits: dict[str, float] = {}
    if not args.no_limits:
        import machine_limits as L
        limits = {"tcp_loopback_gb_s": max(L.tcp_loopback_gb_s(1 << 30) for _ in range(3)),
                  "shm_first_touch_gb_s": L.shm_first_touch_gb_s(1 << 30),
                  "memcpy_gb_s": L.memcpy_gb_s(1 << 30)}
    tls_dir = ""
    if args.tls:
        env, tls_dir = _tls_env()
        os.environ.update(env)
    try:
        result = run(args)
    finally:
        if tls_dir:
            shutil.rmtree(tls_dir, ignore_errors=True)
    result["limits"] = limits
    if limits and "cross_node_get_median_gb_s" in result:
        result["cross_node_get_vs_loopback"] = result["cross_node_get_median_gb_s"] / limits["tcp_loopback_gb_s"]
    for key, value in result.items():
        print(f"{key:<32} {value}")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
