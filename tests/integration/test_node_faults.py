"""Node daemons that die or are paused, on a three-node CLI cluster driven from pytest.

The head has 1 CPU; "doomed" (1 CPU, ``{"doomed": 1}``) is SIGKILLed by the lost-object
test; "paused" (1 CPU) is SIGSTOPped past the heartbeat timeout and resumed by the
paused-node test.  Each test ruins its own node, so the order does not matter.
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
from ember import exceptions as exc
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(180)

HEARTBEAT_TIMEOUT_S = 2.0
LARGE_BYTES = 4 * 1024 * 1024


class Cluster:
    def __init__(self, harness: CliHarness, ids: dict[str, str]) -> None:
        self.harness = harness
        self.ids = ids  # "head" / "doomed" / "paused" -> node id hex

    def daemon(self, which: str) -> psutil.Process:
        node = next(n for n in ember.nodes() if n["NodeID"] == self.ids[which])
        address = f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"
        entry = next(e for e in self.harness.pid_entries() if e["address"] == address)
        return psutil.Process(entry["pid"])


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if ember.is_initialized():
        ember.shutdown()
    harness = CliHarness(str(tmp_path_factory.mktemp("ember_node_faults_root")),
                         {"EMBER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})
    patch = pytest.MonkeyPatch()
    paused: list[psutil.Process] = []
    try:
        port = harness.start_head("--num-cpus", "1")
        for extra in (["--resources", '{"doomed": 1}'], ["--resources", '{"paused": 1}']):
            joined = harness.ember("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", *extra)
            assert joined.returncode == 0, f"{joined.stdout}\n{joined.stderr}"
        patch.setenv("EMBER_CLUSTER_TOKEN", harness.token())
        patch.setenv("EMBER_RECORD_REF_CREATION_SITES", "1")
        patch.setenv("EMBER_HEARTBEAT_TIMEOUT_S", str(HEARTBEAT_TIMEOUT_S))
        patch.delenv("EMBER_ADDRESS", raising=False)
        patch.delenv("RAY_ADDRESS", raising=False)
        ember.init(address=f"127.0.0.1:{port}")
        ids = {"head": next(n["NodeID"] for n in ember.nodes() if n["IsHead"])}
        for name in ("doomed", "paused"):
            ids[name] = next(n["NodeID"] for n in ember.nodes() if name in n["Resources"])
        yield Cluster(harness, ids)
    finally:
        for proc in harness.processes():  # never leave a stopped process behind
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass
        ember.shutdown()
        patch.undo()
        stopped = harness.ember("stop")
        leftovers = harness.kill_leftovers()
        assert stopped.returncode == 0, stopped.stderr
        assert not leftovers, f"processes left after ember stop: {leftovers}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(node_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if {n["NodeID"]: n["Alive"] for n in ember.nodes()}.get(node_id) is False:
            return
        time.sleep(0.1)
    raise AssertionError(f"node {node_id} was never marked dead")


@ember.remote(resources={"doomed": 1}, max_retries=0)
def make_large() -> np.ndarray:
    return np.ones(LARGE_BYTES // 8)


def test_object_lost_with_its_node_names_the_cause_and_the_call_site(nodes: Cluster) -> None:
    ref = make_large.remote()  # the call site recorded for this ref is this line
    line = test_object_lost_with_its_node_names_the_cause_and_the_call_site.__code__.co_firstlineno + 1
    ready, _ = ember.wait([ref], timeout=60)
    assert ready
    daemon = nodes.daemon("doomed")
    os.kill(daemon.pid, signal.SIGKILL)
    _wait_dead(nodes.ids["doomed"], HEARTBEAT_TIMEOUT_S + 20)
    # max_retries=0: the owner keeps no lineage for it, so it is not rebuilt (Ray's error for it)
    with pytest.raises(exc.ObjectReconstructionFailedMaxAttemptsExceededError) as info:
        ember.get(ref, timeout=60)
    err = info.value
    assert isinstance(err, exc.ObjectLostError)
    assert err.call_site == f"(task call) {__file__}:{line}", err.call_site
    text = str(err)
    assert f"The ObjectRef was created at: (task call) {__file__}:{line}\n" in text
    assert "maximum number of task retries" in text and "max_retries=0" in err.detail
    assert err.detail and err.detail in text.split("\n\n")[-1]


@ember.remote(max_restarts=1, max_task_retries=-1)
class Where:
    def where(self) -> tuple[str, int]:
        return ember.get_runtime_context().get_node_id(), os.getpid()


def test_paused_node_declared_dead_exits_when_it_resumes(nodes: Cluster) -> None:
    on_paused = NodeAffinitySchedulingStrategy(node_id=nodes.ids["paused"], soft=True)
    for _ in range(20):  # soft affinity: the head's daemon may not know the node yet
        actor = Where.options(scheduling_strategy=on_paused).remote()
        node_id, old_pid = ember.get(actor.where.remote(), timeout=60)
        if node_id == nodes.ids["paused"]:
            break
        ember.kill(actor)
        time.sleep(0.5)
    assert node_id == nodes.ids["paused"]
    daemon = nodes.daemon("paused")
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        _wait_dead(nodes.ids["paused"], HEARTBEAT_TIMEOUT_S + 20)
        # Restarted elsewhere while the old worker still runs under the paused daemon.
        deadline = time.monotonic() + 60
        while True:
            node_id, new_pid = ember.get(actor.where.remote(), timeout=60)
            if node_id != nodes.ids["paused"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert node_id != nodes.ids["paused"] and new_pid != old_pid
        assert _alive(old_pid)  # the second copy, until the daemon resumes
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    # Told it was declared dead, the daemon exits and takes its workers with it.
    daemon.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(old_pid):
        assert time.monotonic() < deadline, "the old actor process outlived its node"
        time.sleep(0.1)
    # The node never came back under its old id; one copy answers.
    time.sleep(HEARTBEAT_TIMEOUT_S)
    states = [n["Alive"] for n in ember.nodes() if n["NodeID"] == nodes.ids["paused"]]
    assert states == [False]
    assert ember.get([actor.where.remote() for _ in range(5)], timeout=60) == [(node_id, new_pid)] * 5
