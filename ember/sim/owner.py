"""A simulated driver: the owner of a task graph, built on ember's owner logic.

Per scheduling key a ``KeyQueue`` (``logic/owner/key_queue.py``) decides pushes, lease requests
and idle leases; ``task_policy.should_retry`` decides retries; a ``ReferenceTable``
(``logic/owner/references.py``) counts the references to every output, pins arguments while
their tasks are pending, records lineage and says which objects to free or recover when a node
is removed.  What the real shell (``shells/worker/task_submitter.py``) does around them, this
does around the network model: leases asked of the local node daemon and followed through
spillbacks, infeasible answers retried after ``infeasible_retry_s``, idle leases returned after
``lease_linger_s``, a broken connection to a node failing the tasks pushed there.

The owner's view of a task ends exactly once (``_end``): a second end is an invariant failure.
"""
from __future__ import annotations

from typing import Any, Optional

from ember.logic.owner import task_policy
from ember.logic.owner.key_queue import KeyQueue
from ember.logic.owner import references as R
from ember.sim.world import InvariantBroken

WAITING, QUEUED, PUSHED, FINISHED, FAILED = range(5)


class SimTask:
    __slots__ = ("task_id", "key", "resources", "duration_s", "deps", "output", "output_bytes", "max_retries",
                 "state", "attempt", "lease", "pushed_at", "submitted_at", "started_at", "missing", "dependents",
                 "stored_args", "is_sink", "rebuilding", "ends", "error", "released")

    def __init__(self, task_id: bytes, key: int, resources: dict, duration_s: float, deps: tuple,
                 output_bytes: int, max_retries: int) -> None:
        self.task_id = task_id
        self.key = key
        self.resources = resources
        self.duration_s = duration_s
        self.deps = deps                  # task ids whose outputs are arguments
        self.output = b"O" + task_id[1:]
        self.output_bytes = output_bytes
        self.max_retries = max_retries
        self.state = WAITING
        self.attempt = 0
        self.lease: Any = None
        self.pushed_at = 0.0
        self.submitted_at = -1.0
        self.started_at = -1.0
        self.missing = 0
        self.dependents: list[bytes] = []
        self.stored_args: tuple = ()
        self.is_sink = True
        self.rebuilding = False
        self.ends = 0
        self.error = ""
        self.released = False             # the driver dropped its own reference to the output


class _Key:
    __slots__ = ("q", "resources", "strategy")

    def __init__(self, cfg: Any, resources: dict, strategy: list) -> None:
        self.q: KeyQueue = KeyQueue(depth_max=cfg.pipeline_depth, short_task_s=cfg.pipeline_below_s,
                                    pending_max=cfg.max_pending_lease_requests)
        self.resources = resources
        self.strategy = strategy


class SimOwner:
    def __init__(self, cluster: Any, index: int, node: Any) -> None:
        self.c = cluster
        self.name = f"o{index}"
        self.node = node                   # the driver's node (never crashed by the fault plan)
        self.job = index.to_bytes(4, "big")
        self.tasks: dict[bytes, SimTask] = {}
        self.keys: dict[int, _Key] = {}
        self.refs = R.ReferenceTable(log_entries_max=1)
        self.requests: dict[int, tuple[int, str, int]] = {}   # token -> (key, node asked, hops)
        self.leases: dict[tuple[str, bytes], tuple[int, bytes]] = {}  # (node, lease id) -> (key, worker id)
        self.on_lease: dict[tuple[str, bytes], dict[bytes, None]] = {}  # lease -> tasks pushed there
        self._tokens = 0
        self.ended = 0
        self.failed = 0
        self.duplicates = 0
        self.submitted = 0
        self.events_pending = 0
        self.lost_objects = 0
        self.reconstructions = 0
        self.dirty: dict[int, None] = {}
        self._touches: dict[int, int] = {}

    # --- submitting -----------------------------------------------------------------------------
    def add_key(self, key: int, resources: dict, strategy: Optional[list] = None) -> None:
        self.keys[key] = _Key(self.c.cfg, resources, strategy or ["DEFAULT"])

    def submit(self, task: SimTask) -> None:
        self.tasks[task.task_id] = task
        self.submitted += 1
        task.submitted_at = self.c.w.now
        self.refs.add_ref(task.output, self.name, True)
        args = tuple(self.tasks[d].output for d in task.deps)
        if args:
            self.refs.handle(R.TaskSubmittedWithArgs(task.task_id, args), self.c.w.now)
        for d in task.deps:
            dep = self.tasks[d]
            dep.dependents.append(task.task_id)
            dep.is_sink = False
        self._resolve(task)
        self.events_pending += 1

    def _resolve(self, task: SimTask) -> None:
        task.missing = sum(1 for d in task.deps if not self._available(self.tasks[d]))
        if task.missing == 0:
            self._enqueue(task)
        else:
            task.state = WAITING

    def _available(self, dep: SimTask) -> bool:
        return dep.state == FINISHED and not dep.rebuilding

    def _enqueue(self, task: SimTask, front: bool = False) -> None:
        task.state = QUEUED
        task.stored_args = tuple(self.tasks[d].output for d in task.deps
                                 if self.tasks[d].output_bytes > self.c.cfg.inline_max_bytes)
        k = self.keys[task.key]
        k.q.task_added(task, front=front)
        self._pump(task.key)

    def _pump(self, key: int) -> None:
        self.dirty[key] = None
        k = self.keys[key]
        q = k.q
        for lease, task in q.next_pushes():
            node, _ = lease
            _, worker_id = self.leases[lease]
            task.state, task.lease, task.pushed_at = PUSHED, lease, self.c.w.now
            self.on_lease.setdefault(lease, {})[task.task_id] = None
            self.c.net.send(self.name, node, "PushTask", self.c.endpoint(node).push_task, self.name, worker_id,
                            task, task.attempt, size=300)
        want = q.lease_requests_wanted()
        if want:
            q.leases_requested(want)
            for _ in range(want):
                self._ask_lease(key, self.node.name, 0)
        for lease in q.idle_leases():
            self.c.w.after(self.c.cfg.lease_linger_s, self._linger_over, key, lease)

    def _ask_lease(self, key: int, target: str, hops: int) -> None:
        k = self.keys[key]
        self._tokens += 1
        self.requests[self._tokens] = (key, target, hops)
        arg_bytes = None
        if k.q.queue:
            head = k.q.queue[0]
            if head.stored_args:
                arg_bytes = {}
                for obj in head.stored_args:
                    for n in self.c.copies.get(obj, ()):
                        arg_bytes[n] = arg_bytes.get(n, 0) + self.c.object_size(obj)
        self.c.net.send(self.name, target, "RequestLease", self.c.endpoint(target).request_lease, self.name,
                        self._tokens, self.job, k.resources, k.strategy, hops > 0, False, None,
                        k.q.mean_task_s or 0.0, hops, arg_bytes)

    def _linger_over(self, key: int, lease: tuple) -> None:
        q = self.keys[key].q
        if lease in q.in_flight and q.in_flight[lease] == 0 and not q.queue:
            q.lease_gone(lease)
            self.leases.pop(lease, None)
            node, lease_id = lease
            self.c.net.send(self.name, node, "ReturnLease", self.c.endpoint(node).return_lease, lease_id, False)

    # --- lease answers ----------------------------------------------------------------------------
    def lease_granted(self, token: int, node: str, lease_id: bytes, worker_id: bytes, for_actor: bool) -> None:
        req = self.requests.pop(token, None)
        if req is None:
            self.c.net.send(self.name, node, "ReturnLease", self.c.endpoint(node).return_lease, lease_id, False)
            return
        key = req[0]
        q = self.keys[key].q
        q.lease_request_ended()
        lease = (node, lease_id)
        self.leases[lease] = (key, worker_id)
        q.lease_ready(lease)
        self._pump(key)

    def lease_spilled(self, token: int, address: str) -> None:
        req = self.requests.pop(token, None)
        if req is None:
            return
        key, _, hops = req
        if address in self.c.net.down or self.c.node_by_name(address) is None:
            self.c.w.after(0.2, self._request_over, key)
            return
        k = self.keys[key]
        self._tokens += 1
        self.requests[self._tokens] = (key, address, hops + 1)
        self.c.net.send(self.name, address, "RequestLease", self.c.endpoint(address).request_lease, self.name,
                        self._tokens, self.job, k.resources, k.strategy, True, False, None, k.q.mean_task_s or 0.0,
                        hops + 1, None)

    def lease_infeasible(self, token: int, message: str) -> None:
        req = self.requests.pop(token, None)
        if req is not None:
            self.c.w.after(self.c.cfg.infeasible_retry_s, self._retry_infeasible, req[0])

    def _retry_infeasible(self, key: int) -> None:
        if self.keys[key].q.queue:
            self._ask_lease(key, self.node.name, 0)
        else:
            self._request_over(key)

    def lease_failed(self, token: int, message: str) -> None:
        req = self.requests.pop(token, None)
        if req is None:
            return
        q = self.keys[req[0]].q
        q.lease_request_ended()
        while q.queue:
            self._end(q.queue.popleft(), FAILED, "unschedulable: " + message)

    def _request_over(self, key: int) -> None:
        self.keys[key].q.lease_request_ended()
        self._pump(key)

    # --- task answers -------------------------------------------------------------------------------
    def _off_lease(self, task: SimTask) -> None:
        pushed = self.on_lease.get(task.lease)
        if pushed is not None:
            pushed.pop(task.task_id, None)
            if not pushed:
                del self.on_lease[task.lease]

    def pushed_on(self, lease: tuple) -> list[SimTask]:
        return [self.tasks[t] for t in self.on_lease.get(lease, ())]

    def task_done(self, task_id: bytes, attempt: int, stored_on: Optional[str]) -> None:
        task = self.tasks[task_id]
        if task.state != PUSHED or task.attempt != attempt:
            self.duplicates += 1   # a late answer of an attempt already retried: ignored
            return
        self._off_lease(task)
        lease = task.lease
        q = self.keys[task.key].q
        q.task_answered(lease, self.c.w.now - task.pushed_at)
        now = self.c.w.now
        if stored_on is not None:
            self.refs.handle(R.ObjectLocationAdded(task.output, stored_on), now)
            self.c.reported.setdefault(task.output, set()).add(stored_on)
            if task.output in self.refs:
                self.refs.handle(R.LineageRecorded(task.output, task.task_id), now)
        else:
            self.refs.handle(R.ObjectInlined(task.output), now)
        if task.rebuilding:
            task.rebuilding = False
            task.state = FINISHED
            self.reconstructions += 1
        else:
            self._end(task, FINISHED, "")
            self._run(self.refs.handle(R.TaskArgsReleased(task.task_id), now))
        for d in task.dependents:
            dep = self.tasks[d]
            if dep.state == WAITING:
                dep.missing -= 1
                if dep.missing <= 0:
                    self._enqueue(dep)
        if task.released and task.ends == 1:
            self._drop_local(task)
        self._pump(task.key)

    def release(self, task_id: bytes) -> None:
        """The driver is done with this output: no task submitted later takes it (the graph's
        window moved past it); a sink is got first (its reference goes once it finished)."""
        task = self.tasks[task_id]
        task.released = True
        if task.dependents or task.ends:
            self._drop_local(task)

    def _drop_local(self, task: SimTask) -> None:
        summary = self.refs.summary(task.output)
        if summary is not None and summary.local_count:
            self._run(self.refs.handle(R.RefDropped(task.output), self.c.w.now))

    def task_failed(self, task_id: bytes, attempt: int, why: str) -> None:
        task = self.tasks[task_id]
        if task.state != PUSHED or task.attempt != attempt:
            return
        self._off_lease(task)
        self._system_failure(task, why)

    def task_arg_lost(self, task_id: bytes, attempt: int, obj: bytes) -> None:
        """An argument had no copy left when the worker went to fetch it: wait for it again."""
        task = self.tasks[task_id]
        if task.state != PUSHED or task.attempt != attempt:
            return
        self._off_lease(task)
        self.keys[task.key].q.task_answered(task.lease, 0.0)
        task.lease = None
        self._resolve(task)
        self._pump(task.key)

    def _system_failure(self, task: SimTask, why: str) -> None:
        task.lease = None
        if task.rebuilding:
            task.attempt += 1
            self._enqueue(task, front=True)
            return
        if task_policy.should_retry(max_retries=task.max_retries, attempt=task.attempt, is_system_failure=True,
                                    retry_exceptions=False, error=RuntimeError(why)):
            task.attempt += 1
            self._enqueue(task, front=True)
        else:
            self._end(task, FAILED, why)
            self._run(self.refs.handle(R.TaskArgsReleased(task.task_id), self.c.w.now))
            self._pump(task.key)

    def worker_died(self, node: str, lease_id: Optional[bytes]) -> None:
        if lease_id is not None:
            self._lease_lost((node, lease_id), "the worker died")

    def _lease_lost(self, lease: tuple, why: str) -> None:
        info = self.leases.pop(lease, None)
        if info is None:
            return
        key = info[0]
        self.keys[key].q.lease_gone(lease)
        for task in self.pushed_on(lease):
            self._off_lease(task)
            self._system_failure(task, why)
        self._pump(key)

    def link_reset(self, peer: str) -> None:
        if peer[0] != "n":
            return
        for lease in sorted(l for l in self.leases if l[0] == peer):
            self._lease_lost(lease, f"the connection to {peer} broke")
        for token in sorted(t for t, r in self.requests.items() if r[1] == peer):
            key = self.requests.pop(token)[0]
            self.c.w.after(0.2, self._request_over, key)

    # --- references ------------------------------------------------------------------------------------
    def location_added(self, obj: bytes, node: str) -> None:
        if obj in self.refs:
            self.refs.handle(R.ObjectLocationAdded(obj, node), self.c.w.now)
            self.c.reported.setdefault(obj, set()).add(node)

    def node_removed(self, node: str) -> None:
        self._run(self.refs.handle(R.NodeRemoved(node), self.c.w.now))
        self.link_reset(node)

    def _run(self, effects: list) -> None:
        for eff in effects:
            if isinstance(eff, R.FreeObject):
                self.c.free_object(eff.object_id)
            elif isinstance(eff, R.RecoverObject):
                self._recover(eff.object_id, eff.lineage_task_id)

    def _recover(self, obj: bytes, lineage: Optional[bytes]) -> None:
        self.c.check_lost(obj)
        task = self.tasks.get(b"T" + obj[1:])
        if lineage is None or task is None:
            self.lost_objects += 1
            return
        if task.state in (QUEUED, PUSHED) or task.rebuilding:
            return
        task.rebuilding = True
        task.attempt += 1
        for d in task.dependents:
            dep = self.tasks[d]
            if dep.state == QUEUED:
                if self.keys[dep.key].q.task_removed(dep):
                    dep.state = WAITING
                    dep.missing = 1
        self._resolve(task)

    # --- ends ----------------------------------------------------------------------------------------------
    def _end(self, task: SimTask, state: int, error: str) -> None:
        task.ends += 1
        if task.ends > 1:
            raise InvariantBroken(f"task {task.task_id.hex()} of {self.name} ended twice ({error or 'finished'})")
        task.state = state
        self.ended += 1
        self.events_pending += 1
        if state == FAILED:
            self.failed += 1
            task.error = error
            for d in task.dependents:  # its dependents can never run
                dep = self.tasks[d]
                if dep.state == WAITING:
                    self._end(dep, FAILED, "a dependency failed")
                    self._run(self.refs.handle(R.TaskArgsReleased(dep.task_id), self.c.w.now))
        else:
            self.c.record_delay(task)
        if task.released and (task.dependents or state == FINISHED or state == FAILED):
            self._drop_local(task)

    def flush_events(self) -> None:
        if self.events_pending:
            head = self.c.leader
            self.c.net.send(self.name, head, "TaskEvents", self.c.head_of(head).task_events, self.events_pending,
                            size=80 * self.events_pending)
            self.events_pending = 0
        if self.ended < self.submitted or self.c.workload_active():
            self.c.w.after(1.0, self.flush_events)

    def check(self) -> None:
        """Each touched key's queue; one with many leases every (leases / 50) touches (the check is O(leases))."""
        for key in self.dirty:
            q = self.keys[key].q
            n = self._touches.get(key, 0) + 1
            if n * 50 >= len(q.in_flight):
                q.check_invariants()
                n = 0
            self._touches[key] = n
        self.dirty.clear()

    def done(self) -> bool:
        return self.ended == self.submitted and not any(t.rebuilding for t in self.tasks.values() if t.is_sink)
