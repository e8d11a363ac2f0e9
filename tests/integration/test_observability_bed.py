"""Metrics, logs, workers and the timeline across three real hosts (network namespaces, tests/bed/netbed.py):
every node daemon serves its own endpoint on its own address, the head's discovery file lists them all,
and the state API reaches each node's workers and log files."""
from __future__ import annotations

import json
import os
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ember
from bed.netbed import HostSpec, NetBed, bed_fixture
from ember.util import state
from ember.util.metrics import Counter
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(300)

three_hosts = bed_fixture([HostSpec(num_cpus=1), HostSpec(num_cpus=1), HostSpec(num_cpus=1)])


@ember.remote(num_cpus=1)
def count_here(n: int) -> str:
    for _ in range(n):
        Counter("bed_calls", "calls on this node").inc()
    print(f"counted {n} here", flush=True)
    return ember.get_runtime_context().get_node_id()


def _session_dir(bed: NetBed) -> str:
    with open(os.path.join(bed.head.tmpdir, "current_cluster")) as f:
        return json.load(f)["session_dir"]


def _scrape(bed: NetBed, address: str) -> dict:
    req = urllib.request.Request(f"http://{address}/metrics", headers={"Authorization": f"Bearer {bed.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return {f.name: f for f in text_string_to_metric_families(resp.read().decode())}


def _wait(fn, timeout_s: float = 60):
    deadline = time.time() + timeout_s
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(0.5)


def test_every_host_serves_its_metrics_and_the_discovery_file_lists_them(three_hosts: NetBed) -> None:
    sd_path = os.path.join(_session_dir(three_hosts), "prom_metrics_service_discovery.json")

    def targets():
        with open(sd_path) as f:
            found = json.load(f)[0]["targets"]
        return found if len(found) == 4 else None   # the head's endpoint and three nodes'
    found = _wait(targets)
    assert found, open(sd_path).read()
    ips = {h.ip for h in three_hosts.hosts}
    assert {t.rpartition(":")[0] for t in found} == ips   # each on its own host's address
    for i in range(3):
        on = NodeAffinitySchedulingStrategy(node_id=three_hosts.node_id(i), soft=False)
        ember.get(count_here.options(scheduling_strategy=on).remote(i + 1), timeout=120)
    node_targets = {}
    for target in found:
        fams = _scrape(three_hosts, target)
        if "ember_resources" in fams:
            node_targets[target.rpartition(":")[0]] = target
            cpu = [s for s in fams["ember_resources_total"].samples if s.labels["Name"] == "CPU"]
            assert cpu[0].value == 1.0
    assert set(node_targets) == ips
    for i, host in enumerate(three_hosts.hosts):
        def counted():
            fams = _scrape(three_hosts, node_targets[host.ip])
            fam = fams.get("ember_bed_calls")
            return fam is not None and fam.samples[0].value == i + 1
        assert _wait(counted), f"host {i} never exported its own count"


def test_workers_logs_and_timeline_span_the_hosts(three_hosts: NetBed) -> None:
    on = NodeAffinitySchedulingStrategy(node_id=three_hosts.node_id(2), soft=False)
    ember.get(count_here.options(scheduling_strategy=on).remote(1), timeout=120)
    workers = state.list_workers(filters=[("worker_type", "=", "WORKER")], limit=0)
    assert {w.ip for w in workers} >= {h.ip for h in three_hosts.hosts}
    files = state.list_logs(node_ip=three_hosts.hosts[2].ip)
    assert files["worker_out"]
    task = _wait(lambda: [t for t in state.list_tasks(filters=[("name", "=", "count_here")], limit=0)
                          if t.node_id == three_hosts.node_id(2) and t.worker_pid])
    assert task
    assert _wait(lambda: any("counted" in line for line in state.get_log(task_id=task[-1].task_id)))
    trace = ember.timeline()
    nodes = {e["args"]["name"] for e in trace if e["name"] == "process_name"}
    assert len(nodes) >= 2
