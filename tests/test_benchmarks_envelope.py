"""The scalability envelope benchmark runs (its smallest sizes, ember only): every row finishes."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(HERE), "benchmarks", "envelope.py")


@pytest.mark.timeout(600)
def test_every_envelope_row_runs_at_tiny_sizes(tmp_path):
    out = tmp_path / "envelope.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--tiny", "--runtime", "ember", "--timeout", "240",
                           "--json", str(out)], capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert {r["row"] for r in results} == {"queued_tasks", "many_args", "many_returns", "get_many_refs",
                                           "actors", "spill_restore", "nested"}
    for r in results:
        assert "failed" not in r, r
        assert r["time_s"] > 0 and r["cluster_pss_mib"] > 0 and r["driver_rss_mib"] > 0
    assert "| row |" in proc.stdout
