"""Two node daemons on one machine, started with the CLI, driven from this pytest process.

The head has 1 CPU; the second node (``ember start --address``) has 1 CPU and
``{"special": 1}``. The last test SIGKILLs the second node's daemon, so it must stay last.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Iterator

import numpy as np
import psutil
import pytest

import ember
from cli_harness import CliHarness
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(180)

HEARTBEAT_TIMEOUT_S = 2.0
LARGE_BYTES = 20 * 1024 * 1024


class Cluster:
    def __init__(self, harness: CliHarness, port: int, head_id: str, second_id: str) -> None:
        self.harness = harness
        self.port = port
        self.head_id = head_id
        self.second_id = second_id


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if ember.is_initialized():
        ember.shutdown()
    harness = CliHarness(str(tmp_path_factory.mktemp("ember_multinode_root")),
                         {"EMBER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})
    patch = pytest.MonkeyPatch()
    try:
        port = harness.start_head("--num-cpus", "1")
        joined = harness.ember("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                               "--resources", '{"special": 1}')
        assert joined.returncode == 0, f"{joined.stdout}\n{joined.stderr}"
        # This process's session root is not the harness's: hand the driver the token directly.
        patch.setenv("EMBER_CLUSTER_TOKEN", harness.token())
        patch.delenv("EMBER_ADDRESS", raising=False)
        patch.delenv("RAY_ADDRESS", raising=False)
        ember.init(address=f"127.0.0.1:{port}")
        nodes = ember.nodes()
        head_id = next(n["NodeID"] for n in nodes if n["IsHead"])
        second_id = next(n["NodeID"] for n in nodes if "special" in n["Resources"])
        yield Cluster(harness, port, head_id, second_id)
    finally:
        ember.shutdown()
        patch.undo()
        stopped = harness.ember("stop")
        leftovers = harness.kill_leftovers()
        assert stopped.returncode == 0, stopped.stderr
        assert not leftovers, f"processes left after ember stop: {leftovers}"


@ember.remote
def node_of_caller() -> str:
    return ember.get_runtime_context().get_node_id()


@ember.remote(num_cpus=1)
def sleep_then_node(seconds: float) -> str:
    time.sleep(seconds)
    return ember.get_runtime_context().get_node_id()


@ember.remote(resources={"special": 1})
def make_large() -> np.ndarray:
    return np.arange(LARGE_BYTES // 8, dtype=np.float64)


@ember.remote
def summarize(arr: np.ndarray) -> tuple[str, float, int]:
    return ember.get_runtime_context().get_node_id(), float(arr.sum()), int(arr.nbytes)


def _running(procs: list[psutil.Process]) -> list[int]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_two_nodes_are_alive_and_resources_add_up(two_nodes: Cluster) -> None:
    nodes = ember.nodes()
    assert len(nodes) == 2 and all(n["Alive"] for n in nodes)
    assert two_nodes.head_id != two_nodes.second_id
    resources = ember.cluster_resources()
    assert resources["special"] == 1
    assert resources["CPU"] == 2


def test_status_lists_both_nodes(two_nodes: Cluster) -> None:
    done = two_nodes.harness.ember("status")
    assert done.returncode == 0, done.stderr
    assert " 2 node(s)" in done.stdout
    assert f"node_{two_nodes.head_id}" in done.stdout and f"node_{two_nodes.second_id}" in done.stdout
    assert "/2.0 CPU" in done.stdout and "/1.0 special" in done.stdout


def test_driver_runs_on_the_head(two_nodes: Cluster) -> None:
    assert ember.get_runtime_context().get_node_id() == two_nodes.head_id


def test_task_needing_special_runs_on_the_second_node(two_nodes: Cluster) -> None:
    ref = node_of_caller.options(resources={"special": 1}).remote()
    assert ember.get(ref, timeout=60) == two_nodes.second_id


def test_large_object_made_on_second_node_is_pulled_to_the_head(two_nodes: Cluster) -> None:
    ref = make_large.remote()
    arr = ember.get(ref, timeout=60)  # the driver sits on the head: a pull between node daemons
    expected = np.arange(LARGE_BYTES // 8, dtype=np.float64)
    assert arr.nbytes == LARGE_BYTES
    assert np.array_equal(arr, expected)
    on_head = NodeAffinitySchedulingStrategy(node_id=two_nodes.head_id, soft=False)
    node_id, total, size_bytes = ember.get(summarize.options(scheduling_strategy=on_head).remote(ref), timeout=60)
    assert node_id == two_nodes.head_id
    assert total == float(expected.sum()) and size_bytes == LARGE_BYTES


def test_task_runs_where_its_large_argument_lies(two_nodes: Cluster) -> None:
    ref = make_large.remote()  # needs "special": made and stored on the second node
    ember.wait([ref], timeout=60)
    node_id, total, size_bytes = ember.get(summarize.remote(ref), timeout=60)
    assert node_id == two_nodes.second_id  # both nodes are free: locality decides
    assert size_bytes == LARGE_BYTES


def test_tasks_needing_more_than_one_node_spread_to_both(two_nodes: Cluster) -> None:
    refs = [sleep_then_node.remote(1.0) for _ in range(2)]
    assert set(ember.get(refs, timeout=60)) == {two_nodes.head_id, two_nodes.second_id}


def test_killed_node_daemon_is_marked_dead_within_the_heartbeat_timeout(two_nodes: Cluster) -> None:
    second = next(n for n in ember.nodes() if n["NodeID"] == two_nodes.second_id)
    address = f"{second['NodeManagerAddress']}:{second['NodeManagerPort']}"
    entry = next(e for e in two_nodes.harness.pid_entries() if e["address"] == address)
    daemon = psutil.Process(entry["pid"])
    children = daemon.children(recursive=True)
    assert children, "the second node has no zygote"
    killed_at = time.monotonic()
    os.kill(daemon.pid, signal.SIGKILL)
    dead_after_s = None
    while time.monotonic() - killed_at < HEARTBEAT_TIMEOUT_S + 10:
        state = {n["NodeID"]: n["Alive"] for n in ember.nodes()}
        if state.get(two_nodes.second_id) is False:
            dead_after_s = time.monotonic() - killed_at
            break
        time.sleep(0.1)
    assert dead_after_s is not None, "the killed node was never marked dead"
    assert dead_after_s <= HEARTBEAT_TIMEOUT_S + 2.0
    assert state[two_nodes.head_id] is True
    assert "special" not in ember.cluster_resources()
    # Its zygote and workers die with it.
    deadline = time.monotonic() + 10
    while _running(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(children) == []
    # The head still runs tasks.
    assert ember.get(node_of_caller.remote(), timeout=60) == two_nodes.head_id
