"""A simulated node daemon: ember's ``LeaseManager`` and ``BundleTable`` plus modelled workers.

What the real shell (``shells/node/node_daemon.py``) does with the lease manager's effects, this
does with the network model: grants, spillbacks and refusals go back to the asker, a worker
start registers after ``worker_start_s``, a killed worker aborts what runs on it.  Workers run
pushed tasks one at a time for the task's modelled duration, fetching stored arguments from
another node first (bytes / bandwidth).  Heartbeats carry what the shell's carry
(available resources, pending demands, the load report) every ``heartbeat_s``.

Views: the control store answers a heartbeat with its whole node table when its version moved.
The simulator hands every node the same immutable snapshot (rebuilt at most every
``view_snapshot_s``) and applies it at the node's next decision (``_fresh_view``), which is
what the lease manager's decisions read; its ``_spill`` copies an entry before counting a
spill in it, so sharing is safe.
"""
from __future__ import annotations

from typing import Any, Optional

from ember.logic.control.nodes import NodeVerdict
from ember.logic.node import leases as L
from ember.logic.node.bundles import BundleTable
from ember.logic.resources import ResourceSet


class SimWorker:
    __slots__ = ("worker_id", "lease_id", "holder", "queue", "busy", "actor", "is_running_actor")

    def __init__(self, worker_id: bytes) -> None:
        self.worker_id = worker_id
        self.lease_id: Optional[bytes] = None
        self.holder: Optional[str] = None     # the endpoint holding its lease
        self.queue: list = []                 # pushed tasks waiting on this worker
        self.busy = False
        self.actor: Optional[tuple[bytes, int]] = None   # (actor id, incarnation) it hosts
        self.is_running_actor = False


class SimNode:
    def __init__(self, cluster: Any, index: int, gen: int, node_type: str, total: dict) -> None:
        self.c = cluster
        self.index = index
        self.node_id = b"N" + index.to_bytes(4, "big") + gen.to_bytes(2, "big") + bytes(9)
        self.name = f"n{index}.{gen}"
        self.node_type = node_type
        self.lm = L.LeaseManager(self.node_id, total, max_starting=cluster.cfg.max_workers_starting,
                                 params=cluster.cfg.placement)
        self.lm.address = self.name
        self.bundles = BundleTable()
        self.workers: dict[bytes, SimWorker] = {}
        self.store: set[bytes] = set()
        self.alive = True
        self.registered = False
        self.view_version = -1
        self._pending_view: Optional[list] = None
        self._pending_version = -1
        self.idle_since = 0.0
        self.head = ""

    # --- plumbing -----------------------------------------------------------------------------
    def send(self, dst: str, kind: str, fn: Any, *args: Any, size: int = 200) -> None:
        self.c.net.send(self.name, dst, kind, fn, *args, size=size)

    def run(self, effects: list) -> None:
        c = self.c
        for eff in effects:
            t = type(eff)
            if t is L.GrantLease:
                client, token = eff.req_id
                lease = self.lm.leases[eff.lease_id]
                w = self.workers[eff.worker_id]
                w.lease_id, w.holder = eff.lease_id, client
                self.send(client, "LeaseGranted", c.endpoint(client).lease_granted, token, self.name,
                          eff.lease_id, eff.worker_id, lease.for_actor)
            elif t is L.SpillLease:
                client, token = eff.req_id
                self.send(client, "LeaseSpillback", c.endpoint(client).lease_spilled, token, eff.address)
            elif t is L.RejectInfeasible:
                client, token = eff.req_id
                self.send(client, "LeaseInfeasible", c.endpoint(client).lease_infeasible, token, eff.message)
            elif t is L.RejectUnschedulable or t is L.FailLease:
                client, token = eff.req_id
                self.send(client, "LeaseFailed", c.endpoint(client).lease_failed, token, eff.message)
            elif t is L.RefreshView:
                self.c.w.after(0.0, self.heartbeat, True)
            elif t is L.StartWorker:
                self.workers[eff.worker_id] = SimWorker(eff.worker_id)
                self.c.w.after(c.cfg.worker_start_s * (0.5 + c.w.rng.random()), self._worker_up, eff.worker_id)
            elif t is L.KillWorker:
                self.kill_worker(eff.worker_id, eff.reason)
        self.c.touch_node(self)

    def _worker_up(self, worker_id: bytes) -> None:
        if not self.alive or worker_id not in self.workers:
            return
        self.run(self.lm.on_worker_registered(worker_id, self.name + "/" + worker_id.hex()[-6:], self.c.w.now))

    def kill_worker(self, worker_id: bytes, reason: str) -> None:
        w = self.workers.pop(worker_id, None)
        if w is None:
            return
        if w.holder is not None and w.holder[0] == "o":
            owner = self.c.endpoint(w.holder)
            self.send(w.holder, "WorkerDied", owner.worker_died, self.name, w.lease_id)
        if w.actor is not None:
            self.c.actor_stopped(w.actor[0], self, w.worker_id)
            self.c.head_request(self.name, "WorkerExited", "worker_exited", (self.node_id, w.worker_id, w.actor[0],
                                                                              reason), 200, 0, w.worker_id)

    def link_reset(self, peer: str) -> None:
        if not self.alive:
            return
        if peer == self.head:
            self.c.w.after(0.1, self.register)
            return
        self.run(self.lm.on_client_disconnected(peer))

    # --- views --------------------------------------------------------------------------------------
    def _fresh_view(self) -> None:
        if self._pending_view is not None:
            view, self._pending_view = self._pending_view, None
            self.view_version = self._pending_version
            self.run(self.lm.on_cluster_view(view))

    def view_arrived(self, version: int, view: Optional[list]) -> None:
        if view is None or version == self.view_version:
            return
        self._pending_view, self._pending_version = view, version
        if self.lm.queue or self.lm.parked:
            self._fresh_view()

    # --- the control store ------------------------------------------------------------------------
    def register(self) -> None:
        if not self.alive:
            return
        self.head = self.c.leader
        head = self.c.head_of(self.head)
        self.send(self.head, "RegisterNode", head.register_node, self.name, self.node_id,
                  self.lm.total.to_dict(), self.lm.available.to_dict(), self.node_type, size=600)

    def registered_reply(self, verdict: NodeVerdict, version: int, view: Optional[list]) -> None:
        if verdict is NodeVerdict.DEAD:
            self.c.node_exits(self, "declared dead")
            return
        self.registered = True
        self.view_arrived(version, view)

    def heartbeat(self, forced: bool = False) -> None:
        if not self.alive:
            return
        if not forced:
            self.c.w.after(self.c.cfg.heartbeat_s, self.heartbeat)
        if self.head != self.c.leader and self.c.leader_known(self):
            self.head = self.c.leader
            self.registered = False
        if not self.registered:
            self.register()
            return
        head = self.c.head_of(self.head)
        load = self.lm.load_report()
        demands = self.lm.pending_demands()
        self.send(self.head, "Heartbeat", head.heartbeat, self.name, self.node_id, self.lm.available.to_dict(),
                  demands, load, -1 if forced else self.view_version, len(self.store), size=300 + 40 * len(demands))
        if not self.lm.leases and not self.lm.queue:
            if self.idle_since < 0:
                self.idle_since = self.c.w.now
        else:
            self.idle_since = -1.0

    def heartbeat_reply(self, verdict: NodeVerdict, version: int, view: Optional[list]) -> None:
        if verdict is NodeVerdict.DEAD:
            self.c.node_exits(self, "declared dead by the control store")
        elif verdict is NodeVerdict.UNKNOWN:
            self.registered = False
            self.register()
        else:
            self.view_arrived(version, view)

    # --- leases ---------------------------------------------------------------------------------------
    def request_lease(self, client: str, token: Any, job: bytes, resources: dict, strategy: list,
                      is_spillback: bool, for_actor: bool, placement: Optional[dict], task_s: float,
                      hops: int, arg_bytes: Optional[dict]) -> None:
        self._fresh_view()
        req = L.LeaseRequest((client, token), client, job, ResourceSet(resources), strategy, is_spillback, for_actor,
                             "sim", None if placement is None else ResourceSet(placement), "",
                             dict(arg_bytes or {}), task_s, spill_hops=hops)
        self.run(self.lm.on_lease_requested(req, self.c.w.now))

    def return_lease(self, lease_id: bytes, is_dead: bool) -> None:
        lease = self.lm.leases.get(lease_id)
        if lease is not None:
            w = self.workers.get(lease.worker_id)
            if w is not None:
                w.lease_id = w.holder = None
                if is_dead:  # the shell kills it (KillWorker follows): nothing it runs may finish
                    w.queue.clear()
        self.run(self.lm.on_lease_returned(lease_id, is_dead, self.c.w.now))

    # --- tasks ------------------------------------------------------------------------------------------
    def push_task(self, owner: str, worker_id: bytes, task: Any, attempt: int) -> None:
        w = self.workers.get(worker_id)
        if w is None or w.holder != owner:
            self.send(owner, "PushTaskReply", self.c.endpoint(owner).task_failed, task.task_id, attempt,
                      "worker gone")
            return
        w.queue.append((owner, task, attempt))
        if not w.busy:
            self._next_task(w)

    def _next_task(self, w: SimWorker) -> None:
        if not w.queue or w.worker_id not in self.workers:
            w.busy = False
            return
        w.busy = True
        owner, task, attempt = w.queue.pop(0)
        fetch_s = 0.0
        for obj in task.stored_args:
            if obj in self.store:
                continue
            size = self.c.object_size(obj)
            if not self.c.has_live_copy(obj):
                self.send(owner, "PushTaskReply", self.c.endpoint(owner).task_arg_lost, task.task_id, attempt, obj)
                self.c.w.after(0.0, self._next_task, w)
                return
            fetch_s += self.c.net.p.latency_s * 2 + size / self.c.net.p.bandwidth_bytes_per_s
        self.c.task_started(task, attempt, self)
        self.c.w.after(fetch_s + task.duration_s, self._task_done, w, owner, task, attempt)

    def _task_done(self, w: SimWorker, owner: str, task: Any, attempt: int) -> None:
        if not self.alive or self.workers.get(w.worker_id) is not w:
            return
        for obj in task.stored_args:
            if obj not in self.store and self.c.has_live_copy(obj):
                self.c.add_copy(obj, self)   # a secondary copy: its owner hears of it
                self.send(owner, "ObjectLocationAdded", self.c.endpoint(owner).location_added, obj, self.name)
        stored = task.output_bytes > self.c.cfg.inline_max_bytes
        if stored:
            self.c.add_copy(task.output, self)
        self.c.task_executed(task, attempt, self)
        self.send(owner, "PushTaskReply", self.c.endpoint(owner).task_done, task.task_id, attempt,
                  self.name if stored else None, size=200 + (0 if stored else task.output_bytes))
        self._next_task(w)

    # --- actors ------------------------------------------------------------------------------------------
    def kill_worker_process(self, worker_id: bytes) -> None:
        if worker_id in self.workers:
            self.run(self.lm.on_worker_died(worker_id))
            self.kill_worker(worker_id, "asked to (restored actor)")

    def create_actor(self, head: str, actor_id: bytes, incarnation: int, worker_id: bytes, fails: bool) -> None:
        w = self.workers.get(worker_id)
        if w is None:
            return  # the worker died: its WorkerExited moves the actor on
        if w.actor == (actor_id, incarnation):  # asked again (a new head): answer what happened
            if w.is_running_actor:
                self.send(head, "ActorCreationReply", self.c.head_of(head).actor_init_done, actor_id, worker_id, False)
            return
        w.actor = (actor_id, incarnation)
        self.c.w.after(self.c.cfg.actor_init_s, self._actor_ready, head, w, actor_id, incarnation, fails)

    def _actor_ready(self, head: str, w: SimWorker, actor_id: bytes, incarnation: int, fails: bool) -> None:
        if not self.alive or self.workers.get(w.worker_id) is not w:
            return
        if not fails:
            w.is_running_actor = True
            self.c.actor_running(actor_id, incarnation, self, w.worker_id)
        self.send(head, "ActorCreationReply", self.c.head_of(head).actor_init_done, actor_id, w.worker_id, fails)

    # --- placement-group bundles ----------------------------------------------------------------------
    def prepare_bundles(self, head: str, pg_id: bytes, attempt: int, items: list, commit: bool) -> None:
        problem, change = self.bundles.prepare(pg_id, [(i, r) for i, r in items], self.lm.available)
        if problem is None:
            self.run(self.lm.on_bundle_resources(change))
            if commit:
                self.run(self.lm.on_bundle_resources(self.bundles.commit(pg_id, [i for i, _ in items])))
        self.c.touch_pg_node(self)
        self.send(head, "PrepareBundlesReply", self.c.head_of(head).bundles_prepared, pg_id, attempt, self.node_id,
                  problem is None, problem or "", tuple(i for i, _ in items))

    def commit_bundles(self, head: str, pg_id: bytes, attempt: int, indices: list) -> None:
        self.run(self.lm.on_bundle_resources(self.bundles.commit(pg_id, indices)))
        self.c.touch_pg_node(self)
        self.send(head, "CommitBundlesReply", self.c.head_of(head).bundles_committed, pg_id, attempt, self.node_id)

    def cancel_bundles(self, pg_id: bytes, indices: list, is_removed: bool) -> None:
        self.run(self.lm.on_bundle_resources(self.bundles.cancel(pg_id, indices, is_removed)))
        self.c.touch_pg_node(self)

    # --- checks -------------------------------------------------------------------------------------------
    def check(self) -> None:
        self.lm.check_invariants()
        for name, units in self.lm.available.units.items():
            if units < 0 and not any(l.is_blocked for l in self.lm.leases.values()):
                raise AssertionError(f"node {self.name}: {name} over-committed (available {units / 1e4})")
        assert self.lm.reserved == self.bundles.reserved(), \
            f"node {self.name}: reserved {self.lm.reserved} != its bundles {self.bundles.reserved()}"
