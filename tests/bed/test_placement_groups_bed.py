"""Placement groups across real hosts of the bed (tests/bed/netbed.py): three hosts of 1 CPU each,
every node at its own IP; this process is the driver.

- a STRICT_SPREAD group puts one bundle on each host, and tasks in bundle i run on bundle i's host;
- the two-phase commit rolls back for real: a host busy with a task refuses its bundle, the
  bundles the other hosts had prepared are released (their CPUs are free again), and the group
  is placed once the task ends;
- a group too big for the cluster waits (with a warning) until a host that fits joins;
- when a host holding a bundle dies, that bundle is re-reserved on another host (the last test:
  it kills a host).
"""
from __future__ import annotations

import time

import pytest

import ember
from bed.netbed import HostSpec, NetBed, bed_fixture
from ember.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

pytestmark = pytest.mark.timeout(240)

# Hosts 1 and 2 (and the one that joins later) carry "worker_host": groups asking for it stay off
# the head, so a test can kill the host of a bundle without killing the cluster.
three_hosts = bed_fixture([HostSpec(num_cpus=1)] + [HostSpec(num_cpus=1, resources={"worker_host": 1})] * 2)


@ember.remote(num_cpus=1)
def node_id() -> str:
    return ember.get_runtime_context().get_node_id()


@ember.remote(num_cpus=1)
def hold_cpu(seconds: float) -> str:
    time.sleep(seconds)
    return ember.get_runtime_context().get_node_id()


def wait_for(cond, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_strict_spread_puts_one_bundle_on_each_host(three_hosts: NetBed) -> None:
    three_hosts.wait_nodes(3)
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    try:
        assert pg.wait(30)
        where = placement_group_table(pg)["bundles_to_node_id"]
        hosts = {three_hosts.node_id(i) for i in range(3)}
        assert set(where.values()) == hosts
        ran = ember.get([node_id.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
                         for i in range(3)], timeout=60)
        assert ran == [where[i] for i in range(3)]
        # Four bundles cannot be spread over three hosts: pending, not placed twice on one host.
        too_many = placement_group([{"CPU": 0.1}] * 4, strategy="STRICT_SPREAD")
        assert not too_many.wait(1.0)
        remove_placement_group(too_many)
    finally:
        remove_placement_group(pg)
    wait_for(lambda: ember.available_resources().get("CPU") == 3.0)


def test_a_refusing_host_rolls_back_the_bundles_the_others_prepared(three_hosts: NetBed) -> None:
    three_hosts.wait_nodes(3)
    busy_host = three_hosts.node_id(2)
    busy = hold_cpu.options(scheduling_strategy=NodeAffinitySchedulingStrategy(busy_host, soft=False)).remote(6.0)
    wait_for(lambda: ember.available_resources().get("CPU", 0.0) == 2.0)
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    try:
        assert not pg.wait(2.0)
        assert placement_group_table(pg)["state"] == "PENDING"
        # The two idle hosts prepared their bundle, then released it when host 2 said no:
        # their CPUs are free, nothing is reserved for a group that does not exist.
        free = ember.available_resources()
        assert free.get("CPU") == 2.0 and not any(pg.id.hex() in k for k in free)
        assert ember.get(busy, timeout=60) == busy_host
        assert pg.wait(30)  # the busy host's CPU came back: placed on all three
        assert set(placement_group_table(pg)["bundles_to_node_id"].values()) == {three_hosts.node_id(i) for i in range(3)}
    finally:
        remove_placement_group(pg)
    wait_for(lambda: ember.available_resources().get("CPU") == 3.0)


def test_a_group_waits_for_a_host_that_fits_to_join(three_hosts: NetBed) -> None:
    pg = placement_group([{"CPU": 2}], strategy="STRICT_PACK")
    try:
        assert not pg.wait(1.0)
        three_hosts.add_host(HostSpec(num_cpus=2, resources={"worker_host": 1}))
        assert pg.wait(60)
        new_node = placement_group_table(pg)["bundles_to_node_id"][0]
        assert new_node not in {three_hosts.node_id(i) for i in range(3)}
        ran = ember.get(node_id.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote(),
                        timeout=60)
        assert ran == new_node
    finally:
        remove_placement_group(pg)


def test_a_bundle_lost_with_its_host_is_re_reserved_elsewhere(three_hosts: NetBed) -> None:
    three_hosts.wait_nodes(4)  # the host added by the previous test
    pg = placement_group([{"CPU": 1, "worker_host": 1}] * 2, strategy="STRICT_SPREAD")
    try:
        assert pg.wait(30)
        before = placement_group_table(pg)["bundles_to_node_id"]
        hosts = {three_hosts.node_id(i): i for i in range(4)}
        lost = hosts[before[1]]
        three_hosts.kill_host(lost)
        after = wait_for(lambda: (lambda t: t["bundles_to_node_id"] if t["state"] == "CREATED"
                                  and t["bundles_to_node_id"].get(1) not in (None, before[1]) else None)(
                                      placement_group_table(pg)), 60)
        assert after[0] == before[0] and after[1] not in (before[0], before[1])
        ran = ember.get(node_id.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1)).remote(),
                        timeout=60)
        assert ran == after[1]
    finally:
        remove_placement_group(pg)
