"""Actor rows of Ray's microbenchmark, for plain (threaded) actors.

The actor classes mirror the workload of Ray's rows: a zero-CPU ``Server`` answering
small calls, and a zero-CPU ``Client`` actor that calls a list of servers in a batch.
The "n" in the n-actor rows is half the machine's CPUs (at least one), as in Ray.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

from .registry import row, scaled
from .timing import measure_rate


@dataclass(frozen=True, slots=True)
class ActorKinds:
    """The remote classes and function the actor rows use, made for one runtime."""

    server: Any
    async_server: Any
    client: Any
    small_value: Any


def actor_kinds(rt: Any) -> ActorKinds:
    @rt.remote
    def small_value() -> bytes:
        return b"ok"

    @rt.remote(num_cpus=0)
    class Server:
        def small_value(self) -> bytes:
            return b"ok"

        def small_value_arg(self, x: Any) -> bytes:
            return b"ok"

    @rt.remote
    class AsyncServer:
        async def small_value(self) -> bytes:
            return b"ok"

        async def small_value_with_arg(self, x: Any) -> bytes:
            return b"ok"

    @rt.remote(num_cpus=0)
    class Client:
        def __init__(self, servers: Any) -> None:
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, count: int) -> None:
            refs = []
            for server in self.servers:
                refs.extend(server.small_value.remote() for _ in range(count))
            rt.get(refs)

        def small_value_batch_arg(self, count: int) -> None:
            arg = rt.put(0)
            refs = []
            for server in self.servers:
                refs.extend(server.small_value_arg.remote(arg) for _ in range(count))
            rt.get(refs)

    return ActorKinds(Server, AsyncServer, Client, small_value)


def half_cpus() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def kill_all(rt: Any, actors: Iterable[Any]) -> None:
    for actor in actors:
        rt.kill(actor)


def round_robin_task(rt: Any) -> Any:
    """A task that makes ``count`` calls spread over ``servers`` and gets them."""

    @rt.remote
    def call_round_robin(servers: list[Any], count: int) -> None:
        rt.get([servers[i % len(servers)].small_value.remote() for i in range(count)])

    return call_round_robin


@row("1_1_actor_calls_sync", "calls/s")
def actor_calls_sync(rt: Any, scale: float) -> float:
    server = actor_kinds(rt).server.remote()
    try:
        return measure_rate(lambda: rt.get(server.small_value.remote()), 1, scale)
    finally:
        kill_all(rt, [server])


@row("1_1_actor_calls_async", "calls/s")
def actor_calls_async(rt: Any, scale: float) -> float:
    return batch_calls_to_one(rt, actor_kinds(rt).server.remote(), scale)


@row("1_1_actor_calls_concurrent", "calls/s")
def actor_calls_concurrent(rt: Any, scale: float) -> float:
    return batch_calls_to_one(rt, actor_kinds(rt).server.options(max_concurrency=16).remote(), scale)


def batch_calls_to_one(rt: Any, server: Any, scale: float) -> float:
    """Batches of 1000 calls to one actor from the driver (the actor is killed afterwards)."""
    batch = scaled(1000, scale)
    try:
        return measure_rate(
            lambda: rt.get([server.small_value.remote() for _ in range(batch)]), batch, scale
        )
    finally:
        kill_all(rt, [server])


@row("1_n_actor_calls_async", "calls/s")
def one_to_n_actor_calls_async(rt: Any, scale: float) -> float:
    return calls_from_one_client(rt, actor_kinds(rt).server, scale)


def calls_from_one_client(rt: Any, server_cls: Any, scale: float) -> float:
    """One client actor makes 5000 calls to each of n servers of ``server_cls``."""
    kinds = actor_kinds(rt)
    per_server = scaled(5000, scale)
    servers = [server_cls.remote() for _ in range(half_cpus())]
    client = kinds.client.remote(servers)
    try:
        return measure_rate(
            lambda: rt.get(client.small_value_batch.remote(per_server)),
            per_server * len(servers),
            scale,
        )
    finally:
        kill_all(rt, [client, *servers])


@row("n_n_actor_calls_async", "calls/s")
def n_to_n_actor_calls_async(rt: Any, scale: float) -> float:
    """Four tasks each make 5000 calls spread over n servers."""
    return calls_from_four_tasks(rt, actor_kinds(rt).server, scale)


def calls_from_four_tasks(rt: Any, server_cls: Any, scale: float) -> float:
    """Four tasks each make 5000 calls spread over n servers of ``server_cls``."""
    servers = [server_cls.remote() for _ in range(half_cpus())]
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


@row("n_n_actor_calls_with_arg_async", "calls/s")
def n_to_n_actor_calls_with_arg_async(rt: Any, scale: float) -> float:
    """n client actors, each with its own server, make 1000 calls with an object arg."""
    kinds = actor_kinds(rt)
    per_client = scaled(1000, scale)
    servers = [kinds.server.remote() for _ in range(half_cpus())]
    clients = [kinds.client.remote(s) for s in servers]
    try:
        return measure_rate(
            lambda: rt.get([c.small_value_batch_arg.remote(per_client) for c in clients]),
            per_client * len(clients),
            scale,
        )
    finally:
        kill_all(rt, [*clients, *servers])
