"""The control store's window of task events, without I/O (the data behind ``list_tasks``).

Owners and executors record each task's state changes in a local buffer and flush them in
batches (``shells/worker/task_events.py``); this table folds the events into one record per
task attempt.

Rule 1: a record is keyed by (task id, attempt); each event sets the state it names, the time
        it entered that state, and any fields it carries (name, node, worker, error...).  A
        later event never moves a record back: a terminal state (FINISHED, FAILED) wins over
        any event that arrives after it (owners and executors flush independently).
Rule 2: the window is bounded per job (``max_tasks_per_job``): when a job's records pass it,
        its oldest records go, finished ones first, and the job's ``dropped`` count grows.
        Events a worker could not buffer arrive as a count and add to ``dropped`` too.
Rule 3: queries filter on any field with Ray's predicates ("=", "!="), sort by the time
        the task was first seen, and stop at ``limit``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable, Optional

from ember.logic.state_filters import matches
from ember.logic.task_states import STATES

TERMINAL = frozenset({"FINISHED", "FAILED"})
FLAT_BATCH = 2   # first element of a flat batch: [FLAT_BATCH, {fields key: fields}, [[task, attempt, state, t, key]]]
_RANK = {s: i for i, s in enumerate(STATES)}
# Fields an event may carry, as Ray's TaskState names them.
FIELDS = ("name", "func_or_class_name", "type", "job_id", "actor_id", "node_id", "worker_id",
          "worker_pid", "error_type", "error_message", "parent_task_id", "required_resources")


class TaskEventTable:
    def __init__(self, max_tasks_per_job: int = 100_000) -> None:
        self.max_tasks_per_job = max(1, max_tasks_per_job)
        self._jobs: dict[bytes, "OrderedDict[tuple[bytes, int], dict[str, Any]]"] = {}
        self._job_of: dict[tuple[bytes, int], bytes] = {}   # a record stays in the job it was first seen in
        self.dropped: dict[bytes, int] = {}

    def add_events(self, job_id: bytes, entries: Iterable[list], dropped_at_source: int = 0) -> None:
        """Rule 1 and 2. Each entry is [task_id, attempt, {state code: time_s}, fields or None, more fields...]:
        what one process saw of one task attempt since its last batch.  An entry's own ``job_id``
        field wins over the batch's (a worker reports tasks of the job it serves)."""
        if dropped_at_source:
            self.dropped[job_id] = self.dropped.get(job_id, 0) + dropped_at_source
        touched = set()
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) >= 4 and isinstance(entry[2], dict)):
                continue   # not an entry: bad input from a peer is skipped
            fields: dict = {}
            for more in entry[3:]:
                if isinstance(more, dict):
                    fields.update(more)
            self._fold(job_id, entry[0], entry[1], entry[2], fields, touched)
        for event_job in touched:
            self._trim(event_job, self._jobs[event_job])

    def add_flat_batch(self, job_id: bytes, table: Any, events: Iterable[Any], dropped_at_source: int = 0) -> None:
        """Rules 1 and 2 for a flat batch: one event per state change, ``[task_id, attempt, state code,
        time_s, fields key]``, the fields (shared by many events) in ``table`` by key (-1: none)."""
        if dropped_at_source:
            self.dropped[job_id] = self.dropped.get(job_id, 0) + dropped_at_source
        table = table if isinstance(table, dict) else {}
        touched: set = set()
        for ev in events:
            if not (isinstance(ev, (list, tuple)) and len(ev) == 5):
                continue   # not an event: bad input from a peer is skipped
            fields = table.get(ev[4])
            self._fold(job_id, ev[0], ev[1], {ev[2]: ev[3]}, fields if isinstance(fields, dict) else None, touched)
        for event_job in touched:
            self._trim(event_job, self._jobs[event_job])

    def _fold(self, job_id: bytes, task_id: bytes, attempt: int, states: dict, fields: Optional[dict],
              touched: set) -> None:
        for code, time_s in sorted(states.items(), key=lambda kv: kv[1]):
            if not (isinstance(code, int) and 0 <= code < len(STATES)) or not isinstance(time_s, (int, float)):
                continue
            state = STATES[code]
            key = (task_id, attempt)
            event_job = self._job_of.get(key) or (fields or {}).get("job_id") or job_id
            records = self._jobs.setdefault(event_job, OrderedDict())
            touched.add(event_job)
            rec = records.get(key)
            if rec is None:
                rec = records[key] = {"task_id": task_id, "attempt_number": attempt, "state": "NIL",
                                      "job_id": event_job, "events": {}, "first_seen_s": time_s}
                self._job_of[key] = event_job
            rec["events"].setdefault(state, time_s)
            if fields:
                for name, value in fields.items():
                    if name in FIELDS and value is not None:
                        rec[name] = value
            if rec["state"] not in TERMINAL and (_RANK[state] >= _RANK[rec["state"]] or state in TERMINAL):
                rec["state"] = state

    def _trim(self, job_id: bytes, records: "OrderedDict[tuple[bytes, int], dict[str, Any]]") -> None:
        excess = len(records) - self.max_tasks_per_job
        if excess <= 0:
            return
        finished = [k for k, r in records.items() if r["state"] in TERMINAL][:excess]
        for key in finished:
            del records[key]
            del self._job_of[key]
        excess -= len(finished)
        for _ in range(max(0, excess)):
            key, _ = records.popitem(last=False)
            del self._job_of[key]
        self.dropped[job_id] = self.dropped.get(job_id, 0) + len(finished) + max(0, excess)

    def query(self, filters: Iterable[tuple[str, str, Any]] = (), limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Rule 3: records matching every filter, oldest first."""
        preds = list(filters)
        out: list[dict[str, Any]] = []
        for records in self._jobs.values():
            for rec in records.values():
                if all(matches(rec, key, op, value) for key, op, value in preds):
                    out.append(rec)
        out.sort(key=lambda r: r["first_seen_s"])
        return out if limit is None else out[:limit]

    def summarize(self) -> dict[str, dict[str, Any]]:
        """Per function (or actor method) name: the count of tasks in each state."""
        summary: dict[str, dict[str, Any]] = {}
        for records in self._jobs.values():
            for rec in records.values():
                name = rec.get("func_or_class_name") or rec.get("name") or "?"
                entry = summary.setdefault(name, {"func_or_class_name": name, "type": rec.get("type", "NORMAL_TASK"),
                                                  "state_counts": {}})
                counts = entry["state_counts"]
                counts[rec["state"]] = counts.get(rec["state"], 0) + 1
        return summary

    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def check_invariants(self) -> None:
        for records in self._jobs.values():
            assert len(records) <= self.max_tasks_per_job
            for key, rec in records.items():
                assert rec["state"] in _RANK
                assert self._job_of[key] == rec["job_id"]
