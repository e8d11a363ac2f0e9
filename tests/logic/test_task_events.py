"""ember.logic.control.task_events: folding task events into one record per attempt."""
from ember.logic import task_states as ts
from ember.logic.control.task_events import TaskEventTable

J = b"job1"


def _entry(task, states, fields=None, attempt=0):
    return [task, attempt, states, fields]


def test_events_fold_into_one_record_and_a_terminal_state_wins():
    t = TaskEventTable()
    t.add_events(J, [_entry(b"t1", {ts.PENDING_NODE_ASSIGNMENT: 1.0, ts.FINISHED: 3.0}, {"name": "f"})])
    t.add_events(b"other-job", [_entry(b"t1", {ts.RUNNING: 2.0}, {"worker_pid": 42, "job_id": J})])
    (rec,) = t.query()
    assert rec["state"] == "FINISHED" and rec["worker_pid"] == 42 and rec["name"] == "f"
    assert rec["job_id"] == J and set(rec["events"]) == {"PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED"}
    t.check_invariants()


def test_attempts_are_separate_records_and_filters_apply():
    t = TaskEventTable()
    t.add_events(J, [_entry(b"t1", {ts.FAILED: 1.0}, {"name": "f", "error_type": "WorkerCrashedError"}),
                     _entry(b"t1", {ts.FINISHED: 2.0}, {"name": "f"}, attempt=1)])
    assert [r["attempt_number"] for r in t.query()] == [0, 1]
    assert [r["attempt_number"] for r in t.query([("state", "=", "failed")])] == [0]
    assert t.summarize()["f"]["state_counts"] == {"FAILED": 1, "FINISHED": 1}


def test_the_window_is_bounded_per_job_dropping_finished_records_first():
    t = TaskEventTable(max_tasks_per_job=3)
    t.add_events(J, [_entry(bytes([i]), {ts.RUNNING: float(i)}) for i in range(3)])
    t.add_events(J, [_entry(b"\x09", {ts.FINISHED: 9.0})])
    t.add_events(J, [_entry(b"\x0a", {ts.RUNNING: 10.0})], dropped_at_source=5)
    assert len(t.query()) == 3
    assert b"\x09" not in {r["task_id"] for r in t.query()}   # the finished one went first
    assert t.total_dropped() == 5 + 2
    t.check_invariants()


def test_malformed_entries_are_skipped():
    t = TaskEventTable()
    t.add_events(J, [["not", "an", "entry"], _entry(b"t", {99: 1.0}), _entry(b"t2", {ts.RUNNING: "x"}),
                     _entry(b"t3", {ts.RUNNING: 1.0}, "not a dict")])
    assert [r["task_id"] for r in t.query() if r["state"] != "NIL"] == [b"t3"]


def test_a_flat_batch_folds_like_grouped_entries():
    """Workers send one event per state change with shared fields by key (shells/worker/task_events.py)."""
    from ember.logic.control.task_events import TaskEventTable
    t = TaskEventTable(10)
    fields = {"name": "f", "func_or_class_name": "f"}
    t.add_flat_batch(J, {7: fields}, [[b"t1", 0, ts.PENDING_NODE_ASSIGNMENT, 1.0, 7],
                                      [b"t1", 0, ts.FINISHED, 3.0, -1], "garbage", [b"t2", 0, ts.RUNNING, 2.0, 99]])
    t.add_flat_batch(J, None, [[b"t1", 0, ts.RUNNING, 2.0, -1]], dropped_at_source=2)
    recs = {r["task_id"]: r for r in t.query()}
    assert recs[b"t1"]["state"] == "FINISHED" and recs[b"t1"]["name"] == "f"
    assert set(recs[b"t1"]["events"]) == {"PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED"}
    assert recs[b"t2"]["state"] == "RUNNING" and "name" not in recs[b"t2"]   # an unknown key: no fields
    assert t.total_dropped() == 2
    t.check_invariants()
