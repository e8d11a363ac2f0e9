"""A group a node refused (its room was held by a lease at that moment) is offered again on later
heartbeats: it used to wait for a node to join or die and stayed PENDING on an idle cluster."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = """
import ember
from ember.util.placement_group import placement_group, remove_placement_group
ember.init(num_cpus=2)

@ember.remote
def ok():
    return 7

@ember.remote
def bad():
    raise ValueError("boom")

for _ in range(3):
    assert ember.get(ok.remote()) == 7
    try:
        ember.get(bad.remote())
    except ember.exceptions.RayTaskError:
        pass
    pg = placement_group([{"CPU": 0.5}])
    ember.get(pg.ready(), timeout=60)   # right after the failed task: its lease may still hold the CPU
    remove_placement_group(pg)
print("PLACED")
ember.shutdown()
"""


def test_a_refused_group_is_placed_once_the_room_frees(tmp_path):
    env = {**os.environ, "EMBER_TMPDIR": str(tmp_path)}
    env.pop("EMBER_ADDRESS", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0 and "PLACED" in done.stdout, done.stdout + done.stderr
