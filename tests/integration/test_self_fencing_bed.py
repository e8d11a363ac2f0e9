"""Self-fencing on the multi-host bed: a host cut off from the head stops its actors itself.

Three hosts (head + two workers with a "spot" resource).  An actor runs on host 1; host 1's
link is cut (packets dropped, connections hang, as in a partition).  The head declares host 1
dead and restarts the actor on host 2; host 1's daemon, unable to heartbeat, has already
killed its actor worker, so while the partition lasts only one copy runs.  When the link comes
back, host 1's daemon is told it was declared dead and exits; the node never returns under its
old id and one copy answers.
"""
from __future__ import annotations

import os
import time

import psutil
import pytest

import ember
from bed.netbed import HostSpec, NetBed, bed_fixture
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(300)

HEARTBEAT_TIMEOUT_S = 2.0
SPOT = HostSpec(num_cpus=1, resources={"spot": 1})
bed = bed_fixture([HostSpec(num_cpus=1), SPOT, SPOT], env={"EMBER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})


@ember.remote(resources={"spot": 0.5}, max_restarts=2, max_task_retries=-1)
class Where:
    def where(self) -> tuple[str, int]:
        return ember.get_runtime_context().get_node_id(), os.getpid()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_cut_host_fences_its_actor_and_rejoins_only_as_a_new_node(bed: NetBed) -> None:
    cut_id = bed.node_id(1)
    actor = None  # soft affinity, so that the restart may go elsewhere (the head's view may lag at first)
    for _ in range(20):
        candidate = Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=cut_id, soft=True)).remote()
        node_id, old_pid = ember.get(candidate.where.remote(), timeout=60)
        if node_id == cut_id:
            actor = candidate
            break
        ember.kill(candidate)
        time.sleep(0.3)
    assert actor is not None, "the actor never landed on host 1"
    daemon_pids = [p for p in bed.pids(1) if "node_daemon" in " ".join(psutil.Process(p).cmdline())]
    assert len(daemon_pids) == 1
    bed.cut(1)
    try:
        # The daemon, cut off, kills its actor worker itself (before the head can declare it dead).
        _wait(lambda: not _alive(old_pid), HEARTBEAT_TIMEOUT_S + 30, "the cut-off node kept its actor running")
        _wait(lambda: {n["NodeID"]: n["Alive"] for n in ember.nodes()}.get(cut_id) is False,
              HEARTBEAT_TIMEOUT_S + 30, "the cut-off node was never declared dead")
        node_id, new_pid = ember.get(actor.where.remote(), timeout=60)
        assert node_id == bed.node_id(2) and new_pid != old_pid
        assert _alive(daemon_pids[0])  # the daemon itself waits for the head's verdict
    finally:
        bed.restore(1)
    # Told it was declared dead, the old daemon exits; the node stays dead under its old id.
    _wait(lambda: not _alive(daemon_pids[0]), 60, "the old daemon did not exit after the partition healed")
    assert [n["Alive"] for n in ember.nodes() if n["NodeID"] == cut_id] == [False]
    assert ember.get([actor.where.remote() for _ in range(5)], timeout=60) == [(node_id, new_pid)] * 5
    # The host comes back only as a new node, with a new id.
    bed.rejoin(1)
    bed.wait_nodes(3, timeout_s=60)
    assert bed.node_id(1) != cut_id
