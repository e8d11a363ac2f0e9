"""Ray's state API and CLI (issue #14): task events, list/get/summarize, filters."""
import json
import os
import subprocess
import sys
import time

import pytest

import ember
from ember import lifecycle
from ember.util import state

pytestmark = pytest.mark.timeout(120)


@ember.remote
def square(x):
    return x * x


@ember.remote(max_retries=0)
def broken():
    raise KeyError("missing key")


@ember.remote
class Counter:
    def incr(self):
        return 1


def _wait_for_tasks(expected, **kwargs):
    deadline = time.time() + 30
    rows = []
    while time.time() < deadline:
        rows = state.list_tasks(limit=0, **kwargs)
        if expected(rows):
            return rows
        time.sleep(0.3)
    return rows


def test_tasks_and_actor_calls_are_listed_with_rays_fields(cluster):
    ember.get([square.remote(i) for i in range(3)])
    with pytest.raises(KeyError):
        ember.get(broken.remote())
    c = Counter.options(name="state-counter").remote()
    ember.get(c.incr.remote())
    rows = _wait_for_tasks(lambda rs: {"square", "broken", "Counter.incr"} <= {r.name for r in rs}
                           and all(r.state in ("FINISHED", "FAILED") and r.worker_pid for r in rs))
    by_name = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    assert len(by_name["square"]) >= 3 and all(r.state == "FINISHED" for r in by_name["square"])
    assert all(r.type == "NORMAL_TASK" and r.node_id and r.worker_pid for r in by_name["square"])
    failed = by_name["broken"][-1]
    assert failed.state == "FAILED" and failed.error_type == "KeyError"
    assert by_name["Counter.incr"][-1].type == "ACTOR_TASK"
    detail = state.get_task(failed.task_id)
    assert "missing key" in detail["error_message"]
    assert [e["state"] for e in detail["events"]][-1] == "FAILED"
    assert detail["start_time_ms"] <= detail["end_time_ms"]
    only_failed = state.list_tasks(filters=[("state", "=", "FAILED")], limit=0)
    assert only_failed and all(r.state == "FAILED" for r in only_failed)
    summary = state.summarize_tasks()["cluster"]["summary"]
    assert summary["square"]["state_counts"]["FINISHED"] >= 3


def test_actors_nodes_and_jobs(cluster):
    c = Counter.options(name="listed-counter").remote()
    ember.get(c.incr.remote())
    alive = state.list_actors(filters=[("state", "=", "ALIVE")], limit=0)
    mine = [a for a in alive if a.name == "listed-counter"]
    assert mine and mine[0].class_name == "Counter"
    assert state.get_actor(mine[0].actor_id)["state"] == "ALIVE"
    assert state.summarize_actors()["cluster"]["summary"]["Counter"]["state_counts"]["ALIVE"] >= 1
    nodes = state.list_nodes()
    assert len(nodes) == 1 and nodes[0].state == "ALIVE" and nodes[0].resources_total["CPU"] == 2.0
    jobs = state.list_jobs()
    assert any(j.driver_pid == os.getpid() and j.status == "RUNNING" for j in jobs)
    with pytest.raises(ValueError, match="predicate"):
        state.list_actors(filters=[("state", ">", "ALIVE")])


def test_the_cli_lists_gets_and_summarizes(cluster):
    ember.get(square.remote(7))
    _wait_for_tasks(lambda rs: any(r.name == "square" and r.state == "FINISHED" for r in rs))
    cw = lifecycle.core_worker_or_init()
    env = dict(os.environ, EMBER_CLUSTER_TOKEN=lifecycle._local_cluster.token.decode())

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "ember.cli.main", *args, "--address", cw.gcs_address],
                             capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout

    rows = json.loads(cli("list", "tasks", "--filter", "name=square", "--format", "json"))
    assert rows and all(r["name"] == "square" for r in rows)
    assert "ALIVE" in cli("list", "nodes")
    assert "square" in cli("summary", "tasks")
    node_id = state.list_nodes()[0].node_id
    assert node_id in cli("get", "nodes", node_id)


def test_a_short_driver_s_last_events_are_flushed_at_shutdown(cluster):
    cw = lifecycle.core_worker_or_init()
    env = dict(os.environ, EMBER_CLUSTER_TOKEN=lifecycle._local_cluster.token.decode())
    script = ("import ember\n"
              f"ember.init(address={cw.gcs_address!r})\n"
              "@ember.remote\n"
              "def short_lived():\n"
              "    return 1\n"
              "ember.get([short_lived.remote() for _ in range(3)])\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, env=env)
    rows = _wait_for_tasks(lambda rs: sum(r.name == "short_lived" and r.state == "FINISHED" for r in rs) == 3)
    assert sum(r.name == "short_lived" and r.state == "FINISHED" for r in rows) == 3
