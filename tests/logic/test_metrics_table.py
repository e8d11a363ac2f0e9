"""User metrics folding, the timeline's trace events and the progress-bar lines: plain code, no processes."""
import io
import json

import pytest

from ember.logic.metrics_table import MetricsBuffer, MetricsTable, cumulative_buckets, histogram_count_sum
from ember.shells.worker.progress_bars import MAGIC, BarManager, parse_bar_line
from ember.util.state._fanout import summarize
from ember.util.state.timeline import chrome_trace


def _report(buf):
    return buf.take()


def test_counters_add_gauges_keep_the_last_value_histograms_count_buckets():
    buf = MetricsBuffer()
    buf.record("reqs", "counter", "requests", ("route",), (), ("a",), 2.0)
    buf.record("reqs", "counter", "requests", ("route",), (), ("a",), 3.0)
    buf.record("load", "gauge", "", (), (), (), 5.0)
    buf.record("load", "gauge", "", (), (), (), 7.0)
    for v in (0.05, 0.1, 0.5, 3.0):
        buf.record("lat", "histogram", "", (), (0.1, 1.0), (), v)
    table = MetricsTable()
    table.add_report(_report(buf))
    assert buf.take() == []   # taken: empty until the next record
    buf.record("reqs", "counter", "requests", ("route",), (), ("a",), 1.0)
    table.add_report(_report(buf))   # a second process (or report) adds to the first
    assert table.defs["reqs"].values[("a",)] == 6.0
    assert table.defs["load"].values[()] == 7.0
    data = table.defs["lat"].values[()]
    assert data[:-1] == [2, 1, 1]   # 0.1 is in the le=0.1 bucket (upper bounds are inclusive)
    assert histogram_count_sum(data) == (4.0, pytest.approx(3.65))
    assert cumulative_buckets((0.1, 1.0), data) == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    table.check_invariants()


def test_a_redefinition_or_garbage_is_refused_not_fatal():
    table = MetricsTable()
    table.add_report([["m", "counter", "", [], [], [[[], 1.0]]]])
    table.add_report([["m", "gauge", "", [], [], [[[], 1.0]]]])        # another kind, same name
    table.add_report([["bad name", "counter", "", [], [], []]])       # invalid name
    table.add_report([["x", "histogram", "", [], [1.0], [[[], [1]]]]])  # wrong bucket count
    table.add_report([None, ["too", "short"]])
    assert table.refused == 5
    assert table.defs["m"].values[()] == 1.0
    table.check_invariants()


def _task(name, worker, pid, start_us, end_us, state="FINISHED", node="n1"):
    return {"func_or_class_name": name, "worker_id": worker, "worker_pid": pid, "node_id": node, "state": state,
            "start_time_us": start_us, "end_time_us": end_us, "task_id": name + "-id", "attempt_number": 0,
            "type": "NORMAL_TASK"}


def test_the_timeline_has_a_row_per_worker_and_a_slice_per_task_that_ran():
    trace = chrome_trace([_task("f", "w1", 11, 1000, 3000), _task("g", "w2", 12, 2000, 2500, "FAILED", "n2"),
                          _task("h", "w1", 11, None, None)])   # never ran: no slice
    json.dumps(trace)   # serializable as is
    slices = [e for e in trace if e["ph"] == "X"]
    assert [(s["name"], s["ts"], s["dur"]) for s in slices] == [("f", 1000, 2000), ("g", 2000, 500)]
    assert slices[1]["args"]["state"] == "FAILED"
    threads = {(e["pid"], e["tid"]) for e in trace if e["name"] == "thread_name"}
    assert threads == {(s["pid"], s["tid"]) for s in slices}
    assert len({e["pid"] for e in trace if e["name"] == "process_name"}) == 2


def test_bar_lines_are_recognized_and_drawn_one_line_per_update_off_a_terminal():
    state = {"__magic_token__": MAGIC, "x": 3, "total": 10, "desc": "step", "uuid": "u1", "pid": 5, "ip": "h",
             "closed": False, "unit": "it", "pos": 0}
    line = json.dumps(state)
    assert parse_bar_line(line)["x"] == 3
    assert parse_bar_line('{"x": 3}') is None and parse_bar_line("plain text") is None
    out = io.StringIO()
    bars = BarManager(out)
    bars.update(parse_bar_line(line))
    bars.update(dict(parse_bar_line(line), x=10, closed=True))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "step" in lines[0] and "3/10" in lines[0] and "10/10" in lines[1]
    assert not bars.bars


def test_objects_are_summarized_by_call_site():
    rows = [{"call_site": "a.py:1", "object_size": 2_000_000, "task_status": "FINISHED",
             "reference_type": "LOCAL_REFERENCE", "pid": 1, "ip": "h1"},
            {"call_site": "a.py:1", "object_size": 1_000_000, "task_status": "FINISHED",
             "reference_type": "USED_BY_PENDING_TASK", "pid": 2, "ip": "h1"}]
    out = summarize(rows)
    entry = out["summary"]["a.py:1"]
    assert entry["total_objects"] == 2 and entry["total_size_mb"] == pytest.approx(3.0)
    assert entry["total_num_workers"] == 2 and entry["total_num_nodes"] == 1
    assert out["callsite_enabled"] and out["total_objects"] == 2
