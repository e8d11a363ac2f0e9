"""Ray's state API (``ray.util.state``): list, get and summarize what a cluster runs.

Every function asks the control store directly: from a driver it uses the driver's connection,
elsewhere it connects with the address (``address=``, else ``EMBER_ADDRESS``/``RAY_ADDRESS``, else
the cluster recorded on this machine) and the token of the local session files or
``EMBER_CLUSTER_TOKEN``.  Rows are dicts with Ray's field names that also read as attributes
(``row.state``, ``row["state"]``); ids are hex strings.  Filters follow Ray:
``filters=[("state", "=", "ALIVE")]`` with the predicates ``=`` and ``!=``.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ember.logic.state_filters import check_predicate, matches
from ember.protocol import messages as m

DEFAULT_LIMIT = 100
DEFAULT_TIMEOUT = 30
_Filters = Optional[Sequence[tuple[str, str, Any]]]


class StateRow(dict):
    """One row: a dict with Ray's field names, readable as attributes too."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _request(msg: Any, address: Optional[str], timeout: float) -> Any:
    from ember.util.state import _client
    return _client.request(msg, address, timeout)


def _wire_filters(filters: _Filters) -> list:
    out = []
    for f in filters or ():
        if len(f) != 3:
            raise ValueError(f"a filter is (key, predicate, value), got {f!r}")
        key, op, value = f
        check_predicate(op)
        out.append([str(key), op, value])
    return out


_BRIEF_TASK = ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type", "func_or_class_name",
               "parent_task_id", "node_id", "worker_id", "worker_pid", "error_type")
_BRIEF_ACTOR = ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid", "ray_namespace")


def _rows(items: list, detail: bool, brief: tuple) -> list[StateRow]:
    return [StateRow(item if detail else {k: item.get(k) for k in brief}) for item in items]


def list_tasks(address: Optional[str] = None, filters: _Filters = None, limit: int = DEFAULT_LIMIT,
               timeout: int = DEFAULT_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[StateRow]:
    """Tasks (normal tasks and actor calls), one row per attempt, oldest first."""
    reply = _request(m.ListTasks(_wire_filters(filters), int(limit or 0)), address, timeout)
    return _rows(reply.tasks, detail, _BRIEF_TASK)


def get_task(id: str, address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
             _explain: bool = False) -> Optional[StateRow]:
    rows = list_tasks(address, [("task_id", "=", id)], limit=0, timeout=timeout, detail=True)
    return rows[-1] if rows else None


def summarize_tasks(address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    reply = _request(m.SummarizeTasks(), address, timeout)
    return {"cluster": {"summary": reply.summary, "total_tasks": sum(sum(v["state_counts"].values())
                                                                       for v in reply.summary.values()),
                        "dropped_task_events": reply.dropped}}


def list_actors(address: Optional[str] = None, filters: _Filters = None, limit: int = DEFAULT_LIMIT,
                timeout: int = DEFAULT_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False) -> list[StateRow]:
    from ember.util.state import _client, _fanout
    wire = _wire_filters(filters)

    async def work(cluster: _client.Cluster) -> list:
        actors = (await cluster.ask_gcs(m.ListActors(wire, int(limit or 0)))).actors
        await _fanout.actor_pids(cluster, actors)
        return actors
    return _rows(_client.run(work, address, timeout), detail, _BRIEF_ACTOR)


def get_actor(id: str, address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
              _explain: bool = False) -> Optional[StateRow]:
    rows = list_actors(address, [("actor_id", "=", id)], limit=1, timeout=timeout, detail=True)
    return rows[0] if rows else None


def summarize_actors(address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    summary: dict[str, dict] = {}
    for row in list_actors(address, limit=0, timeout=timeout, detail=True):
        entry = summary.setdefault(row["class_name"], {"class_name": row["class_name"], "state_counts": {}})
        entry["state_counts"][row["state"]] = entry["state_counts"].get(row["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_actors": sum(sum(v["state_counts"].values())
                                                                 for v in summary.values())}}


def list_nodes(address: Optional[str] = None, filters: _Filters = None, limit: int = DEFAULT_LIMIT,
               timeout: int = DEFAULT_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[StateRow]:
    reply = _request(m.GetNodes(), address, timeout)
    rows = []
    for n in reply.nodes:
        rows.append(StateRow({"node_id": n.node_id.hex(), "node_ip": n.address.rpartition(":")[0],
                              "state": "ALIVE" if n.is_alive else "DEAD", "is_head_node": n.is_head,
                              "resources_total": dict(n.resources_total), "labels": dict(n.labels),
                              "address": n.address}))
    rows = [r for r in rows if all(matches(r, *f) for f in _wire_filters(filters))]
    return rows[:limit] if limit else rows


def get_node(id: str, address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
             _explain: bool = False) -> Optional[StateRow]:
    rows = list_nodes(address, [("node_id", "=", id)], limit=1, timeout=timeout)
    return rows[0] if rows else None


def list_jobs(address: Optional[str] = None, filters: _Filters = None, limit: int = DEFAULT_LIMIT,
              timeout: int = DEFAULT_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
              _explain: bool = False) -> list[StateRow]:
    reply = _request(m.GetJobs(), address, timeout)
    rows = [StateRow({"job_id": job_id.hex(), "namespace": namespace, "driver_pid": pid,
                      "status": "RUNNING" if alive else "FINISHED", "type": "DRIVER"})
            for job_id, namespace, pid, alive in reply.jobs]
    rows = [r for r in rows if all(matches(r, *f) for f in _wire_filters(filters))]
    return rows[:limit] if limit else rows


def _filtered(rows: list[dict], filters: _Filters, limit: int, detail: bool, brief: tuple) -> list[StateRow]:
    wire = _wire_filters(filters)
    rows = [r for r in rows if all(matches(r, *f) for f in wire)]
    return _rows(rows[:limit] if limit else rows, detail, brief)


_BRIEF_WORKER = ("worker_id", "is_alive", "worker_type", "exit_type", "node_id", "ip", "pid", "exit_detail")
_BRIEF_OBJECT = ("object_id", "object_size", "task_status", "reference_type", "call_site", "type", "pid", "ip")
_BRIEF_PG = ("placement_group_id", "name", "creator_job_id", "state", "is_detached")


def list_workers(address: Optional[str] = None, filters: _Filters = None, limit: int = DEFAULT_LIMIT,
                 timeout: int = DEFAULT_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[StateRow]:
    """Drivers and workers of every live node, live ones and the last ones that exited."""
    from ember.util.state import _client, _fanout

    async def work(cluster: _client.Cluster) -> list:
        rows, _ = await _fanout.node_workers(cluster)
        return rows
    return _filtered(_client.run(work, address, timeout), filters, limit, detail, _BRIEF_WORKER)


def list_objects(address: Optional[str] = None, filters: _Filters = None, limit: int = DEFAULT_LIMIT,
                 timeout: int = DEFAULT_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[StateRow]:
    """One row per (process, object reference) it holds, as ``ember memory`` gathers them."""
    from ember.util.state import _client, _fanout
    return _filtered(_client.run(_fanout.object_rows, address, timeout), filters, limit, detail, _BRIEF_OBJECT)


def summarize_objects(address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
                      raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    from ember.util.state import _client, _fanout
    return {"cluster": _fanout.summarize(_client.run(_fanout.object_rows, address, timeout))}


def list_placement_groups(address: Optional[str] = None, filters: _Filters = None, limit: int = DEFAULT_LIMIT,
                          timeout: int = DEFAULT_TIMEOUT, detail: bool = False, raise_on_missing_output: bool = True,
                          _explain: bool = False) -> list[StateRow]:
    from ember.util.state import _fanout
    reply = _request(m.ListPlacementGroups(), address, timeout)
    return _filtered([_fanout.placement_group_row(g) for g in reply.groups], filters, limit, detail, _BRIEF_PG)


def get_placement_group(id: str, address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
                        _explain: bool = False) -> Optional[StateRow]:
    rows = list_placement_groups(address, [("placement_group_id", "=", id)], limit=1, timeout=timeout, detail=True)
    return rows[0] if rows else None


def get_worker(id: str, address: Optional[str] = None, timeout: int = DEFAULT_TIMEOUT,
               _explain: bool = False) -> Optional[StateRow]:
    rows = list_workers(address, [("worker_id", "=", id)], limit=1, timeout=timeout, detail=True)
    return rows[0] if rows else None


from ember.util.state.logs import get_log, list_logs  # noqa: E402  (they use the helpers above)

__all__ = ["StateRow", "list_tasks", "get_task", "summarize_tasks", "list_actors", "get_actor",
           "summarize_actors", "list_nodes", "get_node", "list_jobs", "list_workers", "get_worker", "list_objects",
           "summarize_objects", "list_placement_groups", "get_placement_group", "list_logs", "get_log"]
