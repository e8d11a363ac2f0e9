"""The multi-host bed itself: hosts at their own addresses, partitions, and cleanup."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import ember
from bed.netbed import STATE_DIR, HostSpec, NetBed, bed_fixture, bed_unavailable_reason, sweep_stale_beds

pytestmark = pytest.mark.timeout(180)

HEARTBEAT_TIMEOUT_S = 2.0

three_hosts = bed_fixture([HostSpec(num_cpus=1)] * 3, env={"EMBER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _can_connect(bed: NetBed, from_host: int, ip: str, port: int) -> bool:
    code = ("import socket,sys\ns=socket.socket();s.settimeout(1.0)\n"
            f"sys.exit(0 if s.connect_ex(({ip!r},{port}))==0 else 1)")
    return bed.exec(from_host, [os.sys.executable, "-c", code], timeout_s=30).returncode == 0


def test_each_host_is_a_node_at_its_own_address(three_hosts: NetBed) -> None:
    nodes = three_hosts.wait_nodes(3)
    assert sorted(n["NodeManagerAddress"] for n in nodes) == sorted(h.ip for h in three_hosts.hosts)
    assert len({h.netns for h in three_hosts.hosts}) == 3
    assert all(h.netns in _netns_list() for h in three_hosts.hosts)


def test_a_host_cannot_reach_loopback_of_another(three_hosts: NetBed) -> None:
    head_port = int(three_hosts.address.rpartition(":")[2])
    assert _can_connect(three_hosts, 1, three_hosts.head.ip, head_port)
    assert not _can_connect(three_hosts, 1, "127.0.0.1", head_port)  # the head is not on host 1's loopback


def test_a_cut_host_is_unreachable_until_restored(three_hosts: NetBed) -> None:
    head_port = int(three_hosts.address.rpartition(":")[2])
    with three_hosts.partitioned(2):
        assert not _can_connect(three_hosts, 2, three_hosts.head.ip, head_port)
        assert _can_connect(three_hosts, 1, three_hosts.head.ip, head_port)
    assert _can_connect(three_hosts, 2, three_hosts.head.ip, head_port)
    # If the cut outlasted the heartbeat timeout the node was declared dead: its daemon exits when it
    # hears so, and the host joins again as a new node.
    _wait_alive_or_gone(three_hosts, 2)
    if not three_hosts.pids(2):
        three_hosts.rejoin(2)
    three_hosts.wait_nodes(3, timeout_s=60)


def _wait_alive_or_gone(bed: NetBed, i: int, timeout_s: float = 30) -> None:
    """Until host ``i``'s node is alive again, or its daemon has exited (declared dead)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and bed.pids(i):
        try:
            bed.node_id(i)
            return
        except LookupError:
            time.sleep(0.3)


def test_a_partitioned_host_is_marked_dead(three_hosts: NetBed) -> None:
    lost = three_hosts.node_id(2)
    three_hosts.cut(2)
    try:
        deadline = time.monotonic() + HEARTBEAT_TIMEOUT_S + 20
        while time.monotonic() < deadline:
            if {n["NodeID"]: n["Alive"] for n in ember.nodes()}.get(lost) is False:
                break
            time.sleep(0.2)
        assert {n["NodeID"]: n["Alive"] for n in ember.nodes()}[lost] is False
    finally:
        three_hosts.restore(2)
    # Healed, the old daemon hears that it was declared dead and exits: it never comes back under
    # its old id (its actors may already run elsewhere).  A new node can join from the same host.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and three_hosts.pids(2):
        time.sleep(0.3)
    assert not three_hosts.pids(2)
    assert {n["NodeID"]: n["Alive"] for n in ember.nodes()}[lost] is False
    three_hosts.rejoin(2)
    three_hosts.wait_nodes(3, timeout_s=60)
    assert three_hosts.node_id(2) != lost


def test_a_driver_can_run_inside_a_host(three_hosts: NetBed) -> None:
    done = three_hosts.python(1, "import ember\nember.init()\n"
                                 "print(ember.get_runtime_context().get_node_id())\nember.shutdown()")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == three_hosts.node_id(1)


@pytest.mark.skipif(bed_unavailable_reason() is not None, reason=str(bed_unavailable_reason()))
def test_stop_removes_namespaces_bridge_and_processes() -> None:
    bed = NetBed(2)
    with bed:
        names = [h.netns for h in bed.hosts]
        pids = bed.pids(0) + bed.pids(1)
        assert pids
    listed = _netns_list()
    assert not any(n in listed for n in names)
    assert subprocess.run(["ip", "link", "show", bed.bridge], capture_output=True).returncode != 0
    assert not any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                   for pid in pids)
    assert not os.path.exists(os.path.join(STATE_DIR, f"subnet-{bed.subnet}"))


@pytest.mark.skipif(bed_unavailable_reason() is not None, reason=str(bed_unavailable_reason()))
def test_a_bed_left_by_a_dead_process_is_swept() -> None:
    code = ("import sys, os\nsys.path.insert(0, %r)\nfrom bed.netbed import NetBed\n"
            "b = NetBed(1)\nb.start()\nprint(b.run_id, b.hosts[0].netns, flush=True)\nos._exit(0)\n"
            % os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run_id, netns = done.stdout.split()
    assert netns in _netns_list()
    with open(os.path.join(STATE_DIR, f"bed-{run_id}.json")) as f:
        assert json.load(f)["pid"] > 0
    assert run_id in sweep_stale_beds()
    assert netns not in _netns_list()
