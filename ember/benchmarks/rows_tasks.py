"""Task rows of Ray's microbenchmark: batches, sync and async submission, many clients."""

from __future__ import annotations

from typing import Any

from .registry import row, scaled
from .timing import measure_rate


def _small_value_fn(rt: Any) -> Any:
    @rt.remote
    def small_value() -> bytes:
        return b"ok"

    return small_value


@row("single_client_tasks_and_get_batch", "batches/s")
def single_client_tasks_and_get_batch(rt: Any, scale: float) -> float:
    """One call submits a batch of 1000 tasks and gets them all (Ray counts batches)."""
    small_value = _small_value_fn(rt)
    batch = scaled(1000, scale)
    return measure_rate(lambda: rt.get([small_value.remote() for _ in range(batch)]), 1, scale)


@row("single_client_tasks_sync", "tasks/s")
def single_client_tasks_sync(rt: Any, scale: float) -> float:
    small_value = _small_value_fn(rt)
    return measure_rate(lambda: rt.get(small_value.remote()), 1, scale)


@row("single_client_tasks_async", "tasks/s")
def single_client_tasks_async(rt: Any, scale: float) -> float:
    small_value = _small_value_fn(rt)
    batch = scaled(1000, scale)
    return measure_rate(
        lambda: rt.get([small_value.remote() for _ in range(batch)]), batch, scale
    )


@row("multi_client_tasks_async", "tasks/s")
def multi_client_tasks_async(rt: Any, scale: float) -> float:
    """Four zero-CPU actors each submit a batch of 10k tasks and get them."""
    small_value = _small_value_fn(rt)
    per_client = scaled(10_000, scale)
    clients_count = 4

    @rt.remote(num_cpus=0)
    class Submitter:
        def submit_batch(self, count: int) -> None:
            rt.get([small_value.remote() for _ in range(count)])

    clients = [Submitter.remote() for _ in range(clients_count)]
    try:
        return measure_rate(
            lambda: rt.get([c.submit_batch.remote(per_client) for c in clients]),
            per_client * clients_count,
            scale,
        )
    finally:
        for client in clients:
            rt.kill(client)
