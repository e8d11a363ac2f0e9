"""The dashboard's JSON on two hosts of the multi-host bed (tests/bed/netbed.py): every node answers
``GetHostStats`` across the bridge, and an actor on the second host shows with its node and pid.
The head's job server listens on every interface of its namespace so this process can reach it."""
from __future__ import annotations

import json
import os

import pytest

import ember
from bed.netbed import HostSpec, bed_fixture
from jobs_helpers import http

pytestmark = pytest.mark.timeout(300)
DASHBOARD_PORT = 8265

two_hosts = bed_fixture([HostSpec(num_cpus=1, extra_args=("--dashboard-host", "0.0.0.0",
                                                           "--dashboard-port", str(DASHBOARD_PORT))),
                         HostSpec(num_cpus=1, resources={"special": 1})])


@ember.remote(resources={"special": 1}, num_cpus=0)
class FarActor:
    def where(self) -> tuple[str, int]:
        return ember.get_runtime_context().get_node_id(), os.getpid()


def _get(bed, path: str) -> dict:
    status, body = http(f"http://{bed.head.ip}:{DASHBOARD_PORT}", "GET", path, token=bed.token, timeout_s=60)
    assert status == 200, body
    return json.loads(body)


def test_nodes_and_actors_across_hosts(two_hosts):
    actor = FarActor.remote()
    node_id, pid = ember.get(actor.where.remote(), timeout=120)
    assert two_hosts.host_of(node_id) == 1
    nodes = {n["node_id"]: n for n in _get(two_hosts, "/api/dashboard/nodes")["nodes"]}
    assert len(nodes) == 2 and all(n["host"] is not None for n in nodes.values())
    far = nodes[node_id]
    assert far["node_ip"] == two_hosts.hosts[1].ip and not far["is_head_node"]
    assert far["host"]["mem_total_bytes"] > 0 and far["host"]["daemon"]["pid"] > 0
    worker = next(w for w in far["host"]["workers"] if w["pid"] == pid)
    assert worker["actor_class"] == "FarActor"
    row = next(a for a in _get(two_hosts, "/api/dashboard/actors")["actors"] if a["class_name"] == "FarActor")
    assert row["node_id"] == node_id and row["pid"] == pid and row["state"] == "ALIVE"
    overview = _get(two_hosts, "/api/dashboard/overview")
    assert overview["now"]["alive_nodes"] == 2 and overview["now"]["cpu_total"] == 2
    assert http(f"http://{two_hosts.head.ip}:{DASHBOARD_PORT}", "GET", "/api/dashboard/nodes")[0] == 401
    ember.kill(actor)
