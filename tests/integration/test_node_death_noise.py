"""What a driver prints when a node dies: one line per dead node, nothing pending at exit.

A two-node CLI cluster (the second node alone has ``{"special": 1}``); a driver subprocess
runs tasks of several functions there, the second node's daemon is SIGKILLed, and the
driver submits again while the head's daemon still believes in the dead node (its view is
refreshed on heartbeats, made slow here), so its lease requests are spilled to a dead
address.  The driver's stderr is captured and its lines counted (issue #19 §3).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from cli_harness import CliHarness

pytestmark = pytest.mark.timeout(180)

DRIVER = textwrap.dedent("""
    import sys, time
    import ember
    ember.init(address=sys.argv[1])

    def make(i):
        @ember.remote(resources={"special": 1}, max_retries=0)
        def special():
            return i
        special.__name__ = special.__qualname__ = f"special_{i}"
        return special

    fns = [make(i) for i in range(4)]
    assert ember.get([f.remote() for f in fns], timeout=60) == [0, 1, 2, 3]
    print("READY", flush=True)
    sys.stdin.readline()          # the second node is dead now
    pending = [f.remote() for f in fns]
    ember.wait(pending, num_returns=len(pending), timeout=6)
    print("END", flush=True)      # exits with the tasks still pending
""")


def test_a_dead_node_is_reported_once_and_nothing_is_left_pending_at_exit(tmp_path) -> None:
    harness = CliHarness(str(tmp_path / "root"), {"EMBER_HEARTBEAT_INTERVAL_S": "2"})
    driver = None
    try:
        port = harness.start_head("--num-cpus", "1")
        joined = harness.ember("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                               "--resources", '{"special": 1}')
        assert joined.returncode == 0, joined.stderr
        env = dict(harness.env, EMBER_CLUSTER_TOKEN=harness.token())
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, f"127.0.0.1:{port}"], env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert driver.stdout.readline().strip() == "READY"
        target = next(e for e in harness.pid_entries() if _is_second_node_daemon(e["pid"]))
        os.kill(target["pid"], signal.SIGKILL)
        driver.stdin.write("go\n")
        driver.stdin.flush()
        out, err = driver.communicate(timeout=90)
        assert driver.returncode == 0, f"{out}\n{err}"
        assert "END" in out
        assert "retrying" not in err, err
        assert err.count("failed (") <= 1 and err.count("the node probably died") <= 1, err
        assert "Task was destroyed but it is pending" not in err, err
        # Each function says once that it waits for a node with "special" to join.
        assert err.count("cannot be scheduled right now") <= 4, err
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        harness.ember("stop")
        harness.kill_leftovers()


def _is_second_node_daemon(pid: int) -> bool:
    try:
        cmd = psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return False
    return "ember.shells.node.node_daemon" in " ".join(cmd) and "--head" not in cmd
