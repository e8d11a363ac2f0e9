"""Finding a cluster the way Ray does, with real second drivers and the CLI (issue #19 section 2).

Every test has a session root of its own (CliHarness on tmp_path); drivers are subprocesses.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from cli_harness import CliHarness

pytestmark = pytest.mark.timeout(240)

HOLD = """
import sys, ember
ctx = ember.init({init_args})
@ember.remote
class Keeper:
    def ping(self):
        return "pong"
keeper = Keeper.options(name="keeper", namespace="shared", lifetime="detached").remote()
assert ember.get(keeper.ping.remote()) == "pong"
ref = ember.put(b"x" * 200_000)
print("READY", ctx["address"], ctx["session_dir"], flush=True)
sys.stdin.read()
ember.shutdown()
print("DONE", flush=True)
"""

JOIN_AUTO = """
import ember
ctx = ember.init(address="auto")
keeper = ember.get_actor("keeper", namespace="shared")
print("JOINED", ctx["address"], ember.get(keeper.ping.remote()), flush=True)
"""


class HeldDriver:
    """A driver subprocess that runs ``init`` and keeps its cluster until told to stop."""

    def __init__(self, harness: CliHarness, init_args: str = "num_cpus=1") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD.format(init_args=init_args)], env=harness.env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise AssertionError(f"driver did not start: {line}{self.proc.stderr.read()}")
        _, self.address, self.session_dir = line.split()

    def finish(self) -> str:
        out, err = self.proc.communicate("", timeout=60)
        assert self.proc.returncode == 0, err
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def harness(tmp_path):
    h = CliHarness(str(tmp_path / "root"))
    yield h
    h.ember("stop", "--force", timeout_s=60)
    left = h.kill_leftovers()
    assert not left, f"processes left behind: {left}"


def _wait_gone(pids: list[int], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]:
            return
        time.sleep(0.1)
    raise AssertionError(f"still running: {pids}")


def test_auto_status_and_memory_find_a_driver_cluster_until_it_shuts_down(harness):
    held = HeldDriver(harness)
    try:
        joined = harness.python(JOIN_AUTO)
        assert joined.returncode == 0, joined.stderr
        assert f"JOINED {held.address} pong" in joined.stdout
        status = harness.ember("status")
        assert status.returncode == 0, status.stderr
        assert f"Control store: {held.address}" in status.stdout and "1 node(s)" in status.stdout
        memory = harness.ember("memory", "--stats-only")
        assert memory.returncode == 0, memory.stderr
        assert held.session_dir.startswith(harness.root) and os.path.isdir(held.session_dir)
    finally:
        out = held.finish()
    assert "DONE" in out
    assert not os.path.exists(held.session_dir), "a clean shutdown removes the init() session directory"
    gone = harness.python("import ember\nember.init(address='auto')")
    assert gone.returncode != 0 and "ConnectionError: Could not find any running ember instance" in gone.stderr
    status = harness.ember("status")
    assert status.returncode == 1 and "no ember cluster is running" in status.stderr


def test_no_address_starts_a_private_cluster_even_when_a_driver_cluster_runs(harness):
    held = HeldDriver(harness)
    try:
        code = "import ember\nctx = ember.init(num_cpus=1)\nprint('ADDR', ctx['address'])\nember.shutdown()"
        other = harness.python(code)
        assert other.returncode == 0, other.stderr
        address = other.stdout.split("ADDR ")[1].split()[0]
        assert address != held.address
    finally:
        held.finish()


def test_no_address_joins_the_head_and_local_never_does(harness):
    port = harness.start_head("--num-cpus", "1")
    head = f"127.0.0.1:{port}"
    code = ("import ember\nctx = ember.init(address={addr})\nprint('ADDR', ctx['address'], "
            "ember.cluster_resources()['CPU'])\nember.shutdown()")
    joined = harness.python(code.format(addr="None"))
    assert joined.returncode == 0, joined.stderr
    assert f"ADDR {head} 1.0" in joined.stdout
    private = harness.python(code.format(addr="'local'"))
    assert private.returncode == 0, private.stderr
    assert "ADDR 127.0.0.1:" in private.stdout and f"ADDR {head} " not in private.stdout
    refused = harness.python("import ember\nember.init(num_cpus=3)")
    assert refused.returncode != 0 and "must not be provided" in refused.stderr


def test_address_from_the_environment_wins(harness, tmp_path):
    held = HeldDriver(harness)
    other_root = CliHarness(str(tmp_path / "other"), {"EMBER_ADDRESS": held.address})
    try:
        # Another session root: the token comes from the environment, the address from EMBER_ADDRESS.
        with open(os.path.join(held.session_dir, "token")) as f:
            other_root.env["EMBER_CLUSTER_TOKEN"] = f.read().strip()
        done = other_root.python("import ember\nctx = ember.init()\nprint('ADDR', ctx['address'])")
        assert done.returncode == 0, done.stderr
        assert f"ADDR {held.address}" in done.stdout
    finally:
        held.finish()


def test_a_crashed_cluster_is_skipped_not_waited_on(harness):
    held = HeldDriver(harness)
    daemons = [p.pid for p in psutil.Process(held.proc.pid).children()]
    held.kill()                      # SIGKILL: no shutdown; the daemons die with their driver
    _wait_gone(daemons)
    assert os.path.exists(os.path.join(held.session_dir, "cluster.json")), "the stale record stays"
    started = time.monotonic()
    gone = harness.python("import ember\nember.init(address='auto')")
    assert gone.returncode != 0 and "Could not find any running ember instance" in gone.stderr
    status = harness.ember("status")
    assert status.returncode == 1 and "no ember cluster is running" in status.stderr
    assert time.monotonic() - started < 60  # bounded: never hangs on the stale record (not a speed test)


def test_a_crashed_head_is_skipped_and_init_starts_a_new_cluster(harness):
    port = harness.start_head("--num-cpus", "1")
    for entry in harness.pid_entries():
        os.kill(entry["pid"], signal.SIGKILL)
    _wait_gone([e["pid"] for e in harness.pid_entries()])
    code = "import ember\nctx = ember.init(num_cpus=1)\nprint('ADDR', ctx['address'])\nember.shutdown()"
    fresh = harness.python(code)
    assert fresh.returncode == 0, fresh.stderr
    assert "ADDR 127.0.0.1:" in fresh.stdout and f":{port}" not in fresh.stdout
    auto = harness.python("import ember\nember.init(address='auto')")
    assert auto.returncode != 0 and f"127.0.0.1:{port} is no longer running" in auto.stderr


def test_two_driver_clusters_make_auto_ask_for_an_address(harness):
    first, second = HeldDriver(harness), HeldDriver(harness)
    try:
        auto = harness.python("import ember\nember.init(address='auto')")
        assert auto.returncode != 0 and "Found multiple active ember instances" in auto.stderr
        assert first.address in auto.stderr and second.address in auto.stderr
    finally:
        first.finish()
        second.finish()


def test_keep_sessions_and_session_latest(harness):
    harness.env["EMBER_KEEP_SESSIONS"] = "1"
    code = "import ember\nctx = ember.init(num_cpus=1)\nprint('DIR', ctx['session_dir'])\nember.shutdown()"
    kept = harness.python(code)
    assert kept.returncode == 0, kept.stderr
    session_dir = kept.stdout.split("DIR ")[1].split()[0]
    assert os.path.isdir(os.path.join(session_dir, "logs"))
    assert not os.path.exists(os.path.join(session_dir, "cluster.json")), "a stopped cluster is not advertised"
    assert os.readlink(os.path.join(harness.root, "session_latest")) == os.path.basename(session_dir)


def test_a_wrong_token_is_named_as_refused_with_its_source(harness, tmp_path):
    held = HeldDriver(harness)
    try:
        wrong = tmp_path / "wrong_token"
        wrong.write_text("0" * 64)
        env_driver = CliHarness(harness.root, {"EMBER_CLUSTER_TOKEN": "0" * 64})
        done = env_driver.python(f"import ember\nember.init(address='{held.address}')")
        assert done.returncode != 0
        assert "refused this driver's cluster token (read from the environment variable EMBER_CLUSTER_TOKEN)" \
            in done.stderr
        status = harness.ember("status", "--token-file", str(wrong))
        assert status.returncode == 1
        assert f"refused the cluster token read from the file {wrong}" in status.stderr
        assert "Is the cluster running" not in status.stderr
        memory = env_driver.ember("memory", "--address", held.address)
        assert memory.returncode == 1 and "the environment variable EMBER_CLUSTER_TOKEN" in memory.stderr
        joining = harness.ember("start", "--address", held.address, "--token-file", str(wrong))
        assert joining.returncode == 1 and f"refused the cluster token read from the file {wrong}" in joining.stderr
    finally:
        held.finish()


def test_the_token_is_on_no_command_line(harness):
    harness.start_head("--num-cpus", "1")
    token = harness.token()
    held = HeldDriver(harness, "address='local', num_cpus=1")
    try:
        with open(os.path.join(held.session_dir, "token")) as f:
            tokens = {token, f.read().strip()}
        joined = harness.python("import ember\n@ember.remote\ndef one():\n    return 1\n"
                                "ember.init()\nprint(ember.get(one.remote()))")
        assert joined.returncode == 0, joined.stderr
        seen = [p for p in harness.processes()] + [psutil.Process(held.proc.pid)]
        assert len(seen) >= 4
        for proc in seen:
            cmdline = " ".join(proc.cmdline())
            assert not any(t in cmdline for t in tokens), cmdline
        refused = harness.ember("start", "--address", "127.0.0.1:1", "--token", token)
        assert refused.returncode == 2 and "visible to every local user in `ps`" in refused.stderr
        assert "--token-file" in harness.ember("start", "--help").stdout
    finally:
        held.finish()


def test_a_hung_head_costs_a_bounded_wait_not_a_hang(harness):
    harness.start_head("--num-cpus", "1")
    store = next(e["pid"] for e in harness.pid_entries() if e["role"] == "control_store")
    harness.env["EMBER_CONNECT_TIMEOUT_S"] = "3"
    os.kill(store, signal.SIGSTOP)      # its port still accepts connections; nobody answers
    try:
        status = harness.ember("status", timeout_s=60)
        assert status.returncode == 1 and "could not reach the ember control store" in status.stderr
        driver = harness.python("import ember\nember.init(address='auto')", timeout_s=90)
        assert driver.returncode != 0 and "did not answer within 3 s" in driver.stderr
    finally:
        os.kill(store, signal.SIGCONT)
