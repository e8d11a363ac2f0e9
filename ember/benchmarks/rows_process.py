"""Rows measured in a fresh interpreter: cold start and idle memory footprint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from .bootstrap import command
from .footprint import MIB, kill_tree
from .fresh import RESULT_PREFIX
from .registry import rows_with_outputs

FRESH_TIMEOUT_S = 180.0


def user_env(**overrides: str) -> dict[str, str]:
    """The environment a user has: bytecode is written and read (no PYTHONDONTWRITEBYTECODE or cache
    prefix inherited from the shell that runs the benchmark)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env.update(overrides)
    return env


def run_fresh(kind: str, runtime: str, env: Optional[dict[str, str]] = None) -> tuple[dict[str, float], float]:
    """Run ``fresh.main([kind, runtime])`` in a new interpreter; (its result, wall seconds)."""
    start = time.perf_counter()
    child = subprocess.Popen(
        command(sys.executable, "fresh", [kind, runtime]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else user_env(),
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
    note="fresh interpreter, compiled bytecode present: import, init(num_cpus=2), first task result, shutdown",
)
def cold_start(rt: Any, scale: float) -> dict[str, float]:
    run_fresh("cold_start", rt.__name__)  # untimed: writes whatever bytecode is missing, as a user's first run
    result, wall_s = run_fresh("cold_start", rt.__name__)
    return {"cold_start": wall_s, "cold_start_init": result["init_s"]}


@rows_with_outputs(
    "cold_start_no_bytecode",
    [("cold_start_no_bytecode", "s"), ("cold_start_no_bytecode_init", "s")],
    needs_runtime=False,
    note="as cold_start, but the runtime's own modules have no compiled bytecode (Python and other "
         "packages keep theirs): every process compiles them from source",
)
def cold_start_no_bytecode(rt: Any, scale: float) -> dict[str, float]:
    prefix = tempfile.mkdtemp(prefix="ember-bench-pycache-")
    try:
        run_fresh("cold_start", rt.__name__, user_env(PYTHONPYCACHEPREFIX=prefix))  # caches everything there
        package_dir = os.path.dirname(os.path.abspath(rt.__file__))
        for path in {os.path.abspath(package_dir), os.path.realpath(package_dir)}:
            shutil.rmtree(prefix + path, ignore_errors=True)   # ...then forgets the runtime's own modules
        env = user_env(PYTHONPYCACHEPREFIX=prefix, PYTHONDONTWRITEBYTECODE="1")
        result, wall_s = run_fresh("cold_start", rt.__name__, env)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
    return {"cold_start_no_bytecode": wall_s, "cold_start_no_bytecode_init": result["init_s"]}


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
