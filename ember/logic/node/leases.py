"""The node daemon's scheduler: worker leases, spillback and the worker pool.

Rule 1: a lease holds its resources on this node from grant to return.
Rule 2: a request that can never fit any known node is answered "infeasible" (the owner
        warns and asks again later); otherwise ``logic/placement.py`` decides whether this
        node keeps it or spills it to another node, once (a spilled request is never spilled
        again). A hard node affinity to a dead or unknown node is "unschedulable": the owner
        fails the task.
Rule 3: workers belong to one job and one runtime env (``env_key``, "" for none); an idle
        worker of the same job and env is reused before a new one is started.  A worker whose
        env could not be set up fails the requests queued for that job and env.

Theory of operation: the shell turns messages and process events into calls of the
``on_*`` methods; each returns a list of effects, which the shell performs.  No I/O,
no clock, no randomness here.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ember.logic import placement
from ember.logic.placement import NodeLoad, PlacementParams
from ember.logic.resources import GpuSlots, ResourceSet


class WorkerState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    LEASED = "leased"
    DEAD = "dead"


@dataclass
class Worker:
    worker_id: bytes
    job_id: bytes
    address: str = ""
    state: WorkerState = WorkerState.STARTING
    lease_id: Optional[bytes] = None
    env_key: str = ""


@dataclass
class LeaseRequest:
    req_id: Any                  # opaque to logic: the shell's handle for the reply
    client_id: Any               # the connection that asked
    job_id: bytes
    resources: ResourceSet
    strategy: list
    is_spillback: bool = False
    for_actor: bool = False
    description: str = ""
    placement: Optional[ResourceSet] = None  # actors: must fit to grant; the lease holds ``resources``
    env_key: str = ""            # the runtime env its worker needs ("" for none)
    arg_bytes: dict = field(default_factory=dict)  # node address -> bytes of the next task's arguments there
    task_s: float = 0.0          # the owner's moving average of this key's task time (0: unknown)
    has_fresh_view: bool = False  # decided again after a view refresh: an unknown node is truly unknown
    spill_hops: int = 0          # spillbacks followed so far (0: not counted: never spilled again)

    @property
    def fit_shape(self) -> ResourceSet:
        """What must be free on a node to grant this request."""
        return self.placement if self.placement is not None else self.resources


@dataclass
class Lease:
    lease_id: bytes
    worker_id: bytes
    client_id: Any
    resources: ResourceSet
    gpu_assignment: list = field(default_factory=list)
    is_blocked: bool = False
    for_actor: bool = False      # the worker hosts an actor: the control store decides its end
    task_s: float = 0.0          # the owner's mean task time for the lease's key (0: unknown)
    granted_s: float = 0.0       # when it was granted (the shell's clock; 0: unknown)


NodeView = NodeLoad  # another node as the latest cluster view shows it


# --- effects ----------------------------------------------------------------------------
@dataclass
class GrantLease:
    req_id: Any
    lease_id: bytes
    worker_id: bytes
    worker_address: str
    gpu_ids: list
    resources: dict


@dataclass
class SpillLease:
    req_id: Any
    node_id: bytes
    address: str


@dataclass
class RejectInfeasible:
    req_id: Any
    message: str


@dataclass
class RejectUnschedulable:
    """The request can never run (hard affinity to a dead or unknown node): fail it."""
    req_id: Any
    message: str


@dataclass
class StartWorker:
    worker_id: bytes
    job_id: bytes
    env_key: str = ""
    warn_count: int = 0     # >0: this start took the node's workers to a warning step (the count)


@dataclass
class FailLease:
    req_id: Any
    error_type: str
    message: str


@dataclass
class KillWorker:
    worker_id: bytes
    reason: str


@dataclass
class RefreshView:
    """Fetch the whole cluster view now (a request names a node this view does not know yet)."""


Effect = Union[GrantLease, SpillLease, RejectInfeasible, RejectUnschedulable, RefreshView, StartWorker, KillWorker,
               FailLease]


MAX_SPILL_HOPS = 2  # a request sent on by a busy spillback target goes on once more, then waits


@dataclass
class Unschedulable:
    message: str


class _AwaitView:
    """Decide again once a fresh cluster view has arrived."""


class LeaseManager:
    def __init__(self, node_id: bytes, total: dict[str, float], *, max_starting: int = 4,
                 labels: Optional[dict[str, str]] = None, params: PlacementParams = PlacementParams(),
                 warn_workers_at: int = 0) -> None:
        self.node_id = node_id
        # workers blocked in get() (nested tasks) or many actors: warn at this count, then at each doubling
        self.warn_workers_at = warn_workers_at or max(32, 4 * int(total.get("CPU", 0)))
        self.address = ""            # set by the shell once it listens (matches arg_bytes keys)
        self.labels = dict(labels or {})
        self.params = params
        self.mean_task_s = 0.0
        self.mean_hold_s = 0.0       # moving average of how long a lease holds its slot (0: none returned yet)
        self._now = 0.0              # the time of the event being handled (given by the shell)
        self.dead_nodes: set[bytes] = set()
        self.parked: list[LeaseRequest] = []  # waiting for a fresh view (they name an unknown node)
        self.total = ResourceSet(total)
        self.available = self.total.copy()
        self.reserved = ResourceSet()  # held by placement-group bundles (logic/node/bundles.py)
        self.gpus = GpuSlots(int(self.total.get("GPU")))
        self.max_starting = max(1, max_starting)
        self.queue: list[LeaseRequest] = []
        self._infeasible: list[dict] = [{}, {}, {}]   # shapes rejected as infeasible, last 3 heartbeats
        self.workers: dict[bytes, Worker] = {}
        self.leases: dict[bytes, Lease] = {}
        self.view: dict[bytes, NodeView] = {}
        self._seq = 0
        self._spread_last: Optional[bytes] = None

    # --- ids ------------------------------------------------------------------------------
    def _new_id(self, kind: bytes) -> bytes:
        self._seq += 1
        return kind + self.node_id[:7] + self._seq.to_bytes(8, "little")

    # --- events ---------------------------------------------------------------------------
    def on_lease_requested(self, req: LeaseRequest, now: float = 0.0) -> list[Effect]:
        self._now = now
        return self._place(req)

    def _place(self, req: LeaseRequest) -> list[Effect]:
        effects: list[Effect] = []
        target = self._choose_node(req)
        if isinstance(target, _AwaitView):
            self.parked.append(req)
            return [RefreshView()] if len(self.parked) == 1 else []
        if isinstance(target, Unschedulable):
            return [RejectUnschedulable(req.req_id, target.message)]
        if isinstance(target, str):
            if not req.strategy or req.strategy[0] != "NODE_AFFINITY":   # the autoscaler may add a node
                key = tuple(sorted(req.fit_shape.to_dict().items()))
                self._infeasible[0][key] = self._infeasible[0].get(key, 0) + 1
            return [RejectInfeasible(req.req_id, target)]
        if target is not None:
            return [self._spill(req, target)]
        self.queue.append(req)
        self._dispatch(effects)
        return effects

    def on_worker_registered(self, worker_id: bytes, address: str, now: float = 0.0) -> list[Effect]:
        self._now = now
        w = self.workers.get(worker_id)
        if w is None or w.state is not WorkerState.STARTING:
            return [KillWorker(worker_id, "unknown or duplicate worker registration")]
        w.address = address
        w.state = WorkerState.IDLE
        effects: list[Effect] = []
        self._dispatch(effects)
        return effects

    def on_worker_start_failed(self, worker_id: bytes, error_type: str, message: str) -> list[Effect]:
        """A worker's runtime env could not be set up: fail the requests waiting for that env."""
        w = self.workers.pop(worker_id, None)
        if w is None:
            return []
        effects: list[Effect] = []
        kept = []
        for req in self.queue:
            if req.job_id == w.job_id and req.env_key == w.env_key:
                effects.append(FailLease(req.req_id, error_type, message))
            else:
                kept.append(req)
        self.queue = kept
        self._dispatch(effects)
        return effects

    def on_worker_died(self, worker_id: bytes) -> list[Effect]:
        w = self.workers.pop(worker_id, None)
        if w is None:
            return []
        if w.lease_id is not None:
            self._release(w.lease_id)
        effects: list[Effect] = []
        self._dispatch(effects)
        return effects

    def on_lease_returned(self, lease_id: bytes, is_worker_dead: bool, now: float = 0.0) -> list[Effect]:
        self._now = now
        lease = self.leases.get(lease_id)
        if lease is None:
            return []
        if now > lease.granted_s > 0:
            held_s = now - lease.granted_s
            self.mean_hold_s = held_s if self.mean_hold_s == 0 else 0.8 * self.mean_hold_s + 0.2 * held_s
        effects: list[Effect] = []
        self._release(lease_id)
        w = self.workers.get(lease.worker_id)
        if w is not None:
            if is_worker_dead:
                w.state = WorkerState.DEAD
                del self.workers[w.worker_id]
                effects.append(KillWorker(w.worker_id, "returned as dead"))
            else:
                w.state = WorkerState.IDLE
        self._dispatch(effects)
        return effects

    def on_client_disconnected(self, client_id: Any) -> list[Effect]:
        """A driver or worker went away: drop its queued requests and kill its workers.

        Actor workers stay: their lease holder is the control store, and losing it must not
        kill running actors (a head that comes back finds them; Ray's raylet keeps them too)."""
        self.queue = [r for r in self.queue if r.client_id != client_id]
        self.parked = [r for r in self.parked if r.client_id != client_id]
        effects: list[Effect] = []
        for lease in [l for l in self.leases.values() if l.client_id == client_id and not l.for_actor]:
            self._release(lease.lease_id)
            w = self.workers.pop(lease.worker_id, None)
            if w is not None:
                effects.append(KillWorker(w.worker_id, "its lease holder disconnected"))
        self._dispatch(effects)
        return effects

    def on_worker_blocked(self, lease_id: bytes) -> list[Effect]:
        lease = self.leases.get(lease_id)
        if lease is None or lease.is_blocked:
            return []
        lease.is_blocked = True
        cpu = ResourceSet.from_units({"CPU": lease.resources.units.get("CPU", 0)})
        self.available.add(cpu)
        effects: list[Effect] = []
        self._dispatch(effects)
        return effects

    def on_worker_unblocked(self, lease_id: bytes) -> list[Effect]:
        lease = self.leases.get(lease_id)
        if lease is None or not lease.is_blocked:
            return []
        lease.is_blocked = False
        cpu = ResourceSet.from_units({"CPU": lease.resources.units.get("CPU", 0)})
        self.available.subtract_allow_negative(cpu)
        return []

    def on_cluster_view(self, nodes: list[NodeView]) -> list[Effect]:
        """A fresher view of the other nodes: requests waiting here for resources that another
        node now has free are spilled there, spilled-back ones too (a request spilled here on a
        stale view would otherwise wait for this node while another sits idle).  SPREAD requests
        too: one queued here when the view said every node was full waited for ever on a node
        held by actors while restarted nodes sat empty (found by the simulator, seed 1)."""
        self.view = {n.node_id: n for n in nodes if n.node_id != self.node_id and n.is_alive}
        self.dead_nodes |= {n.node_id for n in nodes if not n.is_alive}
        self.dead_nodes -= set(self.view)
        effects: list[Effect] = []
        parked, self.parked = self.parked, []
        for req in parked:
            req.has_fresh_view = True
            effects += self._place(req)
        kept: list[LeaseRequest] = []
        for req in self.queue:
            kind = req.strategy[0] if req.strategy else "DEFAULT"
            if kind == "PLACEMENT_GROUP" and not req.is_spillback and not req.fit_shape.fits_in(self.total):
                target = next((n for n in sorted(self.view) if req.fit_shape.fits_in(self.view[n].total)), None)
            elif kind not in ("DEFAULT", "SPREAD") or req.fit_shape.fits_in(self.available):
                kept.append(req)
                continue
            else:
                target = self._replace(req)
            if target is None:
                kept.append(req)
                continue
            effects.append(self._spill(req, target))
        self.queue = kept
        return effects

    def on_job_started(self, job_id: bytes, prestart: int) -> list[Effect]:
        have = sum(1 for w in self.workers.values()
                   if w.job_id == job_id and not w.env_key and w.state in (WorkerState.IDLE, WorkerState.STARTING))
        return [self._start_worker(job_id) for _ in range(max(0, prestart - have))]

    def on_job_finished(self, job_id: bytes) -> list[Effect]:
        """Kill the job's workers, except those hosting actors: the control store ends
        those (a detached actor outlives its job)."""
        effects: list[Effect] = []
        self.queue = [r for r in self.queue if r.job_id != job_id or r.for_actor]
        for w in list(self.workers.values()):
            if w.job_id == job_id and not (w.lease_id is not None and self.leases[w.lease_id].for_actor):
                if w.lease_id is not None:
                    self._release(w.lease_id)
                del self.workers[w.worker_id]
                effects.append(KillWorker(w.worker_id, "job finished"))
        self._dispatch(effects)
        return effects

    def on_bundle_resources(self, change: Any) -> list[Effect]:
        """Placement-group bundles were prepared, committed or cancelled here: apply the
        ``bundles.ResourceChange`` (the caller checked that ``reserve`` fits ``available``)."""
        self.available.subtract(change.reserve)
        self.reserved.add(change.reserve)
        self.total.add(change.add_total)
        self.available.add(change.add_total)
        self.total.subtract(change.remove_total)
        self.available.subtract_allow_negative(change.remove_total)
        self.reserved.subtract(change.unreserve)
        self.available.add(change.unreserve)
        for name in change.remove_total.units:  # a removed group leaves no zero entries behind
            for rs in (self.total, self.available):
                if rs.units.get(name) == 0:
                    del rs.units[name]
        effects: list[Effect] = []
        self._dispatch(effects)
        return effects

    # --- decisions ------------------------------------------------------------------------
    def _choose_node(self, req: LeaseRequest) -> Union[None, bytes, str, "Unschedulable", "_AwaitView"]:
        """None: queue here. bytes: spill to that node. str: infeasible, with the reason.
        Unschedulable: can never run (fail it)."""
        kind = req.strategy[0] if req.strategy else "DEFAULT"
        shape = req.fit_shape
        if kind == "NODE_AFFINITY":
            node_id, is_soft = req.strategy[1], bool(req.strategy[2])
            if node_id == self.node_id:
                if shape.fits_in(self.total):
                    return None
                if not is_soft:
                    return f"{req.description}: node {node_id.hex()[:8]} can never fit {shape.to_dict()}"
            elif node_id in self.view and shape.fits_in(self.view[node_id].total):
                return None if req.is_spillback else node_id
            elif not is_soft:
                if node_id not in self.view and node_id not in self.dead_nodes and not req.has_fresh_view:
                    return _AwaitView()
                if node_id not in self.view:
                    state = "dead" if node_id in self.dead_nodes else "not a node of this cluster"
                    return Unschedulable(f"{req.description}: the node {node_id.hex()} required by "
                                         f"NodeAffinitySchedulingStrategy(soft=False) is {state}")
                return f"{req.description}: node {node_id.hex()[:8]} cannot fit {shape.to_dict()}"
            kind = "DEFAULT"
        if kind == "PLACEMENT_GROUP":  # wait here until some node holds the group's bundles
            if req.is_spillback or shape.fits_in(self.total):
                return None
            return next((n for n in sorted(self.view) if shape.fits_in(self.view[n].total)), None)
        fits_here = shape.fits_in(self.total) and placement.gpu_shape_ok(shape)
        if req.is_spillback:
            if not fits_here:
                return f"{req.description}: spilled here but cannot fit"
            if kind == "DEFAULT" and 0 < req.spill_hops < MAX_SPILL_HOPS and not shape.fits_in(self._uncommitted()):
                return self._replace(req)  # sent here on a stale view: pass it on to a node free now, once
            return None
        if kind == "DEFAULT" and not self.view and fits_here:
            return None  # a cluster of one node (as far as this node knows): nothing to decide
        hard = soft = None
        if kind == "NODE_LABEL":
            hard, soft = req.strategy[1] or None, req.strategy[2] or None
            for selector in (hard, soft):
                problem = None if selector is None else placement.selector_error(selector)
                if problem is not None:
                    return Unschedulable(f"{req.description}: {problem}")
        pick = placement.choose(self._local_load(shape), list(self.view.values()), shape,
                                strategy="SPREAD" if kind == "SPREAD" else "DEFAULT", hard=hard, soft=soft,
                                arg_bytes=req.arg_bytes, task_s=req.task_s, params=self.params,
                                spread_after=self._spread_last, local_ok=fits_here)
        if isinstance(pick, str):
            return f"{req.description}: {pick}"
        if kind == "SPREAD":
            self._spread_last = pick.node_id
        return None if pick.node_id == self.node_id else pick.node_id

    def _replace(self, req: LeaseRequest) -> Optional[bytes]:
        """A queued DEFAULT request that cannot run here now: another node per the policy, or None.

        This node is no candidate (``local_ok=False``): it cannot run the request now, and its
        estimated wait may be wrong for good (a slot's mean hold time learnt from one lease given
        back at once, on a node full of actors that never give theirs back, kept requests here
        for ever while 156 of 200 nodes were free: found by the simulator, actors, 200 nodes, seed 7)."""
        shape = req.fit_shape
        local = self._local_load(shape)
        local.available = self.available.copy()
        local.queued = max(1, local.queued)
        pick = placement.choose(local, list(self.view.values()), shape, arg_bytes=req.arg_bytes,
                                task_s=req.task_s, params=self.params, local_ok=False)
        if isinstance(pick, str) or pick.node_id == self.node_id or not placement.fits_now(pick, shape):
            return None
        return pick.node_id

    def _spill(self, req: LeaseRequest, target: bytes) -> SpillLease:
        """Send the request to ``target`` and count it in that node's view until the next heartbeat.

        The entry is copied before it is counted in: a view's entries may be shared (the simulator
        gives every node the same snapshot), and only this node's copy may change."""
        shared = self.view[target]
        view = self.view[target] = dataclasses.replace(shared, available=shared.available.copy())
        if not placement.fits_now(view, req.fit_shape):
            view.queued += 1
        view.available.subtract_allow_negative(req.fit_shape)
        return SpillLease(req.req_id, target, view.address)

    def _local_load(self, shape: ResourceSet) -> NodeLoad:
        """This node for a decision: free means free after what queued requests will take."""
        uncommitted = self._uncommitted()
        queued = 0 if shape.fits_in(uncommitted) else len(self.queue)
        return NodeLoad(self.node_id, self.address, self.total, uncommitted, True, self.labels, queued,
                        self._mean_task_s())

    def _mean_task_s(self) -> float:
        """How long a slot stays taken: owners reuse a lease for their key's backlog, so once leases
        have come back this is their mean hold time; before, the owners' mean task time of what runs
        and waits here."""
        if self.mean_hold_s > 0:
            return self.mean_hold_s
        known = [l.task_s for l in self.leases.values() if l.task_s > 0]
        known += [r.task_s for r in self.queue if r.task_s > 0]
        return sum(known) / len(known) if known else self.mean_task_s

    def _uncommitted(self) -> ResourceSet:
        """Available resources minus what requests already queued here will take."""
        left = self.available.copy()
        for queued in self.queue:
            left.subtract_allow_negative(queued.resources)
        return left


    def _dispatch(self, effects: list[Effect]) -> None:
        if not self.queue:
            return
        # One pass over the workers per dispatch (not one per queued request: with hundreds of
        # actors leased and hundreds of requests queued that scan made actor creation quadratic).
        # Workers are pooled per (job, runtime environment).
        idle: dict[tuple[bytes, str], list[Worker]] = {}
        starting_by_pool: dict[tuple[bytes, str], int] = {}
        starting = 0
        for w in self.workers.values():
            if w.state is WorkerState.IDLE:
                idle.setdefault((w.job_id, w.env_key), []).append(w)
            elif w.state is WorkerState.STARTING:
                starting += 1
                key = (w.job_id, w.env_key)
                starting_by_pool[key] = starting_by_pool.get(key, 0) + 1
        waiting_for_worker: dict[tuple[bytes, str], int] = {}
        remaining: list[LeaseRequest] = []
        for req in self.queue:
            if not (req.fit_shape.fits_in(self.available) and self.gpus.can_assign(req.resources.units.get("GPU", 0))):
                remaining.append(req)
                continue
            pool_key = (req.job_id, req.env_key)
            pool = idle.get(pool_key)
            if not pool:
                waiting_for_worker[pool_key] = waiting_for_worker.get(pool_key, 0) + 1
                remaining.append(req)
                continue
            effects.append(self._grant(req, pool.pop(0)))
        self.queue = remaining
        for (job_id, env_key), need in sorted(waiting_for_worker.items()):
            have = starting_by_pool.get((job_id, env_key), 0)
            while have < need and starting < self.max_starting:
                effects.append(self._start_worker(job_id, env_key))
                have += 1
                starting += 1

    def _grant(self, req: LeaseRequest, w: Worker) -> GrantLease:
        lease_id = self._new_id(b"L")
        gpu_assignment = self.gpus.assign(req.resources.units.get("GPU", 0))
        self.available.subtract(req.resources)
        self.leases[lease_id] = Lease(lease_id, w.worker_id, req.client_id, req.resources, gpu_assignment,
                                      for_actor=req.for_actor, task_s=req.task_s, granted_s=self._now)
        if req.task_s > 0:
            self.mean_task_s = req.task_s if self.mean_task_s == 0 else 0.8 * self.mean_task_s + 0.2 * req.task_s
        w.state = WorkerState.LEASED
        w.lease_id = lease_id
        return GrantLease(req.req_id, lease_id, w.worker_id, w.address,
                          [idx for idx, _ in gpu_assignment], req.resources.to_dict())

    def _release(self, lease_id: bytes) -> None:
        lease = self.leases.pop(lease_id)
        if lease.is_blocked:  # its CPU was lent out while blocked: only the rest comes back
            held = ResourceSet.from_units({k: v for k, v in lease.resources.units.items() if k != "CPU"})
            self.available.add(held)
        else:
            self.available.add(lease.resources)
        self.gpus.release(lease.gpu_assignment)
        w = self.workers.get(lease.worker_id)
        if w is not None:
            w.lease_id = None

    def _start_worker(self, job_id: bytes, env_key: str = "") -> StartWorker:
        worker_id = self._new_id(b"W")
        self.workers[worker_id] = Worker(worker_id, job_id, env_key=env_key)
        warn = 0
        if len(self.workers) >= self.warn_workers_at:
            warn, self.warn_workers_at = len(self.workers), 2 * self.warn_workers_at
        return StartWorker(worker_id, job_id, env_key, warn)

    # --- queries and checks -----------------------------------------------------------------
    def pending_demands(self) -> list[list[Any]]:
        shapes: dict[tuple, int] = {}
        for req in self.queue:
            key = tuple(sorted(req.fit_shape.to_dict().items()))
            shapes[key] = shapes.get(key, 0) + 1
        # Infeasible requests are not queued (the owner asks again each second); they stay visible to the
        # autoscaler for 3 calls (one per heartbeat), then the window moves on.
        for key in sorted(set().union(*self._infeasible)):
            shapes[key] = shapes.get(key, 0) + max(w.get(key, 0) for w in self._infeasible)
        self._infeasible = [{}] + self._infeasible[:-1]
        return [[dict(k), n] for k, n in shapes.items()]

    def load_report(self) -> list[Any]:
        """What heartbeats carry for other nodes' placement decisions: [queued, mean task s]."""
        return [len(self.queue), self._mean_task_s()]

    def check_invariants(self) -> None:
        held = ResourceSet()
        for lease in self.leases.values():
            if lease.is_blocked:
                held.add(ResourceSet.from_units({k: v for k, v in lease.resources.units.items() if k != "CPU"}))
            else:
                held.add(lease.resources)
            w = self.workers.get(lease.worker_id)
            assert w is None or w.lease_id == lease.lease_id, "worker and lease disagree"
        check = self.available.copy()
        check.add(held)
        check.add(self.reserved)
        assert check == self.total, f"available {self.available} + held {held} != total {self.total}"
