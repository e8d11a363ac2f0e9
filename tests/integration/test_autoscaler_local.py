"""The autoscaler end to end with the `local` provider: real node daemons launched and terminated."""
from __future__ import annotations

import json
import os
import time

import pytest

from cli_harness import CliHarness, free_port

pytestmark = pytest.mark.timeout(300)

CONFIG = """\
cluster_name: {name}
max_workers: 3
upscaling_speed: 1.0
idle_timeout_minutes: {idle}
provider: {{type: local}}
available_node_types:
  head: {{resources: {{CPU: 1}}, max_workers: 0}}
  cpu2: {{resources: {{CPU: 2}}, min_workers: 0, max_workers: 3, cost_per_hour: 1.5}}
head_node_type: head
budget: {budget}
"""


def _wait(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _workers(harness: CliHarness) -> dict:
    current = harness.current_cluster()
    try:
        with open(os.path.join(current["session_dir"], "autoscaler_nodes.json")) as f:
            return json.load(f)
    except (OSError, TypeError, ValueError):
        return {}


def _up(harness: CliHarness, tmp_path, name: str, idle: float, budget: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(CONFIG.format(name=name, idle=idle, budget=budget))
    done = harness.ember("up", str(path), "--yes", "--port", str(free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    return str(path)


def _down(harness: CliHarness, path: str) -> None:
    done = harness.ember("down", path)
    assert done.returncode == 0, done.stdout + done.stderr
    _wait(lambda: not harness.processes(), 30, "every process of the cluster to exit")


BURST = """
import time, ember
ember.init(address="auto")
head = ember.get_runtime_context().get_node_id()
@ember.remote(num_cpus=1)
def f():
    time.sleep(2)
    return ember.get_runtime_context().get_node_id()
nodes = ember.get([f.remote() for _ in range(6)], timeout=120)
print("OTHER_NODES", len(set(nodes) - {head}))
"""


def test_burst_scales_up_runs_there_and_scales_down_when_idle(tmp_path):
    harness = CliHarness(str(tmp_path / "root"))
    path = _up(harness, tmp_path, "burst", idle=0.05, budget="{max_cost_per_hour: 10}")
    try:
        assert _workers(harness) == {}, "from zero workers"
        done = harness.python(BURST, timeout_s=180)
        assert done.returncode == 0, done.stdout + done.stderr
        other = int(done.stdout.split("OTHER_NODES")[1].split()[0])
        assert other >= 1, done.stdout
        status = harness.ember("status")
        assert "Autoscaler (cluster burst)" in status.stdout and "cpu2" in status.stdout, status.stdout
        _wait(lambda: _workers(harness) == {}, 90, "idle worker nodes to be terminated")
        log = open(os.path.join(harness.current_cluster()["session_dir"], "logs", "autoscaler.err")).read()
        assert "launching a cpu2 node" in log and "): idle" in log, log
    finally:
        _down(harness, path)


HOLD = """
import time, ember
from ember.autoscaler.sdk import request_resources
ember.init(address="auto")
request_resources(bundles=[{"CPU": 2}] * 3)

@ember.remote(resources={"TPU": 1})
def never():
    return 1

ref = never.remote()
time.sleep(8)
print("done")
"""


def test_budget_cap_stops_launches_and_infeasible_shape_launches_nothing(tmp_path):
    harness = CliHarness(str(tmp_path / "root"))
    path = _up(harness, tmp_path, "capped", idle=10, budget="{max_cost_per_hour: 2.0}")
    try:
        done = harness.python(HOLD, timeout_s=120)
        assert done.returncode == 0, done.stdout + done.stderr
        def budget_message():
            out = harness.ember("status").stdout
            return out if "over budget" in out else None
        status = _wait(budget_message, 60, "the budget message in ember status")
        assert "(would cost $1.50/h)" in status and "rate $1.50/h (max $2.00/h)" in status, status
        # the budget allowed one $1.50 node of the three requested; the TPU task launched nothing
        assert len(_workers(harness)) == 1
        types = [w["tags"]["ember-node-type"] for w in _workers(harness).values()]
        assert types == ["cpu2"]
        log = open(os.path.join(harness.current_cluster()["session_dir"], "logs", "autoscaler.err")).read()
        assert "'TPU': 1.0}: infeasible" in log, log
        # the spend is exported by the head's Prometheus endpoint too
        session_dir = harness.current_cluster()["session_dir"]
        with open(os.path.join(session_dir, "metrics", "head.json")) as f:
            address = json.load(f)["address"]
        with open(os.path.join(session_dir, "token")) as f:
            token = f.read().strip()
        import urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        req = urllib.request.Request(f"http://{address}/metrics", headers={"Authorization": "Bearer " + token})
        text = urllib.request.urlopen(req, timeout=30).read().decode()
        values = {(s.name, s.labels.get("NodeType"), s.labels.get("State")): s.value
                  for fam in text_string_to_metric_families(text) for s in fam.samples
                  if s.name.startswith("ember_autoscaler_")}
        assert values[("ember_autoscaler_cost_per_hour", None, None)] == 1.5, values
        assert values[("ember_autoscaler_max_cost_per_hour", None, None)] == 2.0
        assert values[("ember_autoscaler_waiting_shapes", None, None)] >= 1
        # exec / submit run on the head, which for `local` is this machine, aimed at this cluster
        done = harness.ember("exec", path, 'test -n "$EMBER_ADDRESS" && exit 3')
        assert done.returncode == 3, done.stdout + done.stderr
        script = tmp_path / "count.py"
        script.write_text("import sys, ember\nember.init(address='auto')\n"
                          "print('ALIVE', len([n for n in ember.nodes() if n['Alive']]), sys.argv[1])\n")
        done = harness.ember("submit", path, str(script), "--flag")
        assert done.returncode == 0 and "ALIVE 2 --flag" in done.stdout, done.stdout + done.stderr
    finally:
        _down(harness, path)


def test_bad_config_is_refused_with_line_and_field(tmp_path):
    harness = CliHarness(str(tmp_path / "root"))
    path = tmp_path / "bad.yaml"
    path.write_text(CONFIG.format(name="bad", idle=1, budget="{max_cost_per_hour: -1}"))
    done = harness.ember("up", str(path), "--yes")
    assert done.returncode != 0
    assert "line 10: budget.max_cost_per_hour: expected a number >= 0" in done.stderr, done.stderr
    assert not harness.processes()


SPREAD = """
import ember
from ember.util.placement_group import placement_group, placement_group_table
ember.init(address="auto")
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
assert pg.wait(timeout_seconds=120), "the group was never placed"
nodes = placement_group_table(pg)["bundles_to_node_id"]
print("DISTINCT_NODES", len(set(nodes.values())))
"""


def test_strict_spread_placement_group_launches_a_node_per_bundle(tmp_path):
    harness = CliHarness(str(tmp_path / "root"))
    path = _up(harness, tmp_path, "spread", idle=10, budget="{max_cost_per_hour: 10}")
    try:
        done = harness.python(SPREAD, timeout_s=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "DISTINCT_NODES 3" in done.stdout, done.stdout
        # one bundle fits the head's CPU; the other two needed a new node each
        assert len(_workers(harness)) == 2, _workers(harness)
    finally:
        _down(harness, path)
