"""The rest of issue #14's state API: workers, objects, placement groups, logs (and --follow), actor pids,
the timeline, and progress bars from tasks shown by the driver."""
import json
import os
import subprocess
import sys
import time

import pytest

import ember
from ember import lifecycle
from ember.util import state
from ember.util.placement_group import placement_group, remove_placement_group

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster():
    ember.init(num_cpus=2)
    yield
    ember.shutdown()


@ember.remote
class Speaker:
    def say(self, text):
        print(text, flush=True)
        return os.getpid()


@ember.remote
def shout(text):
    print(text, flush=True)
    return os.getpid()


def _wait(fn, timeout_s=60, retry_on=(ValueError,)):
    """fn() until it is truthy; ``retry_on`` errors count as not yet (a task's RUNNING event, which
    names its worker, comes in the executor's batch, possibly after the owner's FINISHED)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            value = fn()
        except retry_on:
            if time.time() > deadline:
                raise
            value = None
        if value or time.time() > deadline:
            return value
        time.sleep(0.3)


def _cli(*args):
    cw = lifecycle.core_worker_or_init()
    env = dict(os.environ, EMBER_CLUSTER_TOKEN=lifecycle._local_cluster.token.decode())
    out = subprocess.run([sys.executable, "-m", "ember.cli.main", *args, "--address", cw.gcs_address],
                         capture_output=True, text=True, timeout=90, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_workers_and_actor_pids(cluster):
    speaker = Speaker.remote()
    pid = ember.get(speaker.say.remote("hi"))
    actor = [a for a in state.list_actors(filters=[("class_name", "=", "Speaker")])][0]
    assert actor.pid == pid
    workers = state.list_workers(limit=0)
    mine = [w for w in workers if w.pid == pid]
    assert mine and mine[0].is_alive and mine[0].worker_type == "WORKER" and mine[0].node_id == actor.node_id
    assert any(w.worker_type == "DRIVER" and w.pid == os.getpid() for w in workers)
    assert set(state.list_workers(detail=True)[0]) >= {"worker_id", "is_alive", "worker_type", "exit_type", "node_id",
                                                       "ip", "pid", "exit_detail", "job_id"}
    ember.kill(speaker)
    dead = _wait(lambda: [w for w in state.list_workers(filters=[("is_alive", "=", False)], limit=0)
                          if w.pid == pid])
    assert dead and dead[0].exit_type == "SYSTEM_ERROR"
    assert state.get_worker(mine[0].worker_id)["pid"] == pid


def test_objects_and_their_summary(cluster):
    big = ember.put(b"y" * 300_000)
    rows = state.list_objects(filters=[("object_id", "=", big.hex())], limit=0)
    assert rows and rows[0].object_size >= 300_000 and rows[0].type == "DRIVER" and rows[0].pid == os.getpid()
    assert rows[0].reference_type == "LOCAL_REFERENCE" and rows[0].task_status == "FINISHED"
    summary = state.summarize_objects()["cluster"]
    assert summary["total_objects"] >= 1 and summary["summary_by"] == "callsite"
    out = json.loads(_cli("list", "objects", "--format", "json"))
    assert any(r["object_id"] == big.hex() for r in out)
    assert "total:" in _cli("summary", "objects")


def test_placement_groups(cluster):
    pg = placement_group([{"CPU": 0.25}, {"CPU": 0.25}], strategy="SPREAD", name="listed-pg")
    ember.get(pg.ready())
    rows = state.list_placement_groups(filters=[("name", "=", "listed-pg")], detail=True)
    assert rows and rows[0].state == "CREATED" and len(rows[0].bundles) == 2
    assert rows[0].bundles[0]["unit_resources"] == {"CPU": 0.25} and rows[0].bundles[0]["node_id"]
    assert "listed-pg" in _cli("list", "placement-groups")
    remove_placement_group(pg)
    assert _wait(lambda: state.get_placement_group(rows[0].placement_group_id)["state"] == "REMOVED")


def test_logs_of_an_actor_a_task_a_pid_and_a_file(cluster):
    speaker = Speaker.remote()
    pid = ember.get(speaker.say.remote("actor says hello"))
    actor_id = state.list_actors(filters=[("state", "=", "ALIVE"), ("class_name", "=", "Speaker")])[0].actor_id
    assert _wait(lambda: "actor says hello" in list(state.get_log(actor_id=actor_id)))
    assert _wait(lambda: "actor says hello" in list(state.get_log(pid=pid)))
    ember.get(shout.remote("task says hello"))
    task_id = _wait(lambda: [t.task_id for t in state.list_tasks(filters=[("name", "=", "shout")], limit=0)
                             if t.state == "FINISHED"])[0]
    assert _wait(lambda: "task says hello" in list(state.get_log(task_id=task_id)))
    files = state.list_logs()
    assert files["worker_out"] and files["node_daemon"] and files["control_store"]
    assert list(state.list_logs(glob_filter="control_store*")) == ["control_store"]
    assert list(state.get_log(filename="node_daemon_head.err", tail=5))
    with pytest.raises(Exception, match="not the name of a file"):
        list(state.get_log(filename="../token"))
    assert "actor says hello" in _cli("logs", "actor", "--id", actor_id)
    assert "worker_out:" in _cli("logs")
    assert _cli("logs", "cluster", "node_daemon_head*", "--tail", "3").strip()   # one match: printed


def test_get_log_follow_sees_lines_printed_later(cluster):
    speaker = Speaker.remote()
    ember.get(speaker.say.remote("first line"))
    actor_id = [a for a in state.list_actors(filters=[("state", "=", "ALIVE"), ("class_name", "=", "Speaker")],
                                             limit=0)][-1].actor_id
    lines = state.get_log(actor_id=actor_id, follow=True, _interval=0.2)
    seen = []
    for line in lines:
        seen.append(line)
        if line == "first line":
            speaker.say.remote("printed after following began")
        if line == "printed after following began":
            break
    lines.close()
    assert seen[-1] == "printed after following began"


def test_timeline_file_and_cli(cluster, tmp_path):
    ember.get([shout.remote(f"t{i}") for i in range(3)])
    # the owner's FINISHED and the executor's RUNNING (the slice's start) come in separate batches
    assert _wait(lambda: sum(t.state == "FINISHED" and bool(t.worker_pid)
                             for t in state.list_tasks(filters=[("name", "=", "shout")], limit=0)) >= 3)
    path = tmp_path / "trace.json"
    ember.timeline(str(path))
    trace = json.loads(path.read_text())
    slices = [e for e in trace if e["ph"] == "X"]
    assert sum(e["name"] == "shout" for e in slices) >= 3
    assert all({"pid", "tid", "ts", "dur", "args"} <= set(e) and e["dur"] >= 0 for e in slices)
    named = {(e["pid"], e["tid"]) for e in trace if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in slices} <= named
    cli_path = tmp_path / "cli.json"
    assert "Trace file written" in _cli("timeline", "--output", str(cli_path))
    assert any(e.get("name") == "shout" for e in json.loads(cli_path.read_text()))


def test_progress_bars_from_tasks_reach_the_driver_and_log_lines_stay_whole(cluster, tmp_path):
    script = tmp_path / "bars.py"
    script.write_text(
        "import ember\n"
        "from ember.experimental.tqdm_ray import tqdm\n"
        "ember.init(num_cpus=2)\n"
        "@ember.remote\n"
        "def work(n):\n"
        "    bar = tqdm(total=n, desc=f'bar{n}', flush_interval_s=0)\n"
        "    for i in range(n):\n"
        "        bar.update(1)\n"
        "        print(f'log line {n} {i}', flush=True)\n"
        "    bar.close()\n"
        "    return n\n"
        "print(ember.get([work.remote(3), work.remote(4)]))\n"
        "import time; time.sleep(2)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert "__ember_tqdm_magic_token__" not in out.stdout + out.stderr
    bar_lines = [ln for ln in out.stderr.splitlines() if ln.startswith("bar")]
    assert any("3/3" in ln and "(done)" in ln for ln in bar_lines) and any("4/4" in ln for ln in bar_lines)
    logs = [ln for ln in out.stdout.splitlines() if "log line" in ln]
    assert len(logs) == 7 and all(ln.startswith("(pid=") for ln in logs)
