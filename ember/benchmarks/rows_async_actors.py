"""Async-actor rows and the placement-group row of Ray's microbenchmark."""

from __future__ import annotations

from typing import Any

from .registry import RowSkipped, row, scaled
from .rows_actors import actor_kinds, half_cpus, kill_all, round_robin_task
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
    server = actor_kinds(rt).async_server.remote()
    batch = scaled(1000, scale)
    try:
        return measure_rate(
            lambda: rt.get([server.small_value.remote() for _ in range(batch)]), batch, scale
        )
    finally:
        kill_all(rt, [server])


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
    kinds = actor_kinds(rt)
    per_server = scaled(5000, scale)
    servers = [kinds.async_server.remote() for _ in range(half_cpus())]
    client = kinds.client.remote(servers)
    try:
        return measure_rate(
            lambda: rt.get(client.small_value_batch.remote(per_server)),
            per_server * len(servers),
            scale,
        )
    finally:
        kill_all(rt, [client, *servers])


@row("n_n_async_actor_calls_async", "calls/s")
def n_to_n_async_actor_calls_async(rt: Any, scale: float) -> float:
    servers = [actor_kinds(rt).async_server.remote() for _ in range(half_cpus())]
    call_round_robin = round_robin_task(rt)
    per_task = scaled(5000, scale)
    tasks = 4
    try:
        return measure_rate(
            lambda: rt.get([call_round_robin.remote(servers, per_task) for _ in range(tasks)]),
            per_task * tasks,
            scale,
        )
    finally:
        kill_all(rt, servers)


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
