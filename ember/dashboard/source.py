"""Where the dashboard's figures come from: the control store and the node daemons, over ember's RPC.

The job server is a driver, but its core worker runs on another thread; the dashboard keeps
connections of its own on the HTTP server's event loop (one to the control store, one per
node daemon, reopened when lost), as the jobs store does.  Every method returns plain JSON-able
dicts with Ray's field names where Ray's state API has them (ids as hex).
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Optional

from ember.protocol import messages as m
from ember.shells.wire import rpc

log = logging.getLogger("ember.dashboard")
TIMEOUT_S = 10.0
LOG_READ_MAX_BYTES = 256 * 1024


class _NoCalls:
    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: rpc.Connection) -> None:
        return None


def _hex(value: Any) -> Any:
    return value.hex() if isinstance(value, (bytes, bytearray)) else value


class ClusterSource:
    def __init__(self, gcs_address: str, token: bytes, session_dir: str) -> None:
        self.gcs_address = gcs_address
        self.token = token
        self.session_dir = session_dir
        self._conns: dict[str, rpc.Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._head_node_id = ""

    async def _request(self, address: str, msg: Any) -> Any:
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:  # one connection per peer, even when several requests find none
            conn = self._conns.get(address)
            if conn is None or conn.closed:
                conn = self._conns[address] = await rpc.connect(address, self.token, _NoCalls(), "client",
                                                                TIMEOUT_S)
        return await conn.request(msg, timeout_s=TIMEOUT_S)

    async def gcs(self, msg: Any) -> Any:
        return await self._request(self.gcs_address, msg)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    # --- nodes ----------------------------------------------------------------------------------------
    async def nodes(self) -> list[dict]:
        reply = await self.gcs(m.GetNodes())
        rows = []
        for n in reply.nodes:
            if n.is_head:
                self._head_node_id = n.node_id.hex()
            rows.append({"node_id": n.node_id.hex(), "node_ip": n.address.rpartition(":")[0],
                         "address": n.address, "state": "ALIVE" if n.is_alive else "DEAD",
                         "is_head_node": n.is_head, "resources_total": dict(n.resources_total),
                         "resources_available": dict(n.resources_available), "labels": dict(n.labels),
                         "object_store_used_bytes": n.object_store_used_bytes,
                         "object_store_capacity_bytes": n.object_store_capacity_bytes,
                         "pending_demands": len(n.pending_demands or [])})
        return rows

    async def host_stats(self, node: dict, include_workers: bool = True) -> Optional[dict]:
        """The node's machine and workers (``GetHostStats``), or None when it does not answer."""
        if node["state"] != "ALIVE":
            return None
        try:
            s = await self._request(node["address"], m.GetHostStats(include_workers))
        except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError) as exc:
            log.info("node %s did not give its host stats: %s", node["node_id"][:8], exc)
            return None
        return {"cpu_percent": s.cpu_percent, "cpu_count": s.cpu_count, "mem_total_bytes": s.mem_total_bytes,
                "mem_used_bytes": s.mem_used_bytes, "load_avg": list(s.load_avg),
                "daemon": {"pid": s.daemon[0], "cpu_percent": s.daemon[1], "rss_bytes": s.daemon[2]},
                "workers": [{"worker_id": _hex(w[0]), "pid": w[1], "job_id": _hex(w[2]), "cpu_percent": w[3],
                             "rss_bytes": w[4]} for w in s.workers]}

    async def nodes_with_stats(self, include_workers: bool = True) -> list[dict]:
        nodes = await self.nodes()
        stats = await asyncio.gather(*(self.host_stats(n, include_workers) for n in nodes))
        for node, st in zip(nodes, stats):
            node["host"] = st
        return nodes

    # --- actors, tasks, placement groups, drivers ---------------------------------------------------------
    async def actors(self, limit: int = 1000) -> dict:
        reply = await self.gcs(m.ListActors([], limit))
        return {"actors": list(reply.actors), "total": reply.total}

    async def tasks(self, filters: list, limit: int) -> dict:
        reply = await self.gcs(m.ListTasks(filters, limit))
        return {"tasks": list(reply.tasks), "total": reply.total, "dropped": reply.dropped}

    async def task_summary(self) -> dict:
        reply = await self.gcs(m.SummarizeTasks())
        return {"summary": sorted(reply.summary.values(), key=lambda e: e["func_or_class_name"]),
                "dropped": reply.dropped}

    async def placement_groups(self) -> list[dict]:
        reply = await self.gcs(m.ListPlacementGroups())
        return [{"placement_group_id": g.pg_id.hex(), "name": g.name, "ray_namespace": g.namespace,
                 "strategy": g.strategy, "state": g.state, "is_detached": g.is_detached, "job_id": g.job_id.hex(),
                 "bundles": [{"bundle_id": i, "unit_resources": dict(b), "node_id": _hex(node)}
                             for i, (b, node) in enumerate(zip(g.bundles, g.bundle_nodes))]}
                for g in reply.groups]

    async def drivers(self) -> list[dict]:
        reply = await self.gcs(m.GetJobs())
        return [{"job_id": _hex(job_id), "namespace": ns, "driver_pid": pid,
                 "status": "RUNNING" if alive else "FINISHED", "type": "DRIVER"}
                for job_id, ns, pid, alive in reply.jobs]

    # --- logs --------------------------------------------------------------------------------------------
    def _logs_dir(self) -> str:
        return os.path.join(self.session_dir, "logs")

    def log_files(self) -> list[dict]:
        """The head node's log files (name, size), newest first."""
        out = []
        with os.scandir(self._logs_dir()) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append({"name": entry.name, "size_bytes": st.st_size, "mtime_s": st.st_mtime})
        out.sort(key=lambda f: -f["mtime_s"])
        return out

    def read_log(self, name: str, offset: int) -> dict:
        """Up to LOG_READ_MAX_BYTES of one file from ``offset`` (< 0: its last LOG_READ_MAX_BYTES).
        Names only: no directory part, no hidden file, no link followed."""
        if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
            raise ValueError(f"bad log file name {name!r}")
        fd = os.open(os.path.join(self._logs_dir(), name), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - LOG_READ_MAX_BYTES) if offset < 0 else min(offset, size)
            f.seek(start)
            data = f.read(LOG_READ_MAX_BYTES)
        return {"name": name, "offset": start, "next_offset": start + len(data), "size_bytes": size,
                "text": data.decode("utf-8", "replace")}
