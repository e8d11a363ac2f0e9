"""State functions that ask every node daemon: workers, objects, placement groups, actor pids."""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from ember.protocol import messages as m
from ember.util.state._client import Cluster


async def node_workers(cluster: Cluster, node_ids: Optional[set[str]] = None) -> tuple[list[dict], list[str]]:
    """Worker rows of every live node (or of ``node_ids``), and the nodes that did not answer."""
    nodes = [n for n in await cluster.alive_nodes() if node_ids is None or n.node_id.hex() in node_ids]
    answers = await asyncio.gather(*(cluster.ask_node(n.address, m.ListNodeWorkers()) for n in nodes),
                                   return_exceptions=True)
    rows: list[dict] = []
    silent = []
    for node, answer in zip(nodes, answers):
        if isinstance(answer, BaseException):
            silent.append(node.address)
            continue
        rows.extend(answer.workers)
    return rows, silent


async def actor_pids(cluster: Cluster, actors: list[dict]) -> None:
    """Fill ``pid`` of each actor row from its node's worker table (Ray's ActorState.pid)."""
    wanted = {r["node_id"] for r in actors if r.get("worker_id") and r.get("node_id")}
    if not wanted:
        return
    workers, _ = await node_workers(cluster, wanted)
    pids = {w["worker_id"]: w["pid"] for w in workers if w.get("worker_id")}
    for row in actors:
        row["pid"] = pids.get(row.get("worker_id"))


def placement_group_row(info: m.PlacementGroupInfo) -> dict[str, Any]:
    bundles = [{"bundle_id": f"{info.pg_id.hex()}_{i}", "node_id": (node.hex() if node else None),
                "unit_resources": dict(res)}
               for i, (res, node) in enumerate(zip(info.bundles, info.bundle_nodes or [None] * len(info.bundles)))]
    return {"placement_group_id": info.pg_id.hex(), "name": info.name, "creator_job_id": info.job_id.hex(),
            "state": info.state, "is_detached": info.is_detached, "strategy": info.strategy,
            "ray_namespace": info.namespace, "bundles": bundles}


def object_row(row: Any) -> dict[str, Any]:
    """Ray's ObjectState fields from an ``ember memory`` row (plus where the object is)."""
    status = {"PENDING": "PENDING_NODE_ASSIGNMENT", "FAILED": "FAILED"}.get(row.location, "FINISHED")
    return {"object_id": row.object_id, "object_size": row.size_bytes, "task_status": status,
            "reference_type": row.reference_type, "call_site": row.call_site,
            "type": row.kind.upper(), "pid": row.pid, "ip": row.node_address.rpartition(":")[0],
            "location": row.location, "owner_address": row.owner_address, "node_address": row.node_address,
            "store_node_address": row.store_node}


async def object_rows(cluster: Cluster) -> list[dict[str, Any]]:
    from ember.cli.memory import build_report, fetch_memory_info
    answers = await fetch_memory_info(cluster.gcs_address, cluster.token)
    return [object_row(r) for r in build_report(answers).rows]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray's ``summarize_objects`` shape: per call site, counts and sizes."""
    summary: dict[str, dict[str, Any]] = {}
    seen_workers: dict[str, set] = {}
    seen_nodes: dict[str, set] = {}
    for r in rows:
        site = r["call_site"] or "(unknown)"
        e = summary.setdefault(site, {"total_objects": 0, "total_size_mb": 0.0, "total_num_workers": 0,
                                      "total_num_nodes": 0, "task_state_counts": {}, "ref_type_counts": {}})
        e["total_objects"] += 1
        e["total_size_mb"] += r["object_size"] / 1e6
        e["task_state_counts"][r["task_status"]] = e["task_state_counts"].get(r["task_status"], 0) + 1
        e["ref_type_counts"][r["reference_type"]] = e["ref_type_counts"].get(r["reference_type"], 0) + 1
        seen_workers.setdefault(site, set()).add(r["pid"])
        seen_nodes.setdefault(site, set()).add(r["ip"])
    for site, e in summary.items():
        e["total_num_workers"], e["total_num_nodes"] = len(seen_workers[site]), len(seen_nodes[site])
    return {"summary": summary, "total_objects": len(rows),
            "total_size_mb": sum(r["object_size"] for r in rows) / 1e6,
            "callsite_enabled": any(r["call_site"] not in ("(disabled)", "(unknown)", "") for r in rows),
            "summary_by": "callsite"}
