"""CPU cost of one ember RPC round trip (request + reply through ``rpc.Connection``), client
and server together, in microseconds of CPU time per round trip.

CPU time (not wall time) so that the figure holds on a loaded machine.  Two patterns:
``sync`` (one request in flight: one record per message) and ``batch`` (100 requests issued
per loop tick: the writes of a tick share one record).  Run it against another checkout
with PYTHONPATH to compare; set EMBER_TLS_CERT/KEY[/CA] to measure TLS.

    python benchmarks/wire_cost.py [--rounds 5] [--n 3000]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time

import psutil

from ember.protocol import messages as m
from ember.shells.wire import rpc

TOKEN = b"bench-token"


class _Echo:
    def handle_message(self, conn, kind, request_id, msg):
        conn.reply(request_id, msg)

    def connection_lost(self, conn):
        pass


def _server(port_q: "mp.Queue[int]") -> None:
    rpc.install_uvloop()

    async def main() -> None:
        server = await rpc.serve(_Echo(), "127.0.0.1", 0, TOKEN)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def _measure(port: int, server_pid: int, n: int, pattern: str) -> float:
    conn = await rpc.connect(f"127.0.0.1:{port}", TOKEN, _Echo(), "bench")
    msg = m.KvGet("ns", b"k" * 20)
    for _ in range(200):
        await conn.request(msg)
    server = psutil.Process(server_pid)
    s0 = sum(server.cpu_times()[:2])
    c0 = time.process_time()
    if pattern == "sync":
        for _ in range(n):
            await conn.request(msg)
    else:
        for _ in range(n // 100):
            await asyncio.gather(*[conn.request_future(msg) for _ in range(100)])
    cpu = time.process_time() - c0 + sum(server.cpu_times()[:2]) - s0
    conn.close()
    return cpu / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    q: "mp.Queue[int]" = mp.Queue()
    proc = mp.Process(target=_server, args=(q,), daemon=True)
    proc.start()
    port = q.get(timeout=30)
    rpc.install_uvloop()
    out = {}
    try:
        for pattern in ("sync", "batch"):
            runs = [asyncio.run(_measure(port, proc.pid, args.n, pattern)) for _ in range(args.rounds)]
            out[pattern] = round(statistics.median(runs), 2)
    finally:
        proc.kill()
    print(json.dumps({"cpu_us_per_round_trip": out}))


if __name__ == "__main__":
    main()
