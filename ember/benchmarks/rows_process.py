"""Rows measured in a fresh interpreter: cold start and idle memory footprint."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from .bootstrap import command
from .footprint import MIB, kill_tree
from .fresh import RESULT_PREFIX
from .registry import rows_with_outputs

FRESH_TIMEOUT_S = 180.0


def run_fresh(kind: str, runtime: str) -> tuple[dict[str, float], float]:
    """Run ``fresh.main([kind, runtime])`` in a new interpreter; (its result, wall seconds)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        command(sys.executable, "fresh", [kind, runtime]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=FRESH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_tree(child.pid)
        child.communicate()
        raise
    wall_s = time.perf_counter() - start
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if child.returncode != 0 or not lines:
        tail = (stderr or stdout)[-2000:]
        raise RuntimeError(f"fresh {kind} process exited {child.returncode}: {tail}")
    result: dict[str, float] = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return result, wall_s


@rows_with_outputs(
    "cold_start",
    [("cold_start", "s"), ("cold_start_init", "s")],
    needs_runtime=False,
    note="fresh interpreter: import, init(num_cpus=2), first task result, shutdown, exit",
)
def cold_start(rt: Any, scale: float) -> dict[str, float]:
    result, wall_s = run_fresh("cold_start", rt.__name__)
    return {"cold_start": wall_s, "cold_start_init": result["init_s"]}


@rows_with_outputs(
    "idle_footprint",
    [("idle_footprint_pss", "MiB"), ("idle_footprint_processes", "processes")],
    needs_runtime=False,
    note="PSS summed over the processes init(num_cpus=2) started, driver excluded",
)
def idle_footprint(rt: Any, scale: float) -> dict[str, float]:
    result, _ = run_fresh("idle_footprint", rt.__name__)
    return {
        "idle_footprint_pss": result["pss_bytes"] / MIB,
        "idle_footprint_processes": result["processes"],
    }
