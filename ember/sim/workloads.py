"""The workloads: a task graph, many actors, many placement groups, an autoscaler burst.

Each is driven from the seed only.  ``done()`` says when the run may stop (every task ended,
every actor settled, every group removed); ``liveness()`` names what is still unfinished.
"""
from __future__ import annotations

from typing import Any

from ember.logic.autoscaler import model as AM
from ember.logic.autoscaler.planner import plan
from ember.logic.control import actors as A
from ember.logic.control import placement_groups as P
from ember.sim.owner import SimOwner, SimTask
from ember.sim.world import InvariantBroken

SHAPES = ({"CPU": 1.0}, {"CPU": 2.0}, {"CPU": 0.5}, {"CPU": 1.0})


class TasksWorkload:
    """A DAG: each task takes the outputs of up to two of the last ``reach`` tasks of its driver;
    a third of the outputs are stored (1-16 MiB), the rest inline; durations are log-normal."""

    restarts_nodes = True

    def __init__(self, cluster: Any, tasks: int, window: int = 20_000, reach: int = 500,
                 mean_task_s: float = 0.5) -> None:
        self.c = cluster
        self.total = tasks
        self.window = window
        self.reach = reach
        self.mean_task_s = mean_task_s
        self.rng = cluster.w.rng
        n = max(1, len(cluster.owners))
        self.quota = [tasks // n + (1 if i < tasks % n else 0) for i in range(n)]
        self.order: list[list[bytes]] = [[] for _ in range(n)]
        for owner in cluster.owners:
            for key, shape in enumerate(SHAPES):
                owner.add_key(key, shape)

    def start(self) -> None:
        for i, owner in enumerate(self.c.owners):
            self.c.w.after(0.0, self._feed, i)
            self.c.w.after(1.0, owner.flush_events)

    def _feed(self, i: int) -> None:
        owner: SimOwner = self.c.owners[i]
        order = self.order[i]
        rng = self.rng
        budget = 2000
        while len(order) < self.quota[i] and owner.submitted - owner.ended < self.window and budget:
            budget -= 1
            n = len(order)
            tid = b"T" + i.to_bytes(3, "big") + n.to_bytes(8, "big")
            deps: tuple = ()
            if n and rng.random() < 0.6:
                lo = max(0, n - self.reach)
                deps = tuple(sorted({order[rng.randrange(lo, n)] for _ in range(1 + (rng.random() < 0.4))}))
            stored = rng.random() < 0.33
            size = rng.randrange(1 << 20, 16 << 20) if stored else rng.randrange(100, 4000)
            duration = min(60.0, rng.lognormvariate(0.0, 0.8) * self.mean_task_s / 1.377)
            task = SimTask(tid, rng.randrange(len(SHAPES)), {}, duration, deps, size, 3)
            self.c.sizes[task.output] = size
            owner.submit(task)
            order.append(tid)
            if n >= self.reach:
                owner.release(order[n - self.reach])
        if len(order) < self.quota[i]:
            self.c.w.after(0.05, self._feed, i)
        else:
            for tid in order[max(0, len(order) - self.reach):]:
                if not owner.tasks[tid].released:
                    owner.release(tid)

    def done(self) -> bool:
        return all(len(o) == q for o, q in zip(self.order, self.quota)) and all(o.done() for o in self.c.owners)

    def liveness(self) -> str:
        left = sum(o.submitted - o.ended for o in self.c.owners)
        unsubmitted = sum(q - len(o) for o, q in zip(self.order, self.quota))
        return f"{left} tasks not ended, {unsubmitted} not submitted"

    def actor_published(self, eff: Any) -> None:
        pass

    def pg_changed(self, pg_id: bytes, state: Any) -> None:
        pass

    def final_checks(self) -> None:
        for o in self.c.owners:
            if len(o.refs):
                raise InvariantBroken(f"{o.name} still tracks {len(o.refs)} objects after every task ended")
        left = {obj: nodes for obj, nodes in self.c.copies.items() if nodes}
        live = {obj: n for obj, n in left.items() if any(self.c._is_live(x) for x in n)}
        if live:
            raise InvariantBroken(f"{len(live)} objects still stored after the driver let go of everything")

    def figures(self) -> dict:
        return {"tasks": sum(o.submitted for o in self.c.owners), "failed": sum(o.failed for o in self.c.owners),
                "late duplicate answers ignored": sum(o.duplicates for o in self.c.owners),
                "objects rebuilt": sum(o.reconstructions for o in self.c.owners),
                "executions": self.c.executions}


class ActorsWorkload:
    """Actors registered at ``rate`` per second (placement 1 CPU, holding none, Ray's default);
    max_restarts drawn from {0, 1, 3, -1}; one in ten is killed with restart allowed."""

    restarts_nodes = True

    def __init__(self, cluster: Any, actors: int, rate: float = 2000.0) -> None:
        self.c = cluster
        self.total = actors
        self.rate = rate
        self.rng = cluster.w.rng
        self.registered_at: dict[bytes, float] = {}
        self.settled: dict[bytes, str] = {}     # actor -> ALIVE/DEAD as last published
        self.alive_once: set[bytes] = set()
        self.count = 0
        self.delays = cluster.delays

    def start(self) -> None:
        self.c.w.after(0.0, self._feed)

    def _feed(self) -> None:
        batch = max(1, int(self.rate * 0.01))
        for _ in range(batch):
            if self.count >= self.total:
                return
            i = self.count
            self.count += 1
            owner = self.c.owners[i % len(self.c.owners)]
            aid = b"A" + i.to_bytes(15, "big")
            limit = self.rng.choice((0, 1, 3, -1))
            kind = self.rng.random()
            held = {"CPU": 1.0} if kind < 0.3 else {}        # num_cpus=1, or Ray's default (1 to place, 0 held)
            strategy = ["SPREAD"] if kind > 0.6 else ["DEFAULT"]
            spec = A.ActorSpec(actor_id=aid, job_id=owner.job, owner_address=owner.name, owner_worker_id=owner.job,
                               class_name="Sim", creation_spec=b"", max_restarts=limit, is_detached=True,
                               resources=held, placement_resources={"CPU": 1.0}, scheduling_strategy=strategy)
            self.c.actor_max[aid] = limit
            self.c.actor_owner_node[aid] = owner.node.name
            self.registered_at[aid] = self.c.w.now
            self.c.head_request(owner.name, "RegisterActor", "register_actor", (owner.name, spec), 500)
            if self.rng.random() < 0.1:
                self.c.w.after(self.rng.uniform(0.5, 20.0), self._kill, owner, aid)
        self.c.w.after(0.01, self._feed)

    def _kill(self, owner: Any, aid: bytes) -> None:
        head = self.c.leader   # sent once (a kill that restarts is not idempotent)
        self.c.net.send(owner.name, head, "KillActor", self.c.head_of(head).kill_actor, aid, False)

    def actor_published(self, eff: Any) -> None:
        if eff.state is A.ActorState.ALIVE and eff.actor_id not in self.alive_once:
            self.alive_once.add(eff.actor_id)
            self.delays.append(self.c.w.now - self.registered_at.get(eff.actor_id, self.c.w.now))
        self.settled[eff.actor_id] = eff.state.name

    def pg_changed(self, pg_id: bytes, state: Any) -> None:
        pass

    def done(self) -> bool:
        if self.count < self.total or len(self.settled) < self.total:
            return False
        head = self.c.head_of(self.c.leader)
        return all(s in ("ALIVE", "DEAD") for s in self.settled.values()) and head.active and not any(
            r.state in (A.ActorState.PENDING_CREATION, A.ActorState.RESTARTING) for r in head.actors._records.values())

    def liveness(self) -> str:
        head = self.c.head_of(self.c.leader)
        states: dict[str, int] = {}
        for r in head.actors._records.values():
            states[r.state.name] = states.get(r.state.name, 0) + 1
        return f"{self.count}/{self.total} registered; states {states}"

    def final_checks(self) -> None:
        head = self.c.head_of(self.c.leader)
        head.actors.check_invariants()
        for aid, rec in head.actors._records.items():
            running = {x for x in self.c.actor_runs.get(aid, ()) if self.c._is_live(x[0])}
            if rec.state is A.ActorState.ALIVE and len(running) != 1:
                raise InvariantBroken(f"ALIVE actor {aid.hex()} runs on {sorted(running)}")
            if rec.state is A.ActorState.DEAD and running:
                raise InvariantBroken(f"DEAD actor {aid.hex()} still runs on {sorted(running)}")

    def figures(self) -> dict:
        head = self.c.head_of(self.c.leader)
        states: dict[str, int] = {}
        restarts = 0
        for r in head.actors._records.values():
            states[r.state.name] = states.get(r.state.name, 0) + 1
            restarts += r.restarts
        return {"actors": self.total, "states": states, "restarts": restarts,
                "zombie runs (partitioned node, declared dead)": self.c.zombie_actor_runs}


class PgsWorkload:
    """Placement groups of 1-4 bundles ({CPU: 1-2}) in the four strategies, created at ``rate``
    per second, held 1-10 s once created, then removed."""

    restarts_nodes = True

    def __init__(self, cluster: Any, groups: int, rate: float = 200.0) -> None:
        self.c = cluster
        self.total = groups
        self.rate = rate
        self.rng = cluster.w.rng
        self.count = 0
        self.created_at: dict[bytes, float] = {}
        self.state: dict[bytes, str] = {}
        self.specs: dict[bytes, P.PgSpec] = {}

    def start(self) -> None:
        self.c.w.after(0.0, self._feed)

    def _feed(self) -> None:
        for _ in range(max(1, int(self.rate * 0.01))):
            if self.count >= self.total:
                return
            i = self.count
            self.count += 1
            owner = self.c.owners[i % len(self.c.owners)]
            pg_id = b"P" + i.to_bytes(17, "big")
            n = self.rng.randint(1, 4)
            bundles = tuple({"CPU": float(self.rng.randint(1, 2))} for _ in range(n))  # at most 8 CPUs: STRICT_PACK fits a node
            strategy = self.rng.choice(P.STRATEGIES if hasattr(P, "STRATEGIES") else
                                       ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"))
            spec = P.PgSpec(pg_id, bundles, strategy, job_id=owner.job)
            self.specs[pg_id] = spec
            self.created_at[pg_id] = self.c.w.now
            self.state[pg_id] = "PENDING"
            self.c.head_request(owner.name, "CreatePlacementGroup", "create_pg", (owner.name, spec), 400)
        self.c.w.after(0.01, self._feed)

    def pg_changed(self, pg_id: bytes, state: P.PgState) -> None:
        if state is P.PgState.CREATED:
            if self.state.get(pg_id) == "PENDING":
                self.c.delays.append(self.c.w.now - self.created_at[pg_id])
                self.c.w.after(self.rng.uniform(1.0, 10.0), self._remove, pg_id)
            self.state[pg_id] = "CREATED"
            self._check_all_committed(pg_id)
        elif state is P.PgState.REMOVED:
            self.state[pg_id] = "REMOVED"

    def _check_all_committed(self, pg_id: bytes) -> None:
        head = self.c.head_of(self.c.leader)
        rec = head.pgs.get(pg_id)
        for i, node_id in rec.nodes.items():
            node = self.c.by_name.get(head.name_of.get(node_id, ""))
            if node is None or not node.alive or node.name in self.c.dead_names:
                continue
            b = node.bundles.bundles.get((pg_id, i))
            if b is None or b.state.name != "COMMITTED":
                raise InvariantBroken(f"group {pg_id.hex()} CREATED but bundle {i} is "
                                      f"{'absent' if b is None else b.state.name} on {node.name}")

    def _remove(self, pg_id: bytes) -> None:
        self.c.head_request(self.c.owners[0].name, "RemovePlacementGroup", "remove_pg", (pg_id,), 100)
        self.state[pg_id] = "REMOVING"

    def actor_published(self, eff: Any) -> None:
        pass

    def done(self) -> bool:
        if self.count < self.total:
            return False
        if any(s != "REMOVED" for s in self.state.values()):
            return False
        return not any(n.bundles.bundles for n in self.c.nodes.values() if n.alive and n.name not in self.c.dead_names)

    def liveness(self) -> str:
        states: dict[str, int] = {}
        for s in self.state.values():
            states[s] = states.get(s, 0) + 1
        held = sum(len(n.bundles.bundles) for n in self.c.nodes.values() if n.alive)
        return f"{self.count}/{self.total} created; {states}; {held} bundles still held on nodes"

    def final_checks(self) -> None:
        head = self.c.head_of(self.c.leader)
        head.pgs.check_invariants()
        for n in self.c.nodes.values():
            if n.alive and n.bundles.bundles:
                raise InvariantBroken(f"{n.name} holds bundles {sorted(n.bundles.bundles)[:3]} of removed groups")

    def figures(self) -> dict:
        head = self.c.head_of(self.c.leader)
        return {"groups": self.total, "pg table syncs": self.c.pg_syncs,
                "syncs the shell would run (one per heartbeat while groups wait)": self.c.pg_syncs_wanted,
                "attempts": sum(r.attempt for r in head.pgs.groups.values())}


class AutoscalerWorkload(TasksWorkload):
    """A burst of independent tasks on a cluster of ``min_nodes``; the planner (``logic/autoscaler``)
    runs every second on the head's node table and launches nodes (up after ``boot_s``) up to
    ``max_nodes``, and terminates idle ones after ``idle_timeout_s``."""

    restarts_nodes = False

    def __init__(self, cluster: Any, tasks: int, max_nodes: int, min_nodes: int = 2, boot_s: float = 20.0,
                 idle_timeout_s: float = 30.0) -> None:
        super().__init__(cluster, tasks, window=tasks, reach=1, mean_task_s=2.0)
        self.max_nodes = max_nodes
        self.min_nodes = min_nodes
        self.boot_s = boot_s
        self.idle_timeout_s = idle_timeout_s
        self.launching: dict[int, float] = {}
        self.next_index = max(cluster.nodes) + 1 if cluster.nodes else 0
        self.peak = 0
        self.launches = 0
        self.terminations = 0
        self.types = (AM.NodeType("head", {"CPU": float(cluster.cfg.cpus)}, max_workers=0),
                      AM.NodeType("cpu", {"CPU": float(cluster.cfg.cpus)}, max_workers=max_nodes,
                                  cost_per_hour=1.0))

    def start(self) -> None:
        super().start()
        self.c.w.after(1.0, self._plan)

    def _plan(self) -> None:
        head = self.c.head_of(self.c.leader)
        now = self.c.w.now
        states = []
        alive = [r for r in head.nodes.nodes.values() if r.is_alive]
        for r in alive:
            node = self.c.by_name.get(head.name_of.get(r.node_id, ""))
            is_head = node is not None and node.index in self.c.protected
            idle = None
            if node is not None and node.idle_since >= 0:
                idle = node.idle_since
            states.append(AM.NodeState(r.node_id.hex(), "head" if is_head else "cpu", idle_since=idle,
                                       is_head=is_head, available=dict(r.resources_available)))
        for idx in sorted(self.launching):
            states.append(AM.NodeState(f"launch{idx}", "cpu", launching=True))
        demands = []
        for r in alive:
            for shape, count in r.pending_demands:
                demands.append((dict(shape), count))
        result = plan(AM.PlanInput(node_types=self.types, nodes=tuple(states), demands=tuple(demands),
                                   max_workers=self.max_nodes, idle_timeout_s=self.idle_timeout_s, now=now))
        for _ in result.launches:
            idx = self.next_index
            self.next_index += 1
            self.launching[idx] = now
            self.launches += 1
            self.c.w.after(self.boot_s, self._up, idx)
        for t in result.terminations:
            node_id = bytes.fromhex(t.node_id)
            node = self.c.by_name.get(head.name_of.get(node_id, ""))
            if node is not None and node.alive:
                self.terminations += 1
                head.drain(node_id)
                self.c.node_exits(node, "terminated by the autoscaler")
        self.peak = max(self.peak, len(alive))
        if not super().done() or len(alive) > self.min_nodes:
            self.c.w.after(1.0, self._plan)

    def _up(self, idx: int) -> None:
        self.launching.pop(idx, None)
        self.c.add_node(idx)

    def done(self) -> bool:
        return super().done()

    def figures(self) -> dict:
        out = super().figures()
        out.update({"launches": self.launches, "terminations": self.terminations, "peak nodes": self.peak})
        return out
