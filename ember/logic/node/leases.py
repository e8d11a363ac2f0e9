"""The node daemon's scheduler: worker leases, spillback and the worker pool.

Rule 1: a lease holds its resources on this node from grant to return.
Rule 2: a request that can never fit any known node is answered "infeasible" (the owner
        warns and asks again later); one that fits elsewhere *now* while this node is
        busy is spilled to the least-loaded such node, once (a spilled request is never
        spilled again).
Rule 3: workers belong to one job and one runtime env (``env_key``, "" for none); an idle
        worker of the same job and env is reused before a new one is started.  A worker whose
        env could not be set up fails the requests queued for that job and env.

Theory of operation: the shell turns messages and process events into calls of the
``on_*`` methods; each returns a list of effects, which the shell performs.  No I/O,
no clock, no randomness here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ember.logic.resources import UNIT, GpuSlots, ResourceSet


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


@dataclass
class NodeView:
    node_id: bytes
    address: str
    total: ResourceSet
    available: ResourceSet
    is_alive: bool = True


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
class StartWorker:
    worker_id: bytes
    job_id: bytes
    env_key: str = ""


@dataclass
class FailLease:
    req_id: Any
    error_type: str
    message: str


@dataclass
class KillWorker:
    worker_id: bytes
    reason: str


Effect = Union[GrantLease, SpillLease, RejectInfeasible, StartWorker, KillWorker, FailLease]


class LeaseManager:
    def __init__(self, node_id: bytes, total: dict[str, float], *, max_starting: int = 4) -> None:
        self.node_id = node_id
        self.total = ResourceSet(total)
        self.available = self.total.copy()
        self.gpus = GpuSlots(int(self.total.get("GPU")))
        self.max_starting = max(1, max_starting)
        self.queue: list[LeaseRequest] = []
        self._infeasible: list[dict] = [{}, {}, {}]   # shapes rejected as infeasible, last 3 heartbeats
        self.workers: dict[bytes, Worker] = {}
        self.leases: dict[bytes, Lease] = {}
        self.view: dict[bytes, NodeView] = {}
        self._seq = 0
        self._spread_next = 0

    # --- ids ------------------------------------------------------------------------------
    def _new_id(self, kind: bytes) -> bytes:
        self._seq += 1
        return kind + self.node_id[:7] + self._seq.to_bytes(8, "little")

    # --- events ---------------------------------------------------------------------------
    def on_lease_requested(self, req: LeaseRequest) -> list[Effect]:
        effects: list[Effect] = []
        target = self._choose_node(req)
        if isinstance(target, str):
            if not req.strategy or req.strategy[0] != "NODE_AFFINITY":   # the autoscaler may add a node
                key = tuple(sorted(req.fit_shape.to_dict().items()))
                self._infeasible[0][key] = self._infeasible[0].get(key, 0) + 1
            return [RejectInfeasible(req.req_id, target)]
        if target is not None:
            view = self.view[target]
            view.available.subtract_allow_negative(req.fit_shape)
            return [SpillLease(req.req_id, target, view.address)]
        self.queue.append(req)
        self._dispatch(effects)
        return effects

    def on_worker_registered(self, worker_id: bytes, address: str) -> list[Effect]:
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

    def on_lease_returned(self, lease_id: bytes, is_worker_dead: bool) -> list[Effect]:
        lease = self.leases.get(lease_id)
        if lease is None:
            return []
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
        node now has free are spilled there."""
        self.view = {n.node_id: n for n in nodes if n.node_id != self.node_id and n.is_alive}
        effects: list[Effect] = []
        kept: list[LeaseRequest] = []
        for req in self.queue:
            kind = req.strategy[0] if req.strategy else "DEFAULT"
            if req.is_spillback or kind != "DEFAULT" or req.fit_shape.fits_in(self.available):
                kept.append(req)
                continue
            target = self._least_loaded(req.fit_shape)
            if target is None:
                kept.append(req)
                continue
            self.view[target].available.subtract_allow_negative(req.fit_shape)
            effects.append(SpillLease(req.req_id, target, self.view[target].address))
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

    # --- decisions ------------------------------------------------------------------------
    def _choose_node(self, req: LeaseRequest) -> Union[None, bytes, str]:
        """None: queue here. bytes: spill to that node. str: infeasible, with the reason."""
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
                return f"{req.description}: node {node_id.hex()[:8]} is not alive or cannot fit {shape.to_dict()}"
        fits_here = shape.fits_in(self.total) and self._gpu_shape_ok(shape)
        if req.is_spillback:
            return None if fits_here else f"{req.description}: spilled here but cannot fit"
        if kind == "SPREAD":
            candidates = [self.node_id] if fits_here else []
            candidates += sorted(n for n, v in self.view.items() if shape.fits_in(v.available))
            if candidates:
                pick = candidates[self._spread_next % len(candidates)]
                self._spread_next += 1
                if pick != self.node_id:
                    return pick
                return None
        if fits_here:
            if shape.fits_in(self._uncommitted()):
                return None
            best = self._least_loaded(shape)
            return best  # None: queue here
        for node_id in sorted(self.view):
            if shape.fits_in(self.view[node_id].total):
                best = self._least_loaded(shape)
                return best if best is not None else node_id
        return (f"No node can ever fit {req.description} requiring {shape.to_dict()}; "
                f"cluster totals: {[self.total.to_dict()] + [v.total.to_dict() for v in self.view.values()]}")

    def _uncommitted(self) -> ResourceSet:
        """Available resources minus what requests already queued here will take."""
        left = self.available.copy()
        for queued in self.queue:
            left.subtract_allow_negative(queued.resources)
        return left

    def _gpu_shape_ok(self, rs: ResourceSet) -> bool:
        units = rs.units.get("GPU", 0)
        return units <= UNIT or units % UNIT == 0

    def _least_loaded(self, rs: ResourceSet) -> Optional[bytes]:
        best, best_free = None, -1
        for node_id in sorted(self.view):
            v = self.view[node_id]
            if rs.fits_in(v.available):
                free = v.available.units.get("CPU", 0)
                if free > best_free:
                    best, best_free = node_id, free
        return best

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
                                      for_actor=req.for_actor)
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
        return StartWorker(worker_id, job_id, env_key)

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
        assert check == self.total, f"available {self.available} + held {held} != total {self.total}"
