"""The fresh-interpreter side of the ``cold_start`` and ``idle_footprint`` rows.

Run as ``main(["cold_start" | "idle_footprint", RUNTIME_MODULE])`` in a new process
(see ``bootstrap.command``); prints one line ``RESULT_PREFIX {json}`` and exits.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from typing import Any

RESULT_PREFIX = "EMBER_BENCH_RESULT "
INIT_NUM_CPUS = 2
SETTLE_POLL_S = 0.5
SETTLE_POLLS = 4
SETTLE_MAX_S = 30.0
SETTLE_RSS_TOLERANCE = 0.01


def cold_start(runtime: str) -> dict[str, float]:
    start = time.perf_counter()
    rt = importlib.import_module(runtime)
    imported = time.perf_counter()
    rt.init(address="local", num_cpus=INIT_NUM_CPUS)
    initialized = time.perf_counter()

    @rt.remote
    def one() -> int:
        return 1

    if rt.get(one.remote()) != 1:
        raise AssertionError("first task returned a wrong value")
    first_result = time.perf_counter()
    rt.shutdown()
    stopped = time.perf_counter()
    return {
        "import_s": imported - start,
        "init_s": initialized - imported,
        "first_task_s": first_result - initialized,
        "shutdown_s": stopped - first_result,
    }


def idle_footprint(runtime: str) -> dict[str, float]:
    from .footprint import TAG_ENV, cluster_processes, pss_bytes, rss_bytes, session_markers

    tag = uuid.uuid4().hex
    os.environ[TAG_ENV] = tag
    rt = importlib.import_module(runtime)
    rt.init(address="local", num_cpus=INIT_NUM_CPUS)
    try:
        markers = session_markers(rt)
        processes = _wait_settled(lambda: cluster_processes(os.getpid(), markers, tag), rss_bytes)
        return {"pss_bytes": float(pss_bytes(processes)), "processes": float(len(processes))}
    finally:
        rt.shutdown()


def _wait_settled(find: Any, rss_of: Any) -> list[Any]:
    """Poll until the set of processes and their RSS stop changing (start-up is over)."""
    deadline = time.monotonic() + SETTLE_MAX_S
    last_pids: set[int] = set()
    last_rss = 0
    calm_polls = 0
    processes: list[Any] = []
    while time.monotonic() < deadline and calm_polls < SETTLE_POLLS:
        time.sleep(SETTLE_POLL_S)
        processes = find()
        pids = {p.pid for p in processes}
        rss = rss_of(processes)
        is_calm = pids == last_pids and abs(rss - last_rss) <= SETTLE_RSS_TOLERANCE * max(rss, 1)
        calm_polls = calm_polls + 1 if is_calm else 0
        last_pids, last_rss = pids, rss
    return processes


_KINDS = {"cold_start": cold_start, "idle_footprint": idle_footprint}


def main(argv: list[str]) -> int:
    kind, runtime = argv
    result = _KINDS[kind](runtime)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0
