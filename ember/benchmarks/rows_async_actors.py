"""Async-actor rows and the placement-group row of Ray's microbenchmark."""

from __future__ import annotations

from typing import Any

from .registry import RowSkipped, row, scaled
from .rows_actors import (actor_kinds, batch_calls_to_one, calls_from_four_tasks, calls_from_one_client,
                          kill_all)
from .timing import measure_rate


@row("1_1_async_actor_calls_sync", "calls/s")
def async_actor_calls_sync(rt: Any, scale: float) -> float:
    server = actor_kinds(rt).async_server.remote()
    try:
        return measure_rate(lambda: rt.get(server.small_value.remote()), 1, scale)
    finally:
        kill_all(rt, [server])


@row("1_1_async_actor_calls_async", "calls/s")
def async_actor_calls_async(rt: Any, scale: float) -> float:
    return batch_calls_to_one(rt, actor_kinds(rt).async_server.remote(), scale)


@row("1_1_async_actor_calls_with_args_async", "calls/s")
def async_actor_calls_with_args_async(rt: Any, scale: float) -> float:
    server = actor_kinds(rt).async_server.remote()
    batch = scaled(1000, scale)
    try:
        return measure_rate(
            lambda: rt.get([server.small_value_with_arg.remote(i) for i in range(batch)]),
            batch,
            scale,
        )
    finally:
        kill_all(rt, [server])


@row("1_n_async_actor_calls_async", "calls/s")
def one_to_n_async_actor_calls_async(rt: Any, scale: float) -> float:
    return calls_from_one_client(rt, actor_kinds(rt).async_server, scale)


@row("n_n_async_actor_calls_async", "calls/s")
def n_to_n_async_actor_calls_async(rt: Any, scale: float) -> float:
    return calls_from_four_tasks(rt, actor_kinds(rt).async_server, scale)


PLACEMENT_GROUP_RESOURCE = "custom"


@row(
    "placement_group_create_removal",
    "placement_groups/s",
    note="needs the shared runtime started with resources={'custom': 100}",
)
def placement_group_create_removal(rt: Any, scale: float) -> float:
    """Create 100 one-bundle groups, wait for each, then remove them all."""
    util = getattr(rt, "util", None)
    create = getattr(util, "placement_group", None)
    remove = getattr(util, "remove_placement_group", None)
    if create is None or remove is None:
        raise RowSkipped(f"{rt.__name__}.util.placement_group is missing")
    groups_count = scaled(100, scale)

    def create_and_remove() -> None:
        groups = [
            create(bundles=[{PLACEMENT_GROUP_RESOURCE: 0.001}]) for _ in range(groups_count)
        ]
        for group in groups:
            if not group.wait(timeout_seconds=30):
                raise TimeoutError("placement group not ready within 30 s")
        for group in groups:
            remove(group)

    return measure_rate(create_and_remove, groups_count, scale)
