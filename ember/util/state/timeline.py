"""``ember.timeline()`` / ``ember timeline``: the tasks as Chrome trace events (Perfetto, chrome://tracing).

Built from the task events the control store keeps (``list_tasks``): one process row per node,
one thread row per worker (named by worker id and pid), one complete slice ("ph": "X") per task
attempt that ran, from RUNNING to FINISHED/FAILED, named by the function (or ``Class.method``)
with the task's ids and outcome in ``args``.  Argument sizes are not recorded by task events,
so they are not in ``args``.
"""
from __future__ import annotations

import json
from typing import Any, Optional


def chrome_trace(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trace events (a JSON array) from ``list_tasks(detail=True)`` rows.  Plain code."""
    node_pids: dict[str, int] = {}
    threads: dict[tuple[int, int], str] = {}
    events: list[dict[str, Any]] = []
    for t in sorted(tasks, key=lambda r: r.get("start_time_us") or 0):
        start_us, end_us = t.get("start_time_us"), t.get("end_time_us")
        if not start_us:
            continue   # never ran: nothing to draw
        node = t.get("node_id") or "unknown"
        pid = node_pids.setdefault(node, len(node_pids) + 1)
        tid = int(t.get("worker_pid") or 0)
        threads.setdefault((pid, tid), f"worker {str(t.get('worker_id') or '?')[:8]} (pid {tid})")
        is_failed = t.get("state") == "FAILED"
        events.append({
            "cat": "actor_task" if t.get("type") == "ACTOR_TASK" else "task",
            "name": t.get("func_or_class_name") or t.get("name") or "task",
            "ph": "X", "pid": pid, "tid": tid, "ts": start_us,
            "dur": max(0, (end_us or start_us) - start_us),
            "cname": "terrible" if is_failed else ("generic_work" if end_us else "thread_state_running"),
            "args": {k: t.get(k) for k in ("task_id", "attempt_number", "state", "job_id", "actor_id", "worker_id",
                                           "node_id", "error_type", "error_message") if t.get(k) is not None},
        })
    meta: list[dict[str, Any]] = []
    for node, pid in node_pids.items():
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"node {node[:12]}"}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
    for (pid, tid), name in threads.items():
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
    return meta + events


def timeline(filename: Optional[str] = None) -> Optional[list[dict[str, Any]]]:
    """Ray's ``ray.timeline``: write the trace to ``filename``, or return it when none is given."""
    return trace_of_cluster(filename, None)


def trace_of_cluster(filename: Optional[str], address: Optional[str]) -> Optional[list[dict[str, Any]]]:
    from ember.util.state import list_tasks
    trace = chrome_trace(list_tasks(address=address, limit=0, detail=True))
    if filename is None:
        return trace
    with open(filename, "w") as f:
        json.dump(trace, f)
    return None
