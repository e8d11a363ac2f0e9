"""Two hosts of the multi-host bed (tests/bed/netbed.py): each a network namespace with its own IP.

Host 0 (the head, 10.213.K.2) has 1 CPU; host 1 (``ember start --address``, 10.213.K.3) has 1 CPU and
``{"special": 1}``. The driver is this pytest process, reaching both through the bridge. Every
address a node advertises must be its host's own IP: nothing else is reachable from another host.
The last test SIGKILLs host 1's node daemon, so it must stay last.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest

import ember
import ember.util
from bed.netbed import HostSpec, NetBed, bed_fixture
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(180)

HEARTBEAT_TIMEOUT_S = 2.0
LARGE_BYTES = 20 * 1024 * 1024

two_hosts = bed_fixture([HostSpec(num_cpus=1), HostSpec(num_cpus=1, resources={"special": 1})],
                        env={"EMBER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})


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


def test_two_nodes_are_alive_and_resources_add_up(two_hosts: NetBed) -> None:
    second_id = two_hosts.node_id(1)
    nodes = ember.nodes()
    assert len(nodes) == 2 and all(n["Alive"] for n in nodes)
    assert two_hosts.node_id(0) != two_hosts.node_id(1)
    # Each node advertises its own host's address, never loopback.
    assert sorted(n["NodeManagerAddress"] for n in nodes) == sorted(h.ip for h in two_hosts.hosts)
    resources = ember.cluster_resources()
    assert resources["special"] == 1
    assert resources["CPU"] == 2


def test_status_lists_both_nodes(two_hosts: NetBed) -> None:
    second_id = two_hosts.node_id(1)
    done = two_hosts.ember(1, "status", "--address", two_hosts.address)  # from host 1, over the bridge
    assert done.returncode == 0, done.stderr
    assert " 2 node(s)" in done.stdout
    assert f"node_{two_hosts.node_id(0)}" in done.stdout and f"node_{second_id}" in done.stdout
    assert "/2.0 CPU" in done.stdout and "/1.0 special" in done.stdout


def test_driver_runs_on_the_head(two_hosts: NetBed) -> None:
    assert ember.get_runtime_context().get_node_id() == two_hosts.node_id(0)


@ember.remote
def ip_of_caller() -> str:
    return ember.util.get_node_ip_address()


def test_workers_run_at_their_hosts_address(two_hosts: NetBed) -> None:
    on = [NodeAffinitySchedulingStrategy(node_id=two_hosts.node_id(i), soft=False) for i in (0, 1)]
    ips = ember.get([ip_of_caller.options(scheduling_strategy=s).remote() for s in on], timeout=60)
    assert ips == [two_hosts.hosts[0].ip, two_hosts.hosts[1].ip]


def test_task_needing_special_runs_on_the_second_node(two_hosts: NetBed) -> None:
    second_id = two_hosts.node_id(1)
    ref = node_of_caller.options(resources={"special": 1}).remote()
    assert ember.get(ref, timeout=60) == second_id


def test_large_object_made_on_second_node_is_pulled_to_the_head(two_hosts: NetBed) -> None:
    ref = make_large.remote()
    arr = ember.get(ref, timeout=60)  # the driver sits on the head: a pull between node daemons
    expected = np.arange(LARGE_BYTES // 8, dtype=np.float64)
    assert arr.nbytes == LARGE_BYTES
    assert np.array_equal(arr, expected)
    on_head = NodeAffinitySchedulingStrategy(node_id=two_hosts.node_id(0), soft=False)
    node_id, total, size_bytes = ember.get(summarize.options(scheduling_strategy=on_head).remote(ref), timeout=60)
    assert node_id == two_hosts.node_id(0)
    assert total == float(expected.sum()) and size_bytes == LARGE_BYTES


def _wait_all_cpus_free(cpus: float) -> None:
    """Until every lease is back (an owner keeps an idle lease a few ms before returning it)."""
    deadline = time.monotonic() + 30
    while ember.available_resources().get("CPU", 0.0) < cpus:
        assert time.monotonic() < deadline, f"CPUs still leased: {ember.available_resources()}"
        time.sleep(0.05)


def test_task_runs_where_its_large_argument_lies(two_hosts: NetBed) -> None:
    second_id = two_hosts.node_id(1)
    ref = make_large.remote()  # needs "special": made and stored on the second node
    ember.wait([ref], timeout=60)
    _wait_all_cpus_free(2.0)
    node_id, total, size_bytes = ember.get(summarize.remote(ref), timeout=60)
    assert node_id == second_id  # both nodes are free: locality decides
    assert size_bytes == LARGE_BYTES


def test_tasks_needing_more_than_one_node_spread_to_both(two_hosts: NetBed) -> None:
    second_id = two_hosts.node_id(1)
    refs = [sleep_then_node.remote(1.0) for _ in range(2)]
    assert set(ember.get(refs, timeout=60)) == {two_hosts.node_id(0), second_id}


def test_killed_node_daemon_is_marked_dead_within_the_heartbeat_timeout(two_hosts: NetBed) -> None:
    second_id = two_hosts.node_id(1)
    second = next(n for n in ember.nodes() if n["NodeID"] == second_id)
    address = f"{second['NodeManagerAddress']}:{second['NodeManagerPort']}"
    daemon = next(p for p in map(psutil.Process, two_hosts.pids(1))
                  if "ember.shells.node.node_daemon" in " ".join(p.cmdline()))
    assert address.startswith(two_hosts.hosts[1].ip + ":")
    children = daemon.children(recursive=True)
    assert children, "the second node has no zygote"
    killed_at = time.monotonic()
    os.kill(daemon.pid, signal.SIGKILL)
    dead_after_s = None
    while time.monotonic() - killed_at < HEARTBEAT_TIMEOUT_S + 10:
        state = {n["NodeID"]: n["Alive"] for n in ember.nodes()}
        if state.get(second_id) is False:
            dead_after_s = time.monotonic() - killed_at
            break
        time.sleep(0.1)
    assert dead_after_s is not None, "the killed node was never marked dead"
    assert dead_after_s <= HEARTBEAT_TIMEOUT_S + 2.0
    assert state[two_hosts.node_id(0)] is True
    assert "special" not in ember.cluster_resources()
    # Its zygote and workers die with it.
    deadline = time.monotonic() + 10
    while _running(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running(children) == []
    # The head still runs tasks.
    assert ember.get(node_of_caller.remote(), timeout=60) == two_hosts.node_id(0)
