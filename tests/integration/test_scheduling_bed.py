"""Scheduling strategies on four real hosts (the multi-host bed, tests/bed/netbed.py).

Hosts 0 and 1 are labelled zone a, hosts 2 and 3 zone b; host 3 also has ``disk: ssd``. Each host
has 2 CPUs. The last test kills host 3, so it must stay last.
"""
from __future__ import annotations

import time

import pytest

import ember
from bed.netbed import HostSpec, NetBed, bed_fixture
from ember.exceptions import ActorUnschedulableError, TaskUnschedulableError
from ember.util.scheduling_strategies import (DoesNotExist, Exists, In, NodeAffinitySchedulingStrategy,
                                              NodeLabelSchedulingStrategy, NotIn)

pytestmark = pytest.mark.timeout(240)

HEARTBEAT_TIMEOUT_S = 2.0

four_hosts = bed_fixture([HostSpec(num_cpus=2, labels={"zone": "a"}), HostSpec(num_cpus=2, labels={"zone": "a"}),
                          HostSpec(num_cpus=2, labels={"zone": "b"}),
                          HostSpec(num_cpus=2, labels={"zone": "b", "disk": "ssd"})],
                         env={"EMBER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)})


@ember.remote(num_cpus=1)
def where(sleep_s: float = 0.0) -> str:
    time.sleep(sleep_s)
    return ember.get_runtime_context().get_node_id()


@ember.remote(num_cpus=1)
class Where:
    def node(self) -> str:
        return ember.get_runtime_context().get_node_id()


def _hosts(bed: NetBed, node_ids: list[str]) -> set[int]:
    return {bed.host_of(n) for n in node_ids}


def test_nodes_carry_their_labels(four_hosts: NetBed) -> None:
    by_ip = {n["NodeManagerAddress"]: n["Labels"] for n in ember.nodes()}
    assert by_ip[four_hosts.hosts[0].ip] == {"zone": "a"}
    assert by_ip[four_hosts.hosts[3].ip] == {"zone": "b", "disk": "ssd"}


def _fresh_views() -> None:
    """Let every node daemon's view of the others catch up (views travel with heartbeats)."""
    time.sleep(1.5)


def test_spread_uses_every_host(four_hosts: NetBed) -> None:
    _fresh_views()
    refs = [where.options(scheduling_strategy="SPREAD").remote(1.0) for _ in range(8)]
    assert _hosts(four_hosts, ember.get(refs, timeout=120)) == {0, 1, 2, 3}


def test_default_uses_every_host_when_the_work_needs_them(four_hosts: NetBed) -> None:
    _fresh_views()
    refs = [where.remote(1.5) for _ in range(8)]  # 8 CPUs of work at once on 4 x 2 CPUs
    assert _hosts(four_hosts, ember.get(refs, timeout=120)) == {0, 1, 2, 3}


def test_spread_actors_land_on_every_host(four_hosts: NetBed) -> None:
    _fresh_views()
    actors = [Where.options(scheduling_strategy="SPREAD").remote() for _ in range(4)]
    try:
        assert _hosts(four_hosts, ember.get([a.node.remote() for a in actors], timeout=120)) == {0, 1, 2, 3}
    finally:
        for a in actors:
            ember.kill(a)


def test_hard_node_affinity_runs_on_that_host(four_hosts: NetBed) -> None:
    for i in range(4):
        on = NodeAffinitySchedulingStrategy(node_id=four_hosts.node_id(i), soft=False)
        assert ember.get(where.options(scheduling_strategy=on).remote(), timeout=60) == four_hosts.node_id(i)


def test_hard_node_affinity_to_an_unknown_node_fails_clearly(four_hosts: NetBed) -> None:
    on = NodeAffinitySchedulingStrategy(node_id="ab" * 16, soft=False)
    with pytest.raises(TaskUnschedulableError, match="not a node of this cluster"):
        ember.get(where.options(scheduling_strategy=on).remote(), timeout=60)


def test_soft_node_affinity_to_an_unknown_node_falls_back(four_hosts: NetBed) -> None:
    on = NodeAffinitySchedulingStrategy(node_id="ab" * 16, soft=True)
    assert ember.get(where.options(scheduling_strategy=on).remote(), timeout=60) in {
        four_hosts.node_id(i) for i in range(4)}


@pytest.mark.parametrize("hard,expected", [
    ({"zone": In("b")}, {2, 3}),
    ({"zone": NotIn("b")}, {0, 1}),
    ({"disk": Exists()}, {3}),
    ({"disk": DoesNotExist(), "zone": In("a", "b")}, {0, 1, 2}),
])
def test_hard_label_selectors_pick_matching_hosts(four_hosts: NetBed, hard: dict, expected: set[int]) -> None:
    strategy = NodeLabelSchedulingStrategy(hard=hard)
    refs = [where.options(scheduling_strategy=strategy).remote(0.3) for _ in range(6)]
    assert _hosts(four_hosts, ember.get(refs, timeout=120)) <= expected


def test_soft_label_selector_prefers_matching_hosts(four_hosts: NetBed) -> None:
    strategy = NodeLabelSchedulingStrategy(hard={"zone": In("b")}, soft={"disk": In("ssd")})
    assert ember.get(where.options(scheduling_strategy=strategy).remote(), timeout=60) == four_hosts.node_id(3)
    # A soft selector nobody matches is only a preference: the task still runs.
    strategy = NodeLabelSchedulingStrategy(hard=None, soft={"zone": In("nowhere")})
    assert ember.get(where.options(scheduling_strategy=strategy).remote(), timeout=60)


def test_a_hard_label_selector_nobody_matches_waits(four_hosts: NetBed) -> None:
    strategy = NodeLabelSchedulingStrategy(hard={"zone": In("nowhere")})
    ref = where.options(scheduling_strategy=strategy).remote()
    ready, _ = ember.wait([ref], timeout=2)
    assert ready == []
    ember.cancel(ref)


def test_actors_follow_label_selectors(four_hosts: NetBed) -> None:
    actor = Where.options(scheduling_strategy=NodeLabelSchedulingStrategy({"disk": Exists()})).remote()
    try:
        assert ember.get(actor.node.remote(), timeout=60) == four_hosts.node_id(3)
    finally:
        ember.kill(actor)


def test_actors_follow_hard_node_affinity(four_hosts: NetBed) -> None:
    on = NodeAffinitySchedulingStrategy(node_id=four_hosts.node_id(2), soft=False)
    actor = Where.options(scheduling_strategy=on).remote()
    try:
        assert ember.get(actor.node.remote(), timeout=60) == four_hosts.node_id(2)
    finally:
        ember.kill(actor)


def test_hard_node_affinity_to_a_dead_node_fails_and_soft_falls_back(four_hosts: NetBed) -> None:
    lost = four_hosts.node_id(3)
    four_hosts.kill_host(3)
    deadline = time.monotonic() + HEARTBEAT_TIMEOUT_S + 20
    while {n["NodeID"]: n["Alive"] for n in ember.nodes()}.get(lost) is not False:
        assert time.monotonic() < deadline, "the killed host was never marked dead"
        time.sleep(0.1)
    time.sleep(1.0)  # the head's node daemon learns it with its next heartbeat
    hard = NodeAffinitySchedulingStrategy(node_id=lost, soft=False)
    with pytest.raises(TaskUnschedulableError, match="is dead"):
        ember.get(where.options(scheduling_strategy=hard).remote(), timeout=60)
    soft = NodeAffinitySchedulingStrategy(node_id=lost, soft=True)
    assert ember.get(where.options(scheduling_strategy=soft).remote(), timeout=60) != lost
    # Actors too: a hard affinity to the dead node kills the actor with that cause; soft falls back.
    pinned = Where.options(scheduling_strategy=hard).remote()
    with pytest.raises(ActorUnschedulableError, match="is dead"):
        ember.get(pinned.node.remote(), timeout=60)
    fallback = Where.options(scheduling_strategy=soft).remote()
    try:
        assert ember.get(fallback.node.remote(), timeout=60) != lost
    finally:
        ember.kill(fallback)
