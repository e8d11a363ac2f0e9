"""How rows turn a workload into a number.

``measure_rate`` follows the shape of Ray's microbenchmark timer (warm up, then count
calls in fixed windows and report operations per second) with shorter windows so that
a whole run fits on a small machine: at scale 1 it warms up for 0.5 s and measures
three 1 s windows, and reports their median. Windows shrink with ``scale`` below 1.
A call slower than a window still counts: it then gets one warm-up and one measured
call.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable

WARMUP_S = 0.5
WINDOW_S = 1.0
WINDOWS = 3


def window_s_for(scale: float) -> float:
    return WINDOW_S * min(1.0, scale)


def measure_rate(fn: Callable[[], object], ops_per_call: float, scale: float) -> float:
    """Operations per second of ``fn`` (each call performs ``ops_per_call`` operations)."""
    window_s = window_s_for(scale)
    warmup_s = WARMUP_S * min(1.0, scale)
    start = time.perf_counter()
    fn()
    while time.perf_counter() - start < warmup_s:
        fn()
    rates: list[float] = []
    measure_start = time.perf_counter()
    while len(rates) < WINDOWS:
        if rates and time.perf_counter() - measure_start > WINDOWS * window_s:
            break
        calls = 0
        window_start = time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed_s = time.perf_counter() - window_start
            if elapsed_s >= window_s:
                break
        rates.append(ops_per_call * calls / elapsed_s)
    return statistics.median(rates)


def time_once(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values`` by the nearest-rank rule."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]
