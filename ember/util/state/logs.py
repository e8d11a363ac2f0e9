"""Ray's ``list_logs`` and ``get_log``: the files of a node's ``logs/`` directory, read through its daemon.

A worker's output is ``worker-<worker id>.out`` / ``.err`` on its node; an actor id, a task id or
a pid leads to that file (the actor's or task's row names its node and worker).  Without a node,
the head node is meant (Ray's default).  ``follow=True`` keeps reading what the file gains
(every ``_interval`` seconds) until the caller stops iterating.
"""
from __future__ import annotations

import fnmatch
import time
from typing import Iterator, Optional

from ember.protocol import messages as m
from ember.util.state import _client
from ember.util.state._fanout import node_workers

DEFAULT_TIMEOUT = 30
_CHUNK_BYTES = 1024 * 1024
_CATEGORIES = (("worker-*.out", "worker_out"), ("worker-*.err", "worker_err"), ("node_daemon*", "node_daemon"),
               ("control_store*", "control_store"), ("zygote*", "zygote"), ("job*", "jobs"),
               ("autoscaler*", "autoscaler"))


def _category(name: str) -> str:
    for pattern, category in _CATEGORIES:
        if fnmatch.fnmatchcase(name, pattern):
            return category
    return "internal"


async def _node_address(cluster: _client.Cluster, node_id: Optional[str], node_ip: Optional[str]) -> tuple[str, str]:
    """(node daemon address, node id hex) of the node meant: by id, by ip, else the head."""
    nodes = await cluster.alive_nodes()
    for n in nodes:
        host = n.address.rpartition(":")[0]
        if (node_id and n.node_id.hex() == node_id) or (not node_id and node_ip and host == node_ip) or (
                not node_id and not node_ip and n.is_head):
            return n.address, n.node_id.hex()
    what = f"node id {node_id}" if node_id else (f"node ip {node_ip}" if node_ip else "a head node")
    raise ValueError(f"no live node with {what} in the cluster")


def list_logs(address: Optional[str] = None, node_id: Optional[str] = None, node_ip: Optional[str] = None,
              glob_filter: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT, detail: bool = False,
              raise_on_missing_output: bool = True, _interval: Optional[float] = None) -> dict[str, list[str]]:
    """The log files of one node (the head by default) by category, e.g. ``{"worker_out": [...]}``."""
    async def work(cluster: _client.Cluster) -> dict[str, list[str]]:
        node_address, _ = await _node_address(cluster, node_id, node_ip)
        reply = await cluster.ask_node(node_address, m.ListLogFiles(glob_filter or "*"))
        out: dict[str, list[str]] = {}
        for name, _size in reply.files:
            out.setdefault(_category(name), []).append(name)
        return out
    return _client.run(work, address, timeout)


async def _resolve(cluster: _client.Cluster, node_id: Optional[str], node_ip: Optional[str],
                   filename: Optional[str], actor_id: Optional[str], task_id: Optional[str], pid: Optional[int],
                   suffix: str) -> tuple[str, str]:
    """(node daemon address, file name) of the log meant."""
    if filename:
        address, _ = await _node_address(cluster, node_id, node_ip)
        return address, filename
    worker_id = None
    if actor_id:
        rows = (await cluster.ask_gcs(m.ListActors([["actor_id", "=", actor_id]], 1))).actors
        if not rows:
            raise ValueError(f"no actor with id {actor_id}")
        node_id, worker_id = rows[0].get("node_id"), rows[0].get("worker_id")
        if not worker_id:
            raise ValueError(f"actor {actor_id} has no worker (yet): its state is {rows[0].get('state')}")
    elif task_id:
        rows = (await cluster.ask_gcs(m.ListTasks([["task_id", "=", task_id]], 0))).tasks
        rows = [r for r in rows if r.get("worker_id")]
        if not rows:
            raise ValueError(f"no task with id {task_id} has run on a worker (yet)")
        node_id, worker_id = rows[-1].get("node_id"), rows[-1].get("worker_id")
    elif pid is not None:
        _, node_id = await _node_address(cluster, node_id, node_ip)
        workers, _ = await node_workers(cluster, {node_id})
        match = [w for w in workers if w["pid"] == int(pid) and w.get("worker_id")]
        if not match:
            raise ValueError(f"no worker with pid {pid} on node {node_id}")
        worker_id = match[0]["worker_id"]
    else:
        raise ValueError("get_log needs one of filename, actor_id, task_id or pid")
    address, _ = await _node_address(cluster, node_id, None)
    return address, f"worker-{worker_id}.{suffix}"


def _read(address: Optional[str], timeout: float, target: list, offset: int, tail: int) -> m.LogChunk:
    async def work(cluster: _client.Cluster) -> m.LogChunk:
        return await cluster.ask_node(target[0], m.ReadLogFile(target[1], offset, _CHUNK_BYTES, tail))
    return _client.run(work, address, timeout)


def get_log(address: Optional[str] = None, node_id: Optional[str] = None, node_ip: Optional[str] = None,
            filename: Optional[str] = None, actor_id: Optional[str] = None, task_id: Optional[str] = None,
            pid: Optional[int] = None, follow: bool = False, tail: int = 1000, timeout: int = DEFAULT_TIMEOUT,
            suffix: str = "out", encoding: Optional[str] = "utf-8", errors: Optional[str] = "strict",
            submission_id: Optional[str] = None, attempt_number: int = 0,
            _interval: Optional[float] = None) -> Iterator[str]:
    """The lines of one log file (without their line ends): the last ``tail`` ones (-1: all), then,
    with ``follow``, each new one as it comes."""
    if suffix not in ("out", "err"):
        raise ValueError(f"suffix must be 'out' or 'err', got {suffix!r}")
    if submission_id is not None:
        raise ValueError("submission_id: use `ember job logs` (JobSubmissionClient.get_job_logs) for job logs")

    async def resolve(cluster: _client.Cluster) -> tuple[str, str]:
        return await _resolve(cluster, node_id, node_ip, filename, actor_id, task_id, pid, suffix)
    target = list(_client.run(resolve, address, timeout))
    chunk = _read(address, timeout, target, -1, tail)
    offset, partial = chunk.offset, b""
    lines = chunk.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        yield line.decode(encoding or "utf-8", errors or "strict")
    while follow:
        time.sleep(_interval or 0.5)
        chunk = _read(address, timeout, target, offset, 0)
        offset = chunk.offset
        *complete, partial = (partial + chunk.data).split(b"\n")
        for line in complete:
            yield line.decode(encoding or "utf-8", errors or "strict")


__all__ = ["list_logs", "get_log"]
