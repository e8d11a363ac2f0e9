"""Smoke test of benchmarks/object_store.py: every row runs once with tiny arrays and the
table has the expected shape (no timing is asserted)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(240)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_row_runs_and_the_table_is_formatted(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "object_store.py"),
                           "--sizes-mib", "2,4", "--repeat", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert lines[0] == "| row | median GiB/s | best GiB/s | median time | median / memcpy |"
    rows = json.loads(out.read_text())["rows"]
    names = [row["row"] for row in rows]
    assert len(lines) == 2 + len(rows) == 14
    assert names[0].startswith("memcpy") and names[1].startswith("shm first touch")
    assert [n.split(" (")[0] for n in names[2:8]] == [
        "first put 2 MiB", "put 2 MiB", "get 2 MiB", "first put 4 MiB", "put 4 MiB", "get 4 MiB"]
    assert names[8].startswith("put 2 MiB that spills") and names[9].startswith("get 2 MiB of a spilled")
    assert names[10].startswith("get ") and "back through a store of" in names[10]
    assert names[11].startswith("cross-node get 4 MiB")
    assert rows[0]["ratio_to_memcpy"] == 1.0
    assert all(row["median_gib_s"] > 0 and row["runs"] >= 1 for row in rows)
