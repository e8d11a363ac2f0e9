"""Streaming generator rows: values yielded by a task, consumed by the caller as they come."""

from __future__ import annotations

from typing import Any

from .registry import row, scaled
from .timing import measure_rate


@row("single_client_generator_items", "items/s")
def single_client_generator_items(rt: Any, scale: float) -> float:
    """One task yields 10,000 small values; the caller gets each as it arrives (Ray's
    streaming generator, ``num_returns="streaming"``)."""
    items = scaled(10_000, scale)

    @rt.remote(num_returns="streaming")
    def produce(n: int) -> Any:
        for i in range(n):
            yield i

    def run() -> None:
        for ref in produce.remote(items):
            rt.get(ref)

    return measure_rate(run, items, scale)
