"""Placement groups with real processes: a head (2 CPUs) and a second node (2 CPUs, ``{"special": 1}``)
started with ``ember start`` on loopback, and this process as the driver (namespace "pgtest").

The multi-host versions (each node at its own IP) are in tests/bed/test_placement_groups_bed.py.
"""
from __future__ import annotations

import time
from typing import Iterator

import pytest

import ember
from ember import exceptions as exc
from ember.util.placement_group import (
    PlacementGroup, get_current_placement_group, get_placement_group, placement_group, placement_group_table,
    remove_placement_group,
)
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from integration.cli_harness import CliHarness

pytestmark = pytest.mark.timeout(240)

NAMESPACE = "pgtest"


class Cluster:
    def __init__(self, harness: CliHarness, port: int, head_id: str, second_id: str) -> None:
        self.harness, self.port, self.head_id, self.second_id = harness, port, head_id, second_id

    def driver(self, body: str) -> str:
        """Run ``body`` in a second driver process attached to the cluster; return its stdout."""
        code = (f"import ember\nember.init(address='127.0.0.1:{self.port}', namespace={NAMESPACE!r})\n"
                "from ember.util.placement_group import *\n" + body + "\nember.shutdown()\n")
        done = self.harness.python(code, timeout_s=120)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if ember.is_initialized():
        ember.shutdown()
    harness = CliHarness(str(tmp_path_factory.mktemp("ember_pg_root")))
    patch = pytest.MonkeyPatch()
    try:
        port = harness.start_head("--num-cpus", "2")
        joined = harness.ember("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2",
                               "--resources", '{"special": 1}')
        assert joined.returncode == 0, f"{joined.stdout}\n{joined.stderr}"
        patch.setenv("EMBER_CLUSTER_TOKEN", harness.token())
        patch.delenv("EMBER_ADDRESS", raising=False)
        patch.delenv("RAY_ADDRESS", raising=False)
        ember.init(address=f"127.0.0.1:{port}", namespace=NAMESPACE)
        nodes = ember.nodes()
        head_id = next(n["NodeID"] for n in nodes if n["IsHead"])
        second_id = next(n["NodeID"] for n in nodes if "special" in n["Resources"])
        yield Cluster(harness, port, head_id, second_id)
    finally:
        ember.shutdown()
        patch.undo()
        stopped = harness.ember("stop")
        leftovers = harness.kill_leftovers()
        assert stopped.returncode == 0, stopped.stderr
        assert not leftovers, f"processes left after ember stop: {leftovers}"


def in_group(pg: PlacementGroup, index: int = -1) -> PlacementGroupSchedulingStrategy:
    return PlacementGroupSchedulingStrategy(placement_group=pg, placement_group_bundle_index=index)


@ember.remote(num_cpus=1)
def where() -> tuple[str, str, bool]:
    ctx = ember.get_runtime_context()
    current = get_current_placement_group()
    return ctx.get_node_id(), ctx.get_placement_group_id(), current is not None and current.id.hex() == ctx.get_placement_group_id()


@ember.remote(num_cpus=1)
class Member:
    def where(self) -> tuple[str, str]:
        ctx = ember.get_runtime_context()
        return ctx.get_node_id(), ctx.get_placement_group_id()


@ember.remote(num_cpus=1)
def sleep_s(seconds: float) -> None:
    time.sleep(seconds)


def wait_for(cond, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def cpu_free() -> float:
    return ember.available_resources().get("CPU", 0.0)


def test_bad_input_gets_rays_errors(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="empty dictionary or resources with only 0"):
        placement_group([{}])
    with pytest.raises(ValueError, match="empty dictionary or resources with only 0"):
        placement_group([{"CPU": 0}])
    with pytest.raises(ValueError, match="non-negative"):
        placement_group([{"CPU": -1, "GPU": 1}])
    with pytest.raises(ValueError, match="must be a list"):
        placement_group({"CPU": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid placement group strategy"):
        placement_group([{"CPU": 1}], strategy="CLOSE")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    with pytest.raises(ValueError, match="Please supply a non-empty value"):
        get_placement_group("")
    with pytest.raises(ValueError, match="Failed to look up placement group with name: nobody"):
        get_placement_group("nobody")
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}])
    try:
        with pytest.raises(ValueError, match="bundle index 2 is invalid. Valid placement group indexes: 0 to 1"):
            where.options(scheduling_strategy=in_group(pg, 2)).remote()
        with pytest.raises(ValueError, match="bundle index -2 is invalid"):
            where.options(scheduling_strategy=in_group(pg, -2)).remote()
    finally:
        remove_placement_group(pg)


def test_ready_wait_and_bundle_resources_as_ray_shows_them(cluster: Cluster) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK", name="packed")
    try:
        assert ember.get(pg.ready(), timeout=30) == pg
        assert pg.wait(10)
        assert pg.bundle_count == 2 and pg.bundle_specs == [{"CPU": 1}, {"CPU": 1}]
        hex_id = pg.id.hex()
        avail = wait_for(lambda: (lambda a: a if f"CPU_group_{hex_id}" in a else None)(ember.available_resources()))
        assert avail[f"CPU_group_{hex_id}"] == 2.0
        assert avail[f"CPU_group_0_{hex_id}"] == 1.0 and avail[f"CPU_group_1_{hex_id}"] == 1.0
        assert avail[f"bundle_group_{hex_id}"] == 2000.0
        total = ember.cluster_resources()
        assert total["CPU"] == 4.0 and total[f"CPU_group_{hex_id}"] == 2.0
        table = placement_group_table(pg)
        assert table["state"] == "CREATED" and table["strategy"] == "STRICT_PACK" and table["name"] == "packed"
        assert len(set(table["bundles_to_node_id"].values())) == 1
        assert hex_id in placement_group_table()
        assert get_placement_group("packed") == pg
    finally:
        remove_placement_group(pg)
    wait_for(lambda: placement_group_table(pg)["state"] == "REMOVED")
    wait_for(lambda: not any(hex_id in k for k in ember.cluster_resources()))


def test_tasks_and_actors_run_in_their_bundles(cluster: Cluster) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    try:
        assert pg.wait(30)
        nodes = placement_group_table(pg)["bundles_to_node_id"]
        assert {nodes[0], nodes[1]} == {cluster.head_id, cluster.second_id}
        for index in (0, 1):
            node, pg_hex, is_current = ember.get(where.options(scheduling_strategy=in_group(pg, index)).remote(),
                                                 timeout=60)
            assert (node, pg_hex, is_current) == (nodes[index], pg.id.hex(), True)
        # Any bundle (-1), and the legacy placement_group= option Ray 2.x still takes.
        node, pg_hex, _ = ember.get(where.options(scheduling_strategy=in_group(pg)).remote(), timeout=60)
        assert node in nodes.values() and pg_hex == pg.id.hex()
        node, _, _ = ember.get(where.options(placement_group=pg, placement_group_bundle_index=1).remote(), timeout=60)
        assert node == nodes[1]
        actor = Member.options(scheduling_strategy=in_group(pg, 1)).remote()
        assert ember.get(actor.where.remote(), timeout=60) == (nodes[1], pg.id.hex())
        ember.kill(actor)
        # Outside any group: none.
        assert ember.get(where.remote(), timeout=60)[1] is None
        assert get_current_placement_group() is None
    finally:
        remove_placement_group(pg)


def test_a_pending_group_is_placed_when_another_is_removed(cluster: Cluster) -> None:
    first = placement_group([{"CPU": 2}, {"CPU": 2}], strategy="SPREAD")
    assert first.wait(30)
    second = placement_group([{"CPU": 2}])
    try:
        assert not second.wait(1.0)
        assert placement_group_table(second)["state"] == "PENDING"
        remove_placement_group(first)
        assert second.wait(30)
    finally:
        remove_placement_group(second)
        remove_placement_group(first)


def test_a_group_no_node_can_hold_warns_on_the_driver(cluster: Cluster, capfd: pytest.CaptureFixture) -> None:
    pg = placement_group([{"CPU": 3}], strategy="STRICT_PACK")
    try:
        assert not pg.wait(1.0)
        err = wait_for(lambda: (lambda e: e if "cannot be placed" in e else None)(capfd.readouterr().err), 20)
        assert pg.id.hex() in err and "stays pending" in err
    finally:
        remove_placement_group(pg)


def test_removal_kills_its_actors_and_tasks_and_frees_the_bundles(cluster: Cluster) -> None:
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert pg.wait(30)
    actor = Member.options(scheduling_strategy=in_group(pg, 0)).remote()
    assert ember.get(actor.where.remote(), timeout=60)[1] == pg.id.hex()
    running = sleep_s.options(scheduling_strategy=in_group(pg, 1), max_retries=1).remote(60)
    time.sleep(1.0)  # let the task start
    remove_placement_group(pg)  # asynchronous, as in Ray: the table says when it is done
    wait_for(lambda: placement_group_table(pg)["state"] == "REMOVED")
    with pytest.raises(exc.RayActorError, match="placement group"):
        ember.get(actor.where.remote(), timeout=60)
    with pytest.raises((exc.TaskPlacementGroupRemoved, exc.WorkerCrashedError)):
        ember.get(running, timeout=60)
    wait_for(lambda: cpu_free() == 4.0)
    # Scheduling into a removed group fails with Ray's error, it does not hang.
    with pytest.raises(exc.TaskPlacementGroupRemoved):
        ember.get(where.options(scheduling_strategy=in_group(pg)).remote(), timeout=60)


def test_detached_and_named_groups_outlive_their_job_as_ray_says(cluster: Cluster) -> None:
    cluster.driver("placement_group([{'CPU': 0.5}], name='kept', lifetime='detached').wait(30)\n"
                   "placement_group([{'CPU': 0.5}], name='dropped').wait(30)\n")
    kept = get_placement_group("kept")
    assert placement_group_table(kept)["state"] == "CREATED" and placement_group_table(kept)["is_detached"]
    wait_for(lambda: _lookup_fails("dropped"))
    # Another job finds it by name and uses it.
    out = cluster.driver("import ember\n@ember.remote(num_cpus=0.5)\ndef f():\n"
                         "    return ember.get_runtime_context().get_placement_group_id()\n"
                         "from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy as S\n"
                         "print('PG', ember.get(f.options(scheduling_strategy=S(get_placement_group('kept'))).remote()))")
    assert f"PG {kept.id.hex()}" in out
    remove_placement_group(kept)


def _lookup_fails(name: str) -> bool:
    try:
        get_placement_group(name)
    except ValueError:
        return True
    return False


def test_ember_status_lists_placement_groups(cluster: Cluster) -> None:
    pg = placement_group([{"CPU": 1}], name="shown")
    try:
        assert pg.wait(30)
        done = cluster.harness.ember("status", "--address", f"127.0.0.1:{cluster.port}")
        assert done.returncode == 0, done.stderr
        assert "Placement groups" in done.stdout
        line = next(ln for ln in done.stdout.splitlines() if pg.id.hex() in ln)
        assert "'shown'" in line and "PACK" in line and "CREATED" in line
        assert "_group_" not in done.stdout.split("Placement groups")[0]  # bundle resources are not listed twice
    finally:
        remove_placement_group(pg)


def test_a_pending_group_is_placed_when_a_node_joins(cluster: Cluster) -> None:
    pg = placement_group([{"late": 1}])
    try:
        assert not pg.wait(1.0)
        joined = cluster.harness.ember("start", "--address", f"127.0.0.1:{cluster.port}", "--num-cpus", "0",
                                       "--resources", '{"late": 1}')
        assert joined.returncode == 0, joined.stderr
        assert pg.wait(30)
    finally:
        remove_placement_group(pg)


@ember.remote(num_cpus=1)
def child_group() -> str:
    return ember.get_runtime_context().get_placement_group_id()


@ember.remote(num_cpus=1)
def parent_group() -> tuple[str, str]:
    return ember.get_runtime_context().get_placement_group_id(), ember.get(child_group.remote())


@ember.remote(num_cpus=0)
class Parent:
    def child(self) -> str:
        return ember.get(child_group.remote())


def test_capture_child_tasks_puts_children_in_the_group(cluster: Cluster) -> None:
    pg = placement_group([{"CPU": 2}], strategy="STRICT_PACK")
    try:
        assert pg.wait(30)
        capture = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
        mine, child = ember.get(parent_group.options(scheduling_strategy=capture).remote(), timeout=60)
        assert mine == child == pg.id.hex()
        mine, child = ember.get(parent_group.options(scheduling_strategy=in_group(pg)).remote(), timeout=60)
        assert mine == pg.id.hex() and child is None  # not captured without the flag
        parent = Parent.options(scheduling_strategy=capture).remote()
        assert ember.get(parent.child.remote(), timeout=60) == pg.id.hex()
        ember.kill(parent)
    finally:
        remove_placement_group(pg)


def test_work_submitted_before_the_group_is_ready_waits_for_it(cluster: Cluster) -> None:
    blocker = placement_group([{"CPU": 2}, {"CPU": 2}], strategy="STRICT_SPREAD")
    assert blocker.wait(30)
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    try:
        task = where.options(scheduling_strategy=in_group(pg, 1)).remote()
        actor = Member.options(scheduling_strategy=in_group(pg, 0)).remote()
        ready, _ = ember.wait([task], timeout=1.0)
        assert not ready  # no room yet: pending, neither failed nor run elsewhere
        remove_placement_group(blocker)
        assert pg.wait(30)
        nodes = placement_group_table(pg)["bundles_to_node_id"]
        assert ember.get(task, timeout=60)[:2] == (nodes[1], pg.id.hex())
        assert ember.get(actor.where.remote(), timeout=60) == (nodes[0], pg.id.hex())
        ember.kill(actor)
    finally:
        remove_placement_group(pg)
        remove_placement_group(blocker)


def test_a_duplicate_name_fails_the_second_group(cluster: Cluster) -> None:
    first = placement_group([{"CPU": 0.1}], name="twin")
    try:
        assert first.wait(30)
        second = placement_group([{"CPU": 0.1}], name="twin")
        with pytest.raises(ValueError, match="same name already exists"):
            second.wait(30)
        with pytest.raises(ValueError, match="same name already exists"):
            ember.get(second.ready(), timeout=30)
    finally:
        remove_placement_group(first)


@ember.remote
class Plain:
    def ok(self) -> bool:
        return True


def test_a_demand_no_bundle_can_hold_is_refused_with_rays_message(cluster: Cluster) -> None:
    pg = placement_group([{"special": 1}])
    try:
        with pytest.raises(ValueError, match=r"Cannot schedule where with the placement group because the resource "
                                             r"request \{'CPU': 1.0\} cannot fit into any bundles"):
            where.options(scheduling_strategy=in_group(pg)).remote()
        with pytest.raises(ValueError, match="the actor requires 1.0 CPU for creation, but it cannot fit"):
            Plain.options(scheduling_strategy=in_group(pg)).remote()
        # PlacementGroupSchedulingStrategy(placement_group=None): Ray's way to run outside any group.
        node, pg_hex, _ = ember.get(where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(None)).remote(),
                                    timeout=60)
        assert pg_hex is None
    finally:
        remove_placement_group(pg)
