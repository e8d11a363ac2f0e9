"""``--node-ip-address``: every process of a node listens on the node's address, a wildcard
listens everywhere but is never advertised, and exposure without TLS is warned about.

Uses this machine's primary (non-loopback) address; skipped where there is none.
"""
from __future__ import annotations

import json
import textwrap
from typing import Iterator

import psutil
import pytest

from cli_harness import CliHarness
from ember.shells.wire import addresses

pytestmark = pytest.mark.timeout(180)

PRIMARY = addresses.primary_ip()
needs_routable = pytest.mark.skipif(addresses.is_loopback(PRIMARY), reason="no non-loopback address here")

_DRIVER = textwrap.dedent("""
    import json, psutil, ember

    def listening():
        return sorted({c.laddr.ip for c in psutil.Process().net_connections(kind="tcp")
                       if c.status == psutil.CONN_LISTEN})

    @ember.remote
    def where():
        from ember.shells.worker import core_worker
        return core_worker.get_core_worker().address, listening()

    @ember.remote
    class A:
        def where(self):
            from ember.shells.worker import core_worker
            return core_worker.get_core_worker().address, listening()

    ember.init(address="auto")
    from ember.shells.worker import core_worker
    out = {"driver": [core_worker.get_core_worker().address, listening()],
           "task": ember.get(where.remote()),
           "actor": ember.get(A.remote().where.remote()),
           "nodes": [n["NodeManagerAddress"] for n in ember.nodes()]}
    print("RESULT " + json.dumps(out))
    ember.shutdown()
""")


@pytest.fixture
def harness(tmp_path) -> Iterator[CliHarness]:
    h = CliHarness(str(tmp_path / "root"))
    try:
        yield h
    finally:
        h.ember("stop")
        assert not h.kill_leftovers()


def _run_driver(h: CliHarness) -> dict:
    done = h.python(_DRIVER, timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _daemon_listen_ips(h: CliHarness) -> set[str]:
    ips = set()
    for proc in h.processes():
        try:
            ips |= {c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            pass
    return ips


@needs_routable
def test_every_process_of_a_node_listens_on_its_routable_address(harness: CliHarness) -> None:
    port = harness.start_head("--node-ip-address", PRIMARY, "--num-cpus", "2")
    assert harness.current_cluster()["address"] == f"{PRIMARY}:{port}"
    assert _daemon_listen_ips(harness) == {PRIMARY}
    out = _run_driver(harness)
    for who in ("driver", "task", "actor"):
        address, listening = out[who]
        assert address.rpartition(":")[0] == PRIMARY, (who, address)
        assert listening == [PRIMARY], (who, listening)  # not loopback
    assert {a for a in out["nodes"]} == {PRIMARY}


@needs_routable
def test_wildcard_listens_everywhere_and_advertises_the_primary_address(harness: CliHarness) -> None:
    done = harness.ember("start", "--head", "--port", "0", "--node-ip-address", "0.0.0.0", "--num-cpus", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "without TLS" in done.stderr
    address = harness.current_cluster()["address"]
    assert address.rpartition(":")[0] == PRIMARY and not address.startswith("0.0.0.0")
    assert _daemon_listen_ips(harness) == {"0.0.0.0"}
    out = _run_driver(harness)
    for who in ("task", "actor"):
        address, listening = out[who]
        assert address.rpartition(":")[0] == PRIMARY, (who, address)
        assert listening == ["0.0.0.0"], (who, listening)
    assert out["driver"][0].rpartition(":")[0] == PRIMARY
    assert set(out["nodes"]) == {PRIMARY}


@needs_routable
def test_a_private_cluster_started_with_node_ip_address_listens_there(harness: CliHarness) -> None:
    code = _DRIVER.replace('ember.init(address="auto")', f'ember.init(num_cpus=1, _node_ip_address="{PRIMARY}")')
    done = harness.python(code, timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])
    for who in ("driver", "task", "actor"):
        address, listening = out[who]
        assert address.rpartition(":")[0] == PRIMARY and listening == [PRIMARY], (who, out[who])
    assert set(out["nodes"]) == {PRIMARY}


def test_an_address_of_another_machine_is_refused(harness: CliHarness) -> None:
    done = harness.ember("start", "--head", "--port", "0", "--node-ip-address", "198.51.100.77")
    assert done.returncode != 0
    assert "not an address of this machine" in done.stderr


def test_loopback_head_gives_no_tls_warning(harness: CliHarness) -> None:
    done = harness.ember("start", "--head", "--port", "0", "--num-cpus", "1")
    assert done.returncode == 0, done.stderr
    assert "without TLS" not in done.stderr
