"""Objects lost with their host, rebuilt from lineage by the owner (the driver), on the multi-host bed.

Host 0 is the head (1 CPU, the driver's node daemon); host 1 has 8 CPUs (soft affinity keeps
every first run there), host 2 has 4. The first test
kills host 1, the second host 2, so they run in this order and share one bed. Every task appends a
line to a file of its own under a directory all hosts share (the bed's namespaces share one file
system), so the tests can count executions.
"""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

import ember
from bed.netbed import HostSpec, NetBed, bed_fixture
from ember import exceptions as exc
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(300)

HEARTBEAT_TIMEOUT_S = 2.0
LARGE = 300_000   # float64s: 2.4 MB, kept in a node's store (not inline)

bed = bed_fixture([HostSpec(num_cpus=1), HostSpec(num_cpus=8), HostSpec(num_cpus=4)],
                  env={"EMBER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})


def _helpers() -> tuple[Any, Any]:
    # Nested, so that tasks carry them by value: module-level helpers would be pickled by reference
    # to this test module, which the bed's hosts cannot import.
    def note(log_dir: str, tag: str) -> None:
        with open(os.path.join(log_dir, tag), "a") as f:
            f.write(ember.get_runtime_context().get_node_id() + "\n")

    def runs(log_dir: str, tag: str) -> list[str]:
        try:
            with open(os.path.join(log_dir, tag)) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    return note, runs


note, runs = _helpers()


@ember.remote
def make(log_dir: str, tag: str, value: float) -> np.ndarray:
    note(log_dir, tag)
    return np.full(LARGE, value)


@ember.remote
def add(log_dir: str, tag: str, x: np.ndarray, y: float) -> np.ndarray:
    note(log_dir, tag)
    return x + y


@ember.remote
def total(x: np.ndarray) -> float:
    return float(x.sum())


@ember.remote
def slow(log_dir: str, tag: str, sleep_s: float) -> str:
    note(log_dir, tag)
    time.sleep(sleep_s)
    return ember.get_runtime_context().get_node_id()


@ember.remote
def slow_first_time(log_dir: str, tag: str) -> str:
    """Long on its first run (its node is killed under it), quick when retried."""
    note(log_dir, tag)
    if len(runs(log_dir, tag)) == 1:
        time.sleep(60)
    return ember.get_runtime_context().get_node_id()


@ember.remote(num_cpus=0)
def parent_of(log_dir: str, tag: str, node_id: str) -> str:
    """Submits slow_first_time to ``node_id`` (softly) and waits for it: the owner is this task."""
    child = slow_first_time.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=True),
                                    max_retries=1).remote(log_dir, tag)
    return ember.get(child)


@ember.remote
def crash_once(log_dir: str, tag: str) -> np.ndarray:
    """Kills its worker on the first run: its one retry is spent before its node dies."""
    note(log_dir, tag)
    if len(runs(log_dir, tag)) == 1:
        os._exit(1)
    return np.full(LARGE, 7.0)


@ember.remote
class PutOwner:
    def put_inside(self) -> list[Any]:
        return [ember.put(np.ones(LARGE))]


def on(bed: NetBed, i: int, soft: bool = True) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=bed.node_id(i), soft=soft)


def _wait_dead(bed: NetBed, node_id: str) -> None:
    deadline = time.monotonic() + HEARTBEAT_TIMEOUT_S + 30
    while time.monotonic() < deadline:
        if {n["NodeID"]: n["Alive"] for n in ember.nodes()}.get(node_id) is False:
            return
        time.sleep(0.1)
    raise AssertionError(f"node {node_id} was never marked dead")


def _make_on_host1(bed: NetBed, d: str) -> tuple:
    """The objects of the test, all made on host 1 (soft affinity, so that rebuilds may go elsewhere)."""
    b = on(bed, 1)
    lost = make.options(scheduling_strategy=b).remote(d, "lost", 1.0)
    # a chain whose intermediates only live as arguments (freed once c finished)
    c = add.options(scheduling_strategy=b).remote(
        d, "c", add.options(scheduling_strategy=b).remote(d, "b", make.options(scheduling_strategy=b).remote(
            d, "a", 2.0), 1.0), 1.0)
    kept = make.options(scheduling_strategy=b).remote(d, "kept", 3.0)            # read once: a copy on host 0
    borrowed = make.options(scheduling_strategy=b).remote(d, "borrowed", 4.0)    # read by a task on host 2
    no_retry = make.options(scheduling_strategy=b, max_retries=0).remote(d, "no_retry", 5.0)
    refs = [lost, c, kept, borrowed, no_retry]
    ready, _ = ember.wait(refs, num_returns=len(refs), timeout=120)
    assert len(ready) == len(refs)
    return lost, c, kept, borrowed, no_retry


def test_objects_lost_with_their_host_are_rebuilt_elsewhere(bed: NetBed, tmp_path: Any) -> None:
    host1 = bed.node_id(1)
    tags = ("lost", "a", "b", "c", "kept", "borrowed", "no_retry")
    for attempt in range(3):  # soft affinity: a loaded machine may place one elsewhere; make them again
        d = os.path.join(str(tmp_path), f"try{attempt}")
        os.makedirs(d)
        lost, c, kept, borrowed, no_retry = _make_on_host1(bed, d)
        where = {t: runs(d, t) for t in tags}
        if all(w == [host1] for w in where.values()):
            break
    assert all(w == [host1] for w in where.values()), (host1, where)
    owner = PutOwner.options(scheduling_strategy=on(bed, 1, soft=False)).remote()
    inner = ember.get(owner.put_inside.remote(), timeout=60)[0]
    assert float(ember.get(kept, timeout=60)[0]) == 3.0   # pulled to the driver's node

    bed.kill_host(1)
    _wait_dead(bed, host1)

    assert float(ember.get(lost, timeout=120)[0]) == 1.0
    assert runs(d, "lost")[0] == host1 and len(runs(d, "lost")) == 2 and runs(d, "lost")[1] != host1
    assert float(ember.get(c, timeout=120)[0]) == 4.0     # a, b and c ran again, in order
    assert [len(runs(d, t)) for t in ("a", "b", "c")] == [2, 2, 2]
    assert float(ember.get(kept, timeout=60)[0]) == 3.0   # read from the surviving copy
    assert len(runs(d, "kept")) == 1
    # a task on host 2 takes the lost object as an argument: it reports the loss to the owner
    s = ember.get(total.options(scheduling_strategy=on(bed, 2)).remote(borrowed), timeout=120)
    assert s == 4.0 * LARGE and len(runs(d, "borrowed")) == 2
    with pytest.raises(exc.ObjectReconstructionFailedMaxAttemptsExceededError) as info:
        ember.get(no_retry, timeout=60)
    assert "max_retries=0" in str(info.value) and len(runs(d, "no_retry")) == 1
    # the owner of `inner` (an actor on host 1) died with it: borrowers are told at once
    with pytest.raises(exc.OwnerDiedError):
        ember.get(inner, timeout=60)


def test_retries_are_spent_by_rebuilds_and_by_node_deaths(bed: NetBed, tmp_path: Any) -> None:
    d = str(tmp_path)
    b = on(bed, 2)
    spent = crash_once.options(scheduling_strategy=b, max_retries=1).remote(d, "spent")
    running = slow.options(scheduling_strategy=on(bed, 2, soft=False), max_retries=0).remote(d, "running", 60)
    retried = slow_first_time.options(scheduling_strategy=b, max_retries=1).remote(d, "retried")
    ember.wait([spent], timeout=120)
    host2 = bed.node_id(2)
    assert runs(d, "spent") == [host2, host2]
    deadline = time.monotonic() + 60
    while not (runs(d, "running") and runs(d, "retried")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    bed.kill_host(2)
    _wait_dead(bed, host2)
    # the task running on host 2 is retried elsewhere within max_retries
    assert ember.get(retried, timeout=120) != host2 and len(runs(d, "retried")) == 2
    # max_retries=0, and its node died under it
    with pytest.raises(exc.NodeDiedError) as info:
        ember.get(running, timeout=60)
    assert "died" in str(info.value)
    # its one retry went to the worker crash: the lost result cannot be rebuilt
    with pytest.raises(exc.ObjectReconstructionFailedMaxAttemptsExceededError):
        ember.get(spent, timeout=60)
    assert len(runs(d, "spent")) == 2


def test_a_task_on_a_partitioned_host_is_retried_elsewhere(bed: NetBed, tmp_path: Any) -> None:
    """The host's link is cut while its task runs: its connections hang (no reset). Once the control
    store declares the node dead, the driver cuts its connection to the task's worker and the task
    is retried on another host."""
    d = str(tmp_path)
    host = bed.add_host(HostSpec(num_cpus=2))
    deadline = time.monotonic() + 60
    while True:
        try:
            node = bed.node_id(host.index)
            break
        except LookupError:
            assert time.monotonic() < deadline, "the new host never joined"
            time.sleep(0.2)
    time.sleep(2.0)   # node daemons learn of the new node from heartbeats: soft affinity needs their view
    retried = slow_first_time.options(scheduling_strategy=on(bed, host.index), max_retries=1).remote(d, "cut")
    # a nested task: its owner is a task running on the head's host
    nested = parent_of.options(scheduling_strategy=on(bed, 0, soft=False)).remote(d, "nested", node)
    while not (runs(d, "cut") and runs(d, "nested")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert runs(d, "cut") == [node] and runs(d, "nested") == [node]
    bed.cut(host.index)
    try:
        assert ember.get(retried, timeout=120) != node
        assert len(runs(d, "cut")) == 2
        assert ember.get(nested, timeout=120) != node
        assert len(runs(d, "nested")) == 2
    finally:
        bed.restore(host.index)   # declared dead: its daemon exits when it hears from the head again
