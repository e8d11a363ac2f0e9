"""Prometheus metrics (issue #14): every node daemon's and the head's endpoint, user metrics from tasks
and actors, the service-discovery file, and a real Prometheus server scraping through it."""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ember
from ember import lifecycle
from ember.shells.shared import local_cluster, processes
from ember.shells.wire import session
from ember.util.metrics import Counter, Gauge, Histogram

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster():
    ember.init(num_cpus=2)
    yield lifecycle.core_worker_or_init().session_dir
    ember.shutdown()


def _token(session_dir):
    return open(session.token_path(session_dir), "rb").read().decode().strip()


def _endpoints(session_dir):
    return {os.path.basename(p)[:-5]: json.load(open(p))["address"]
            for p in glob.glob(os.path.join(session_dir, "metrics", "*.json"))}


def scrape(session_dir, address, token=True):
    headers = {"Authorization": "Bearer " + _token(session_dir)} if token else {}
    with urllib.request.urlopen(urllib.request.Request(f"http://{address}/metrics", headers=headers),
                                timeout=30) as resp:
        text = resp.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _node_address(session_dir):
    return next(a for name, a in _endpoints(session_dir).items() if name.startswith("node-"))


def _samples(family, **labels):
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def _wait(fn, timeout_s=60):
    deadline = time.time() + timeout_s
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(0.5)


@ember.remote
def handle(route):
    Counter("requests", "Requests handled", tag_keys=("route",)).inc(2, tags={"route": route})
    Histogram("latency_s", "Handling time", boundaries=[0.1, 1.0], tag_keys=()).observe(0.5)
    return route


@ember.remote
class Tracker:
    def __init__(self):
        self.gauge = Gauge("queue_depth", "Items waiting", tag_keys=("tracker",))
        self.gauge.set_default_tags({"tracker": "main"})

    def set(self, value):
        self.gauge.set(value)
        return value


def test_node_and_head_endpoints_export_the_cluster_state(cluster):
    ember.get([handle.remote("warm") for _ in range(4)])
    tracker = Tracker.remote()
    ember.get(tracker.set.remote(1))
    ref = ember.put(b"x" * (2 * 1024 * 1024))   # in the node's store
    endpoints = _endpoints(cluster)
    assert "head" in endpoints and any(n.startswith("node-") for n in endpoints)
    node = scrape(cluster, _node_address(cluster))
    cpu = {s.labels["State"]: s.value for s in _samples(node["ember_resources"], Name="CPU")}
    assert cpu["USED"] + cpu["AVAILABLE"] == 2.0
    assert _samples(node["ember_resources_total"], Name="CPU")[0].value == 2.0
    assert _samples(node["ember_object_store_memory"], Location="MMAP_SHM")[0].value >= 2 * 1024 * 1024
    assert node["ember_object_store_num_local_objects"].samples[0].value >= 1
    assert sum(s.value for s in node["ember_workers"].samples) >= 1
    assert {s.labels["State"] for s in node["ember_scheduler_tasks"].samples} == {"Queued", "Leased"}
    assert node["ember_node_mem_total"].samples[0].value > 0

    def head_ready():
        head = scrape(cluster, endpoints["head"])
        done = _samples(head["ember_tasks"], Name="handle", State="FINISHED")
        return head if done and done[0].value >= 4 else None
    head = _wait(head_ready)
    assert head, "the head never exported the finished tasks"
    assert _samples(head["ember_actors"], Name="Tracker", State="ALIVE")[0].value == 1
    assert _samples(head["ember_cluster_nodes"], State="ALIVE")[0].value == 1
    beats = _samples(head["ember_gcs_request_duration_seconds"], Method="Heartbeat")
    assert any(s.name.endswith("_count") and s.value > 0 for s in beats)
    del ref


def test_endpoints_demand_the_cluster_token(cluster):
    for address in _endpoints(cluster).values():
        with pytest.raises(urllib.error.HTTPError) as info:
            scrape(cluster, address, token=False)
        assert info.value.code == 401


def test_user_metrics_from_tasks_and_actors_are_exported_by_the_node(cluster):
    ember.get([handle.remote("a") for _ in range(3)] + [handle.remote("b")])
    tracker = Tracker.remote()
    ember.get(tracker.set.remote(42))

    def exported():
        fams = scrape(cluster, _node_address(cluster))
        if "ember_queue_depth" not in fams or "ember_requests" not in fams:
            return None
        a = _samples(fams["ember_requests"], route="a")
        return fams if a and a[0].value >= 6 else None
    fams = _wait(exported)
    assert fams, "user metrics never reached the node's endpoint"
    assert fams["ember_requests"].type == "counter"
    assert _samples(fams["ember_requests"], route="a")[0].name == "ember_requests_total"
    assert _samples(fams["ember_requests"], route="b")[0].value >= 2
    assert _samples(fams["ember_queue_depth"], tracker="main")[0].value == 42
    hist = fams["ember_latency_s"]
    assert hist.type == "histogram"
    count = [s for s in hist.samples if s.name == "ember_latency_s_count"][0].value
    in_first = [s for s in hist.samples if s.name == "ember_latency_s_bucket" and s.labels["le"] == "0.1"][0].value
    assert count >= 4 and in_first == 0


def test_user_metric_arguments_are_checked_as_ray_does():
    with pytest.raises(ValueError, match="Empty name"):
        Counter("")
    with pytest.raises(TypeError, match="tuple"):
        Counter("c", tag_keys=["a"])
    c = Counter("c", tag_keys=("a",))
    with pytest.raises(ValueError, match="Missing value for tag key"):
        c.inc(1)
    with pytest.raises(ValueError, match="Unrecognized tag key"):
        c.set_default_tags({"b": "x"})
    with pytest.raises(ValueError, match=">0"):
        c.inc(0, tags={"a": "x"})
    with pytest.raises(ValueError, match="boundaries"):
        Histogram("h")
    assert Histogram("h", boundaries=[1, 2]).info["boundaries"] == [1.0, 2.0]


def test_the_discovery_file_lists_the_head_and_every_node(cluster):
    cw = lifecycle.core_worker_or_init()
    proc, _port = local_cluster.start_node(cw.gcs_address, cluster, session.token_path(cluster), host="127.0.0.1",
                                           is_head=False, tied_to_parent=True, extra=["--num-cpus", "1"])
    try:
        def listed():
            with open(os.path.join(cluster, "prom_metrics_service_discovery.json")) as f:
                sd = json.load(f)
            targets = set(sd[0]["targets"])
            return sd if len(targets) == 3 and targets == set(_endpoints(cluster).values()) else None
        sd = _wait(listed)
        assert sd, "the discovery file never listed the second node"
        assert sd[0]["labels"] == {"job": "ember"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_prometheus_server_scrapes_the_cluster_through_the_discovery_file(cluster, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: run scripts/install_test_deps.sh"
    ember.get([handle.remote("prom") for _ in range(2)])
    port = processes.free_port("127.0.0.1")
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({   # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "ember",
            "authorization": {"type": "Bearer", "credentials_file": session.token_path(cluster)},
            "file_sd_configs": [{"files": [os.path.join(cluster, "prom_metrics_service_discovery.json")],
                                 "refresh_interval": "1s"}]}]}))
    data_dir = tempfile.mkdtemp(prefix="ember-prom-", dir=str(tmp_path))
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        def query():
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
                {"query": 'ember_requests_total{route="prom"}'})
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    answer = json.load(resp)
            except (urllib.error.URLError, ConnectionError, OSError):
                return None
            return answer["data"]["result"] or None
        result = _wait(query, timeout_s=120)
        assert result, (tmp_path / "prometheus.log").read_text()[-3000:]
        assert float(result[0]["value"][1]) >= 4
        assert result[0]["metric"]["job"] == "ember"
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        log.close()


def test_ember_start_metrics_export_port_sets_the_node_endpoint(tmp_path):
    from cli_harness import CliHarness, free_port
    harness = CliHarness(str(tmp_path / "root"))
    port = free_port()
    done = harness.ember("start", "--head", "--port", str(free_port()), "--metrics-export-port", str(port),
                         "--include-dashboard", "false")
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        session_dir = harness.current_cluster()["session_dir"]
        addresses = _wait(lambda: [a for n, a in _endpoints(session_dir).items() if n.startswith("node-")])
        assert addresses[0].endswith(f":{port}"), addresses
    finally:
        harness.ember("stop")
