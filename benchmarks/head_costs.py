"""What one message costs the control store (issue #18's projection): a real control store process,
driven by fake node daemons and a fake driver in this process over the real wire.

For each kind the control store's own CPU time (user + system, from /proc through psutil) is read
before and after a batch, so the figure is the head's cost per message, not this client's:

- ``heartbeat (view unchanged)``: a node's heartbeat whose view version is current (empty reply);
- ``heartbeat + view of N nodes``: a heartbeat whose availability changed, so the version moved
  and the reply carries all N nodes' records (what a busy cluster's heartbeats get);
- ``actor create (register -> ALIVE)``: RegisterActor, the head's lease request to a fake node
  daemon, CreateActor, the record persisted and published;
- ``placement group create + remove``: two-phase prepare/commit on a fake node, then removal;
- ``spill decision, N-node view`` (node daemon, logic only, in this process): one lease request
  that ``LeaseManager`` spills, with a view of N nodes.

Run: ``.venv/bin/python benchmarks/head_costs.py [--nodes 1000] [--actors 2000] [--pgs 500]``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

from ember.protocol import messages as m
from ember.protocol.actor_spec import encode_creation_spec
from ember.protocol.codec import KIND_REQUEST
from ember.shells.wire import rpc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeNodes:
    """Answers the control store's requests to node daemons: every lease granted, every actor
    created, every bundle prepared and committed."""

    def __init__(self) -> None:
        self.seq = 0
        self.node_ids: list[bytes] = []

    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        if kind != KIND_REQUEST:
            return
        if isinstance(msg, m.RequestLease):
            self.seq += 1
            node_id = self.node_ids[self.seq % len(self.node_ids)]
            conn.reply(request_id, m.LeaseGranted(b"L%015d" % self.seq, b"W%015d" % self.seq, self.address,
                                                  node_id, [], dict(msg.resources)))
        elif isinstance(msg, m.CreateActor):
            conn.reply(request_id, m.ActorCreationReply(None, ""))
        elif isinstance(msg, m.PrepareBundles):
            conn.reply(request_id, m.BundlesPrepared(True, ""))
        else:
            conn.reply(request_id, m.Ok())

    def connection_lost(self, conn: rpc.Connection) -> None:
        pass


def _info(node_id: bytes, address: str, cpus: float) -> m.NodeInfo:
    return m.NodeInfo(node_id, address, {"CPU": cpus}, {"CPU": cpus}, True, False, "", {}, [], 0, 0, [0, 0.0])


async def _measure(proc: psutil.Process, coro: Any) -> tuple[float, int]:
    c0 = proc.cpu_times()
    t0 = time.perf_counter()
    n = await coro
    wall = time.perf_counter() - t0
    c1 = proc.cpu_times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return cpu / n, n / wall


async def _run(args: argparse.Namespace, gcs: str, token: bytes, proc: psutil.Process) -> list[tuple]:
    fake = FakeNodes()
    server = await rpc.serve(fake, "127.0.0.1", 0, token)
    fake.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    rows: list[tuple] = []
    conns = []
    for i in range(args.conns):
        conns.append(await rpc.connect(gcs, token, fake, "node"))
    ids = [b"N" + i.to_bytes(15, "big") for i in range(args.nodes)]
    fake.node_ids = ids
    version = 0
    for i, node_id in enumerate(ids):
        view = await conns[i % len(conns)].request(m.RegisterNode(_info(node_id, fake.address, 8.0)))
        version = view.version

    async def heartbeats(count: int, changed: bool) -> int:
        nonlocal version
        futs = []
        for k in range(count):
            i = k % args.nodes
            avail = {"CPU": float(k % 8)} if changed else {"CPU": 8.0}
            hb = m.Heartbeat(ids[i], avail, [], 0, -1 if changed else version, [0, 0.0])
            futs.append(conns[i % len(conns)].request_future(hb))
            if len(futs) >= 64:
                for r in await asyncio.gather(*futs):
                    version = max(version, r.version)
                futs = []
        for r in await asyncio.gather(*futs):
            version = max(version, r.version)
        return count

    # settle every node's availability to 8 so that "unchanged" heartbeats move nothing
    await heartbeats(args.nodes, False)
    cost, rate = await _measure(proc, heartbeats(args.heartbeats, False))
    rows.append(("heartbeat (view unchanged)", cost, rate))
    cost, rate = await _measure(proc, heartbeats(max(200, args.heartbeats // 20), True))
    rows.append((f"heartbeat + view of {args.nodes} nodes", cost, rate))

    driver = await rpc.connect(gcs, token, fake, "driver")
    job = await driver.request(m.RegisterJob(fake.address, os.getpid(), "", b"", "bench"))

    async def actors(count: int) -> int:
        futs = []
        for k in range(count):
            aid = secrets.token_bytes(16)
            spec = m.ActorCreationSpec(aid, job.job_id, "", "Bench", b"", [], [], fake.address, fake.address, {},
                                       1, {"class_name": "Bench", "methods": {}}, "", "")
            futs.append(driver.request_future(m.RegisterActor(aid, job.job_id, fake.address, b"w" * 16, "Bench",
                                                              encode_creation_spec(spec), "", "", False, {},
                                                              {"CPU": 1.0}, ["DEFAULT"], 0, False)))
            if len(futs) >= 50:
                await asyncio.gather(*futs)
                futs = []
        await asyncio.gather(*futs)
        await asyncio.sleep(0.5)   # creations finish after the registration replies
        return count

    cost, rate = await _measure(proc, actors(args.actors))
    rows.append(("actor create (register -> ALIVE)", cost, rate))

    async def pgs(count: int) -> int:
        for start in range(0, count, 25):
            batch = [secrets.token_bytes(18) for _ in range(min(25, count - start))]
            await asyncio.gather(*(driver.request(m.CreatePlacementGroup(p, [{"CPU": 1.0}, {"CPU": 1.0}], "SPREAD",
                                                                         "", "", False, job.job_id))
                                   for p in batch))
            await asyncio.gather(*(driver.request(m.RemovePlacementGroup(p)) for p in batch))
        return count

    cost, rate = await _measure(proc, pgs(args.pgs))
    rows.append(("placement group create + remove", cost, rate))
    server.close()
    return rows


def spill_cost(nodes: int, repeat: int = 50, one_free: bool = True) -> float:
    """Seconds of LeaseManager time for one lease request it spills, with a view of ``nodes`` nodes:
    the last node free (``one_free``), or every node busy with requests queued (a saturated cluster)."""
    from ember.logic.node import leases as L
    from ember.logic.resources import ResourceSet
    lm = L.LeaseManager(b"S" * 16, {"CPU": 0.0001})
    free = nodes - 1 if one_free else -1
    view = [L.NodeView(b"N" + i.to_bytes(15, "big"), f"n{i}", ResourceSet({"CPU": 8}),
                       ResourceSet({"CPU": 8 if i == free else 0}), True, {}, 0 if i == free else 2, 0.5)
            for i in range(nodes)]
    lm.on_cluster_view(view)
    t0 = time.perf_counter()
    for k in range(repeat):
        lm.on_lease_requested(L.LeaseRequest(k, "c", b"J", ResourceSet({"CPU": 1}), ["DEFAULT"], False))
        lm.view[view[-1].node_id] = view[-1]   # undo the spill's count so each decision sees the same view
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--conns", type=int, default=50, help="connections the fake nodes share")
    p.add_argument("--heartbeats", type=int, default=20000)
    p.add_argument("--actors", type=int, default=2000)
    p.add_argument("--pgs", type=int, default=500)
    args = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="ember-head-costs-")
    token = secrets.token_hex(16).encode()
    token_file = os.path.join(tmp, "token")
    with open(token_file, "wb") as f:
        f.write(token)
    os.chmod(token_file, 0o600)
    port = _free_port()
    env = dict(os.environ, EMBER_HEARTBEAT_TIMEOUT_S="3600")  # registering many fake nodes takes a while
    gcs = subprocess.Popen([sys.executable, "-m", "ember.shells.control.control_store", "--port", str(port),
                            "--token-file", token_file, "--session-dir", tmp], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, env=env)
    try:
        line = gcs.stdout.readline().decode()
        if not line.startswith("READY"):
            raise SystemExit(f"the control store did not start: {line!r}")
        rows = asyncio.run(_run(args, f"127.0.0.1:{port}", token, psutil.Process(gcs.pid)))
    finally:
        gcs.terminate()
        gcs.wait(timeout=10)
    print(f"control store process, {args.nodes} registered nodes (CPU time of the control store per message):")
    print(f"{'message':42} {'head CPU us/msg':>16} {'msgs/s (wall)':>14} {'saturates at /s':>16}")
    for name, cost, rate in rows:
        print(f"{name:42} {cost * 1e6:16.1f} {rate:14.0f} {1 / cost if cost else float('inf'):16.0f}")
    print("node daemon, logic only (this process):")
    for n in (1000, 5000, 10000):
        for one_free in (True, False):
            c = spill_cost(n, repeat=20, one_free=one_free)
            what = f"spill decision, {n} nodes, {'last one free' if one_free else 'all busy'}"
            print(f"{what:42} {c * 1e6:16.1f} {'':14} {1 / c:16.0f}")


if __name__ == "__main__":
    main()
