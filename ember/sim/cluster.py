"""The simulated cluster: nodes, heads, drivers, the ground truth the invariants are checked against.

Ground truth is what really happened, kept apart from what any component believes: which
node stores a copy of which object, which actor incarnations run where, which tasks executed.
``checkers.py`` compares the components' beliefs with it after every event.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from ember.logic.control import actors as A
from ember.logic.control import placement_groups as P
from ember.logic.placement import PlacementParams
from ember.sim.head import SimHead, Storage
from ember.sim.network import Network, NetParams
from ember.sim.node import SimNode
from ember.sim.world import InvariantBroken, World


@dataclass
class SimConfig:
    nodes: int = 100
    cpus: int = 8
    heartbeat_s: float = 0.5
    heartbeat_timeout_s: float = 10.0
    lease_ttl_s: float = 3.0
    view_snapshot_s: float = 0.1
    worker_start_s: float = 0.02
    actor_init_s: float = 0.05
    actor_init_failure: float = 0.01
    max_workers_starting: int = 8
    lease_linger_s: float = 0.02
    max_pending_lease_requests: int = 4
    pipeline_depth: int = 4
    pipeline_below_s: float = 0.005
    infeasible_retry_s: float = 1.0
    inline_max_bytes: int = 100 * 1024
    placement: PlacementParams = field(default_factory=PlacementParams)
    net: NetParams = field(default_factory=NetParams)
    drivers: int = 1
    restart_after_s: float = 5.0
    request_retry_s: float = 2.0


class Cluster:
    def __init__(self, world: World, cfg: SimConfig) -> None:
        self.w = world
        self.cfg = cfg
        self.net = Network(world, cfg.net)
        self.storage = Storage()
        self.nodes: dict[int, SimNode] = {}          # index -> current incarnation
        self.node_gen: Counter[int] = Counter()
        self.by_name: dict[str, SimNode] = {}
        self.owners: list[Any] = []
        self.heads: list[SimHead] = []
        self.leader = ""
        self._leader_since = 0.0
        self.node_types: dict[bytes, str] = {}
        self.protected: set[int] = set()             # driver nodes: never crashed
        # ground truth
        self.copies: dict[bytes, set[str]] = {}      # object -> node endpoints holding a copy
        self.sizes: dict[bytes, int] = {}
        self.reported: dict[bytes, set[str]] = {}    # object -> copies its owner was told of
        self.rebuilt_with_copy = 0
        self.actor_runs: dict[bytes, set[tuple[str, bytes]]] = {}
        self.actor_incarnations: Counter[bytes] = Counter()
        self.actor_max: dict[bytes, int] = {}
        self.actor_owner_node: dict[bytes, str] = {}
        self.zombie_actor_runs = 0
        self.executions = 0
        self.delays: list[float] = []
        self.view_entries_sent = 0
        self.view_builds = 0
        self.pg_syncs = 0
        self.pg_syncs_wanted = 0
        self.dirty_nodes: set[SimNode] = set()
        self.dirty_actors = False
        self.dirty_pgs = False
        self.dirty_pg_nodes: set[SimNode] = set()
        self.workload: Any = None
        self.dead_names: set[str] = set()
        self.unacked: dict[tuple, bool] = {}

    # --- building ---------------------------------------------------------------------------------
    def start_head(self) -> SimHead:
        pgs = copy.deepcopy(self.heads[-1].pgs) if self.heads else None   # as persisted at the takeover
        head = SimHead(self, len(self.heads), self.storage, pgs)
        self.heads.append(head)
        self.net.add(head.name, head, "head" + str(len(self.heads)))
        head.try_lead()
        return head

    def add_node(self, index: int, node_type: str = "cpu", total: Optional[dict] = None) -> SimNode:
        self.node_gen[index] += 1
        node = SimNode(self, index, self.node_gen[index], node_type, total or {"CPU": float(self.cfg.cpus)})
        self.nodes[index] = node
        self.by_name[node.name] = node
        self.net.add(node.name, node, f"m{index}")
        node.register()
        self.w.after(self.cfg.heartbeat_s * self.w.rng.random(), node.heartbeat)
        return node

    def endpoint(self, name: str) -> Any:
        return self.net.endpoints[name]

    def head_of(self, name: str) -> SimHead:
        return self.net.endpoints[name]

    def name_of_node_id(self, node_id: bytes) -> str:
        index = int.from_bytes(node_id[1:5], "big")
        node = self.nodes.get(index)
        return node.name if node is not None and node.node_id == node_id and node.alive else ""

    def node_by_name(self, name: str) -> Optional[SimNode]:
        node = self.by_name.get(name)
        return node if node is not None and node.alive else None

    def new_leader(self, head: SimHead) -> None:
        self.leader = head.name
        self._leader_since = self.w.now

    def leader_known(self, node: SimNode) -> bool:
        """Nodes and drivers know every head address and follow the leader (found within a period)."""
        return self.w.now - self._leader_since >= self.cfg.heartbeat_s * 0.5

    def some_live_node(self, head: SimHead) -> Optional[str]:
        alive = [n for n in self.nodes.values() if n.alive and n.name in head.by_name
                 and not head.nodes.is_dead(n.node_id)]
        if not alive:
            return None
        return alive[self.w.rng.randrange(len(alive))].name

    def workload_active(self) -> bool:
        return self.workload is not None and not self.workload.done()

    def head_request(self, src: str, kind: str, method: str, args: tuple, size: int = 300, tries: int = 0,
                     key: Any = None) -> None:
        """A request to the control store (a driver's, or a node's report): sent to the leader, sent
        again after ``request_retry_s`` until an active head acknowledged it (the handlers are
        idempotent).  Drivers' head_link retries across a head restart; for node reports (a
        worker's exit) this is what the standby work must add: on main such a report is sent once
        and is lost with the head it was sent to."""
        if key is None:
            last = args[-1]
            key = getattr(last, "actor_id", None) or getattr(last, "pg_id", None) or last
        if not isinstance(key, tuple) or key[:2] != (src, kind):
            key = (src, kind, key)
        if tries == 0:
            self.unacked[key] = True
        elif key not in self.unacked:
            return
        head = self.leader
        self.net.send(src, head, kind, self._at_head, head, key, method, args, size=size)
        self.w.after(self.cfg.request_retry_s, self.head_request, src, kind, method, args, size, tries + 1, key)

    def _at_head(self, head: str, key: tuple, method: str, args: tuple) -> None:
        h = self.head_of(head)
        if not h.active:
            return
        getattr(h, method)(*args)
        self.net.send(head, key[0], "Ok", self.unacked.pop, key, None, size=50)

    # --- faults ----------------------------------------------------------------------------------------
    def crash_node(self, index: int, visible: bool) -> None:
        node = self.nodes.get(index)
        if node is None or not node.alive or index in self.protected:
            return
        self.w.note(f"crash {node.name} ({'process' if visible else 'machine silent'})")
        self._node_gone(node)
        self.net.crash(node.name, visible)
        self.w.after(self.cfg.restart_after_s, self._restart, index, node.node_type, node.lm.total.to_dict())

    def _restart(self, index: int, node_type: str, total: dict) -> None:
        if self.nodes.get(index) is not None and self.nodes[index].alive:
            return
        total = {k: v for k, v in total.items() if "_group_" not in k}
        self.add_node(index, node_type, total)

    def node_exits(self, node: SimNode, why: str) -> None:
        """The daemon learned it was declared dead: it exits with its workers; a new one joins later."""
        if not node.alive:
            return
        self.w.note(f"{node.name} exits: {why}")
        self._node_gone(node)
        self.net.crash(node.name, True)
        if node.index not in self.protected and self.workload is not None and self.workload.restarts_nodes:
            self.w.after(self.cfg.restart_after_s, self._restart, node.index, node.node_type, node.lm.total.to_dict())
        elif node.index in self.protected:
            self.w.after(0.5, self._restart, node.index, node.node_type, node.lm.total.to_dict())

    def _node_gone(self, node: SimNode) -> None:
        node.alive = False
        for obj in sorted(node.store):
            self.copies[obj].discard(node.name)
        node.store.clear()
        for w in node.workers.values():
            if w.actor is not None and w.is_running_actor:
                self.actor_stopped(w.actor[0], node, w.worker_id)

    def node_declared_dead(self, name: str, node_id: bytes) -> None:
        """The head published a node's death: every peer drops its connection to it; owners
        forget the copies it held (and recover what they still need)."""
        self.dead_names.add(name)
        node = self.by_name.get(name)
        if node is not None and node.alive:
            # a live daemon declared dead (paused, partitioned, a reset heartbeat connection):
            # its copies no longer count; it learns at its next heartbeat and exits
            for obj in sorted(node.store):
                self.copies[obj].discard(node.name)
            node.store.clear()
        self.net.reset_all(name)
        for owner in self.owners:
            if hasattr(owner, "node_removed"):
                owner.node_removed(name)

    # --- ground truth --------------------------------------------------------------------------------
    def object_size(self, obj: bytes) -> int:
        return self.sizes.get(obj, 0)

    def has_live_copy(self, obj: bytes) -> bool:
        return any(self._is_live(n) for n in self.copies.get(obj, ()))

    def _is_live(self, name: str) -> bool:
        node = self.by_name.get(name)
        return node is not None and node.alive and name not in self.dead_names

    def add_copy(self, obj: bytes, node: SimNode) -> None:
        if node.name in self.dead_names:
            return
        self.copies.setdefault(obj, set()).add(node.name)
        node.store.add(obj)

    def free_object(self, obj: bytes) -> None:
        self.reported.pop(obj, None)
        for name in sorted(self.copies.pop(obj, ())):
            node = self.by_name.get(name)
            if node is not None:
                node.store.discard(obj)

    def check_lost(self, obj: bytes) -> None:
        """An owner reported ``obj`` lost (to rebuild or fail): no live node may hold a copy."""
        live = sorted(n for n in self.copies.get(obj, ()) if self._is_live(n))
        known = [n for n in live if n in self.reported.get(obj, ())]
        if known:
            raise InvariantBroken(f"object {obj.hex()} reported lost while {known} hold a copy its owner knew of")
        if live:
            self.rebuilt_with_copy += 1   # the copy's location report was still on its way

    def task_started(self, task: Any, attempt: int, node: SimNode) -> None:
        if task.started_at < 0:
            task.started_at = self.w.now

    def task_executed(self, task: Any, attempt: int, node: SimNode) -> None:
        self.executions += 1

    def record_delay(self, task: Any) -> None:
        if task.started_at >= 0:
            self.delays.append(task.started_at - task.submitted_at)

    # --- actors --------------------------------------------------------------------------------------
    def owner_node_of_actor(self, actor_id: bytes) -> str:
        return self.actor_owner_node.get(actor_id, "")

    def actor_running(self, actor_id: bytes, incarnation: int, node: SimNode, worker_id: bytes) -> None:
        running = self.actor_runs.setdefault(actor_id, set())
        live = {(n, w) for n, w in running if self._is_live(n)}
        if live:
            raise InvariantBroken(f"actor {actor_id.hex()} runs twice at once: {sorted(live)} and {node.name}")
        if any(not self._is_live(n) for n, _ in running):
            self.zombie_actor_runs += 1
        running.add((node.name, worker_id))
        self.actor_incarnations[actor_id] += 1
        limit = self.actor_max.get(actor_id, 0)
        # incarnations that reached __init__'s end: at most 1 + max_restarts
        if limit != -1 and self.actor_incarnations[actor_id] > 1 + limit:
            raise InvariantBroken(f"actor {actor_id.hex()} ran {self.actor_incarnations[actor_id]} incarnations "
                                  f"with max_restarts={limit}")

    def actor_stopped(self, actor_id: bytes, node: SimNode, worker_id: bytes) -> None:
        self.actor_runs.get(actor_id, set()).discard((node.name, worker_id))

    def actor_published(self, head: SimHead, eff: A.PublishActor) -> None:
        if self.workload is not None:
            self.workload.actor_published(eff)

    def pg_changed(self, head: SimHead, pg_id: bytes, state: P.PgState) -> None:
        if self.workload is not None:
            self.workload.pg_changed(pg_id, state)

    # --- dirty sets for the checker -----------------------------------------------------------------
    def touch_node(self, node: SimNode) -> None:
        self.dirty_nodes.add(node)

    def touch_pg_node(self, node: SimNode) -> None:
        self.dirty_nodes.add(node)
        self.dirty_pg_nodes.add(node)

    def touch_actors(self) -> None:
        self.dirty_actors = True

    def touch_pgs(self) -> None:
        self.dirty_pgs = True

    # --- figures ------------------------------------------------------------------------------------
    def percentile(self, q: float) -> float:
        if not self.delays:
            return 0.0
        d = sorted(self.delays)
        return d[min(len(d) - 1, int(q * len(d)))]

