"""ember's own rows that run on the shared runtime: latency, task throughput and
chains, many actors, and moving a 100 MiB array through put/get and tasks."""

from __future__ import annotations

import time
from typing import Any

from .footprint import MIB, pids_pss_bytes
from .registry import row, rows_with_outputs, scaled, scaled_bytes
from .timing import measure_rate, percentile, time_once

_GIB = 1024**3
_ARRAY_BYTES = 100 * MIB


def _noop_fn(rt: Any) -> Any:
    @rt.remote
    def noop() -> None:
        return None

    return noop


@rows_with_outputs(
    "task_roundtrip_latency",
    [("task_roundtrip_latency_p50", "us"), ("task_roundtrip_latency_p99", "us")],
)
def task_roundtrip_latency(rt: Any, scale: float) -> dict[str, float]:
    """Submit one no-op task and get its result, one at a time; per-call latency."""
    noop = _noop_fn(rt)
    for _ in range(scaled(100, scale)):
        rt.get(noop.remote())
    samples_us: list[float] = []
    for _ in range(scaled(2000, scale)):
        start = time.perf_counter()
        rt.get(noop.remote())
        samples_us.append((time.perf_counter() - start) * 1e6)
    return {
        "task_roundtrip_latency_p50": percentile(samples_us, 0.50),
        "task_roundtrip_latency_p99": percentile(samples_us, 0.99),
    }


@row("10k_noop_tasks", "s")
def noop_tasks_10k(rt: Any, scale: float) -> float:
    """Submit 10,000 no-op tasks at once and get them all (after a small warm-up)."""
    noop = _noop_fn(rt)
    rt.get([noop.remote() for _ in range(scaled(200, scale))])
    count = scaled(10_000, scale)
    return time_once(lambda: rt.get([noop.remote() for _ in range(count)]))


@row("chain_1000_dependent_tasks", "s")
def chain_1000_dependent_tasks(rt: Any, scale: float) -> float:
    """Each task takes the previous task's result ref as its argument."""

    @rt.remote
    def increment(x: int) -> int:
        return x + 1

    length = scaled(1000, scale)

    def run_chain(chain_length: int) -> None:
        ref = increment.remote(0)
        for _ in range(chain_length - 1):
            ref = increment.remote(ref)
        result = rt.get(ref)
        if result != chain_length:
            raise AssertionError(f"chain returned {result}, expected {chain_length}")

    run_chain(scaled(20, scale))
    return time_once(lambda: run_chain(length))


@rows_with_outputs(
    "100_actors_created_and_called",
    [("100_actors_created_and_called", "s"), ("100_actors_pss_per_actor", "MiB")],
)
def actors_100_created_and_called(rt: Any, scale: float) -> dict[str, float]:
    """Create 100 zero-CPU actors, call one method on each, get all the answers."""

    @rt.remote(num_cpus=0)
    class Pinger:
        def pid(self) -> int:
            import os

            return os.getpid()

    count = scaled(100, scale)
    start = time.perf_counter()
    actors = [Pinger.remote() for _ in range(count)]
    pids = rt.get([a.pid.remote() for a in actors])
    elapsed_s = time.perf_counter() - start
    try:
        pss_per_actor_mib = pids_pss_bytes(set(pids)) / len(actors) / MIB
    finally:
        for actor in actors:
            rt.kill(actor)
    return {
        "100_actors_created_and_called": elapsed_s,
        "100_actors_pss_per_actor": pss_per_actor_mib,
    }


def _filled_array(size_bytes: int) -> Any:
    import numpy as np

    return np.full(size_bytes, 7, dtype=np.uint8)


@row("array_100mib_put", "GiB/s")
def array_100mib_put(rt: Any, scale: float) -> float:
    array = _filled_array(scaled_bytes(_ARRAY_BYTES, scale))
    return measure_rate(lambda: rt.put(array), array.nbytes / _GIB, scale)


@row("array_100mib_get", "GiB/s", note="the array is read where it lies (zero-copy) when the runtime can")
def array_100mib_get(rt: Any, scale: float) -> float:
    array = _filled_array(scaled_bytes(_ARRAY_BYTES, scale))
    ref = rt.put(array)
    del array
    size_gib = scaled_bytes(_ARRAY_BYTES, scale) / _GIB
    return measure_rate(lambda: rt.get(ref), size_gib, scale)


@row("array_100mib_task_arg", "GiB/s")
def array_100mib_task_arg(rt: Any, scale: float) -> float:
    """Pass the array by value to a task that returns its length."""

    @rt.remote
    def length_of(values: Any) -> int:
        return len(values)

    array = _filled_array(scaled_bytes(_ARRAY_BYTES, scale))
    return measure_rate(lambda: rt.get(length_of.remote(array)), array.nbytes / _GIB, scale)


@row("array_100mib_task_return", "GiB/s", note="includes filling the array in the task")
def array_100mib_task_return(rt: Any, scale: float) -> float:
    """A task makes the array and returns it; the driver gets it."""

    @rt.remote
    def make_array(size_bytes: int) -> Any:
        import numpy

        return numpy.full(size_bytes, 7, dtype=numpy.uint8)

    size_bytes = scaled_bytes(_ARRAY_BYTES, scale)
    return measure_rate(lambda: rt.get(make_array.remote(size_bytes)), size_bytes / _GIB, scale)
