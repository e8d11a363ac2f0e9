"""Nested blocking tasks start one worker per blocked level (as Ray's do); past a threshold the node daemon
warns the job, and the driver prints it, instead of silently filling memory with workers."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)

SCRIPT = """
import ember
ember.init(num_cpus=1)

@ember.remote
def nest(depth):
    if depth == 0:
        return 0
    return 1 + ember.get(nest.remote(depth - 1))

print("DEPTH", ember.get(nest.remote(9), timeout=150))
ember.shutdown()
"""


def test_nested_blocking_tasks_are_correct_and_warn_past_the_threshold(tmp_path):
    env = {**os.environ, "EMBER_WORKER_WARNING_THRESHOLD": "4", "EMBER_TMPDIR": str(tmp_path)}
    env.pop("EMBER_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DEPTH 9" in done.stdout
    warnings = [ln for ln in done.stderr.splitlines() if "worker processes have been started on node" in ln]
    # 10 levels -> 10 workers: warned at 4 and 8, not at every worker
    assert [w.split("WARNING: ")[1].split()[0] for w in warnings] == ["4", "8"], done.stderr
    assert "blocked in ember.get()" in warnings[0]
