"""What durability costs (issue #11): actor creations/s and raw writes/s per storage backend.

Run: ``.venv/bin/python benchmarks/storage_durability.py [--actors N]`` (needs redis-server
for the Redis row: scripts/install_test_deps.sh).  Each backend gets a fresh private cluster.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _actor_rate(url: str, n: int) -> float:
    import ember
    from ember.shells.shared import local_cluster
    cluster = local_cluster.start_head(tied_to_parent=True, storage=url, node_args=["--num-cpus", "4"])
    try:
        from ember.shells.wire import session
        session.write_current_cluster(cluster.gcs_address, cluster.session_dir)
        ember.init(address=cluster.gcs_address)

        @ember.remote(num_cpus=0)
        class A:
            def ping(self) -> int:
                return 1

        warm = [A.remote() for _ in range(4)]
        ember.get([a.ping.remote() for a in warm], timeout=120)
        for a in warm:
            ember.kill(a)
        t0 = time.perf_counter()
        done = 0
        while done < n:  # waves of 10 (a node starts a worker per actor)
            wave = [A.remote() for _ in range(min(10, n - done))]
            ember.get([a.ping.remote() for a in wave], timeout=300)
            for a in wave:
                ember.kill(a)
            done += len(wave)
        return n / (time.perf_counter() - t0)
    finally:
        ember.shutdown()
        local_cluster.stop_cluster(cluster)


def _pg_rate(url: str, n: int) -> float:
    """Placement groups created (waited for) and removed per second, one at a time."""
    import ember
    from ember.shells.shared import local_cluster
    from ember.util.placement_group import placement_group, remove_placement_group
    cluster = local_cluster.start_head(tied_to_parent=True, storage=url, node_args=["--num-cpus", "4"])
    try:
        ember.init(address=cluster.gcs_address)
        t0 = time.perf_counter()
        for _ in range(n):
            pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
            assert pg.wait(60)
            remove_placement_group(pg)
        return n / (time.perf_counter() - t0)
    finally:
        ember.shutdown()
        local_cluster.stop_cluster(cluster)


def _write_rate(url: str, n: int = 2000, fenced: bool = False) -> float:
    """200-byte puts per second; ``fenced``: each conditional on the leader's epoch (docs/head.md)."""
    from ember.logic.control import leadership as L
    from ember.shells.control.storage import open_storage
    from ember.shells.control.storage.fenced import FencedStorage
    s = open_storage(url)
    if fenced:
        s.put(L.TABLE, L.EPOCH_KEY, L.fence_value(7))
        s = FencedStorage(s, 7, lambda: None)
    t0 = time.perf_counter()
    for i in range(n):
        s.put("bench", b"k%d" % i, b"x" * 200)
    rate = n / (time.perf_counter() - t0)
    s.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actors", type=int, default=100)
    parser.add_argument("--pgs", type=int, default=100)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ember-storage-bench-")
    urls = {"memory": "memory://", "sqlite": f"file://{tmp}/state.db"}
    redis = None
    if shutil.which("redis-server"):
        port = _free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                                  "--save", "", "--appendonly", "yes"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        urls["redis"] = f"redis://127.0.0.1:{port}/0"
    try:
        print(f"{'backend':8} {'writes/s':>10} {'fenced/s':>10} {'actors/s':>10} {'PGs/s':>8}")
        for name, url in urls.items():
            writes = _write_rate(url)
            fenced = _write_rate(url, fenced=True)
            actors = _actor_rate(url, args.actors)
            pgs = _pg_rate(url, args.pgs)
            print(f"{name:8} {writes:10.0f} {fenced:10.0f} {actors:10.1f} {pgs:8.1f}", flush=True)
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if "EMBER_TMPDIR" in os.environ:
        main()
    else:  # a session root of its own, removed at the end (the clusters' session directories)
        os.environ["EMBER_TMPDIR"] = tempfile.mkdtemp(prefix="ember-storage-bench-root-")
        try:
            main()
        finally:
            shutil.rmtree(os.environ["EMBER_TMPDIR"], ignore_errors=True)
