"""Object-store rows of Ray's microbenchmark: get, put, refs inside objects, wait.

Remote functions are defined inside the row functions on purpose: cloudpickle then
ships them by value, so a worker never has to import this module (it is loaded under
another name inside Ray's virtual environment).
"""

from __future__ import annotations

from typing import Any

from .registry import row, scaled, scaled_bytes
from .timing import measure_rate

_GB = 1e9
_INT64_BYTES = 8
# Ray's rows put arrays of 100 Mi int64 (800 MiB) and 10 Mi int64 (80 MiB).
_LARGE_ARRAY_BYTES = 100 * 1024 * 1024 * _INT64_BYTES
_MEDIUM_ARRAY_BYTES = 10 * 1024 * 1024 * _INT64_BYTES


@row("single_client_get_calls", "calls/s")
def single_client_get_calls(rt: Any, scale: float) -> float:
    value = rt.put(0)
    return measure_rate(lambda: rt.get(value), 1, scale)


@row("single_client_put_calls", "calls/s")
def single_client_put_calls(rt: Any, scale: float) -> float:
    return measure_rate(lambda: rt.put(0), 1, scale)


@row("multi_client_put_calls", "calls/s")
def multi_client_put_calls(rt: Any, scale: float) -> float:
    puts_per_task = scaled(100, scale)
    tasks = 10

    @rt.remote
    def put_small_many(count: int) -> None:
        for _ in range(count):
            rt.put(0)

    def one_round() -> None:
        rt.get([put_small_many.remote(puts_per_task) for _ in range(tasks)])

    return measure_rate(one_round, puts_per_task * tasks, scale)


@row("single_client_put_gigabytes", "GB/s")
def single_client_put_gigabytes(rt: Any, scale: float) -> float:
    import numpy as np

    array = np.zeros(scaled_bytes(_LARGE_ARRAY_BYTES, scale) // _INT64_BYTES, dtype=np.int64)
    return measure_rate(lambda: rt.put(array), array.nbytes / _GB, scale)


@row("multi_client_put_gigabytes", "GB/s")
def multi_client_put_gigabytes(rt: Any, scale: float) -> float:
    length = scaled_bytes(_MEDIUM_ARRAY_BYTES, scale) // _INT64_BYTES
    puts_per_task = 10
    tasks = 10

    @rt.remote
    def put_arrays(count: int, array_length: int) -> None:
        import numpy

        for _ in range(count):
            rt.put(numpy.zeros(array_length, dtype=numpy.int64))

    def one_round() -> None:
        rt.get([put_arrays.remote(puts_per_task, length) for _ in range(tasks)])

    total_gb = tasks * puts_per_task * length * _INT64_BYTES / _GB
    return measure_rate(one_round, total_gb, scale)


@row("single_client_get_object_containing_10k_refs", "calls/s")
def single_client_get_object_containing_10k_refs(rt: Any, scale: float) -> float:
    ref_count = scaled(10_000, scale)

    @rt.remote
    def make_refs(count: int) -> list[Any]:
        return [rt.put(1) for _ in range(count)]

    holder = make_refs.remote(ref_count)
    return measure_rate(lambda: rt.get(holder), 1, scale)


@row("single_client_wait_1k_refs", "calls/s")
def single_client_wait_1k_refs(rt: Any, scale: float) -> float:
    ref_count = scaled(1000, scale)

    @rt.remote
    def small_value() -> bytes:
        return b"ok"

    def wait_each() -> None:
        pending = [small_value.remote() for _ in range(ref_count)]
        # As in Ray's row: the first wait asks for local fetches, the others do not.
        is_first = True
        while pending:
            _, pending = rt.wait(pending, fetch_local=is_first)
            is_first = False

    return measure_rate(wait_each, 1, scale)
