"""The owner's task submission: dependency waits, worker leases, direct pushes, retries.

Runs on the core worker's I/O thread.  Tasks are queued per scheduling key (function,
resource shape, strategy); each key leases workers from the node daemon (following
spillback to other nodes) and pushes its tasks straight to them, reusing a lease while
tasks of the key remain and returning it after ``lease_linger_s`` of idleness.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import sys
from typing import Any, Optional

from ember.logic import task_states as ts
from ember import exceptions as exc
from ember.config import CONFIG
from ember.logic.owner import generators, task_policy
from ember.logic.owner.key_queue import KeyQueue
from ember.object_ref import ObjectRef
from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.shared import serialization
from ember.shells.worker.memory_store import FAILED, PENDING, READY

log = logging.getLogger("ember.submitter")


class TaskRecord:
    __slots__ = ("task_id", "key", "function_id", "function_blob", "name", "args", "kwarg_names",
                 "num_returns", "return_ids", "max_retries", "retry_exceptions", "attempt", "resources",
                 "strategy", "arg_refs", "pending_deps", "runtime_env")

    def __init__(self, task_id: bytes, key: tuple, function_id: bytes, function_blob: bytes, name: str,
                 args: list, kwarg_names: list, num_returns: int, max_retries: int, retry_exceptions: Any,
                 resources: dict, strategy: list, arg_refs: list, runtime_env: Optional[dict]) -> None:
        self.task_id = task_id
        self.key = key
        self.function_id = function_id
        self.function_blob = function_blob
        self.name = name
        self.args = args
        self.kwarg_names = kwarg_names
        self.num_returns = num_returns
        # a generator task's items arrive as it yields; a dynamic one also has return 1 (the list of items)
        n = 1 if num_returns == generators.DYNAMIC else num_returns
        self.return_ids = [task_id + i.to_bytes(4, "little") for i in range(1, n + 1)]
        self.max_retries = max_retries
        self.retry_exceptions = retry_exceptions
        self.attempt = 0
        self.resources = resources
        self.strategy = strategy
        self.arg_refs = arg_refs          # keeps argument objects alive until the task ends
        self.pending_deps = 0
        self.runtime_env = runtime_env


class LeaseState:
    __slots__ = ("lease_id", "worker_id", "worker_address", "raylet", "conn", "linger", "is_dead", "gpu_ids")

    def __init__(self, granted: m.LeaseGranted, raylet: rpc.Connection) -> None:
        self.lease_id = granted.lease_id
        self.worker_id = granted.worker_id
        self.worker_address = granted.worker_address
        self.gpu_ids = granted.gpu_ids
        self.raylet = raylet
        self.conn: Optional[rpc.Connection] = None
        self.linger: Optional[asyncio.TimerHandle] = None
        self.is_dead = False


class KeyState:
    """One scheduling key: its queue and leases (decisions in KeyQueue) plus what the shell needs."""
    __slots__ = ("key", "q", "warned_infeasible", "resources", "strategy", "name", "runtime_env")

    def __init__(self, rec: TaskRecord) -> None:
        self.key = rec.key
        self.q: KeyQueue[TaskRecord, LeaseState] = KeyQueue(
            depth_max=CONFIG.tasks_in_flight_per_worker_max, short_task_s=CONFIG.pipeline_tasks_below_s,
            pending_max=CONFIG.max_pending_lease_requests)
        self.warned_infeasible = False
        self.resources = rec.resources
        self.strategy = rec.strategy
        self.name = rec.name
        self.runtime_env = rec.runtime_env


class TaskSubmitter:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.keys: dict[tuple, KeyState] = {}
        self.sent_functions: set[tuple[bytes, bytes]] = set()
        self._incoming: collections.deque[TaskRecord] = collections.deque()
        self.in_flight: dict[bytes, LeaseState] = {}      # task id -> the lease it was pushed on
        self.cancelled: set[bytes] = set()                # task ids cancelled while pushed/waiting
        self.waiting: dict[bytes, TaskRecord] = {}        # tasks waiting for their arguments
        self._drain_scheduled = False
        self._unreachable_warned: set[str] = set()  # node daemons whose failure was already reported
        cw.connection_lost_hooks.append(self._on_connection_lost)
        self.children: dict[bytes, list[bytes]] = {}   # (workers) running task id -> tasks it submitted
        cw.handlers[m.CancelChildren] = self._on_cancel_children
        self._event_fields: dict[tuple, dict] = {}   # scheduling key -> the fields of its task events

    # --- from user threads --------------------------------------------------------------------
    def submit(self, rec: TaskRecord) -> None:
        self._incoming.append(rec)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.cw.post(self._drain_incoming)

    # --- I/O thread ------------------------------------------------------------------------------
    def _drain_incoming(self) -> None:
        self._drain_scheduled = False
        while self._incoming:
            self._resolve_deps(self._incoming.popleft())

    def _resolve_deps(self, rec: TaskRecord) -> None:
        store = self.cw.store
        for arg in rec.args:
            if arg[0] == 1 and arg[2] == self.cw.address:
                e = store.get(arg[1])
                if e is not None and e.state == PENDING and store.add_waiter(arg[1], lambda r=rec: self.cw.post(self._dep_ready, r)):
                    rec.pending_deps += 1
        fields = self._event_fields.get(rec.key)
        if fields is None:   # the same for every task of the key: built once
            fields = self._event_fields[rec.key] = {"name": rec.name, "func_or_class_name": rec.name,
                                                    "type": "NORMAL_TASK", "required_resources": rec.resources}
        self.cw.task_events.record(rec.task_id, rec.attempt,
                                   ts.PENDING_ARGS_AVAIL if rec.pending_deps else ts.PENDING_NODE_ASSIGNMENT, fields)
        if rec.pending_deps == 0:
            self._enqueue(rec)
        else:
            self.waiting[rec.task_id] = rec

    def _dep_ready(self, rec: TaskRecord) -> None:
        rec.pending_deps -= 1
        if rec.pending_deps == 0:
            if rec.task_id in self.cancelled:
                self.cancelled.discard(rec.task_id)
                return
            self.waiting.pop(rec.task_id, None)
            self.cw.task_events.record(rec.task_id, rec.attempt, ts.PENDING_NODE_ASSIGNMENT)
            self._enqueue(rec)

    def resubmit(self, rec: TaskRecord) -> None:
        """Run a finished task again (lineage reconstruction, I/O thread): its lost returns are
        PENDING again and its argument refs are held in ``rec.arg_refs``."""
        self._resolve_deps(rec)

    def cancel(self, task_id: bytes, force: bool, recursive: bool = True) -> bool:
        """``ember.cancel`` (I/O thread): drop a queued task, or ask its worker to stop it (and,
        with ``recursive``, the tasks it submitted).  False when this owner has no such pending
        task (finished already: a no-op; or an actor call)."""
        error = exc.TaskCancelledError(task_id.hex())
        for ks in self.keys.values():
            for rec in ks.q.queue:
                if rec.task_id == task_id:
                    ks.q.task_removed(rec)
                    self._fail(rec, error)
                    return True
        lease = self.in_flight.get(task_id)
        if lease is not None:
            self.cancelled.add(task_id)
            if lease.conn is not None and not lease.conn.closed:
                if recursive:   # before CancelTask: with force the worker dies on it
                    lease.conn.send(m.CancelChildren(task_id, force))
                lease.conn.request_future(m.CancelTask(task_id, force)).add_done_callback(lambda f: f.exception())
            return True
        rec = self.waiting.pop(task_id, None)
        if rec is not None:   # still waiting for its arguments
            self.cancelled.add(task_id)
            self._fail(rec, error)
            return True
        return False

    def cancel_any(self, task_id: bytes, force: bool, recursive: bool) -> None:
        """``ember.cancel`` (I/O thread): a task or, failing that, an actor call; a finished one is
        left alone (a no-op, as in Ray)."""
        if not self.cancel(task_id, force, recursive):
            self.cw.actor_submitter.cancel(task_id)

    def note_child(self, parent_id: bytes, child_id: bytes) -> None:
        """A task running here (``parent_id``) submitted ``child_id`` (any thread)."""
        self.children.setdefault(parent_id, []).append(child_id)

    def _on_cancel_children(self, conn: rpc.Connection, request_id: int, msg: m.CancelChildren) -> None:
        for child_id in self.children.pop(msg.task_id, ()):
            self.cancel(child_id, msg.force, True)

    def _enqueue(self, rec: TaskRecord) -> None:
        store = self.cw.store
        args = rec.args
        inlined = -1  # counted on the first owned ref argument that could be inlined
        for i, arg in enumerate(args):
            if arg[0] != 1 or arg[2] != self.cw.address:
                continue
            e = store.get(arg[1])
            if e is None:
                continue
            if e.state == FAILED:
                self._fail(rec, e.error)
                return
            if e.state == READY and e.data is not None:
                if inlined < 0:
                    inlined = sum(len(a[1]) for a in args if a[0] == 0)
                size = len(e.data)
                if task_policy.may_inline_arg(size, inlined, CONFIG.inline_object_max_bytes,
                                              CONFIG.task_inline_args_max_bytes):
                    args[i] = [0, e.data]
                    inlined += size
        ks = self.keys.get(rec.key)
        if ks is None:
            ks = self.keys[rec.key] = KeyState(rec)
        ks.q.task_added(rec)
        self._pump(ks)

    def _pump(self, ks: KeyState) -> None:
        """Carry out what the key's queue decides: pushes, lease requests, idle timers."""
        q = ks.q
        for lease, rec in q.next_pushes():
            self._push(ks, lease, rec)
        want = q.lease_requests_wanted()
        if want:
            q.leases_requested(want)
            for _ in range(want):
                self.cw.spawn(self._request_lease(ks))
        for lease in q.idle_leases():
            if lease.linger is None and not lease.is_dead:
                lease.linger = self.cw.loop.call_later(CONFIG.lease_linger_s, self._return_lease, ks, lease)

    def _arg_bytes(self, ks: KeyState) -> dict[str, int]:
        """Node daemon address -> bytes of the next task's stored arguments there."""
        out: dict[str, int] = {}
        if not ks.q.queue:
            return out
        store = self.cw.store
        for arg in ks.q.queue[0].args:
            if arg[0] == 1:
                e = store.get(arg[1])
                if e is not None and e.node_address:
                    out[e.node_address] = out.get(e.node_address, 0) + e.size
        return out

    def _locality_raylet(self, arg_bytes: dict[str, int]) -> Any:
        """The node daemon holding most of the next task's argument bytes, if not ours."""
        address = task_policy.preferred_node(list(arg_bytes.items()), self.cw.node_address, CONFIG.locality_min_bytes)
        return self.cw.peers.get(address) if address else None

    async def _request_lease(self, ks: KeyState) -> None:
        raylet = self.cw.raylet
        target = self.cw.node_address  # the node daemon asked now (for the report if it fails)
        is_spillback, hops, retry_s = False, 0, 0.0
        try:
            arg_bytes = self._arg_bytes(ks)
            remote = self._locality_raylet(arg_bytes)
            if remote is not None:
                try:
                    raylet = await remote
                except (OSError, rpc.ConnectionLost, TimeoutError):
                    raylet = self.cw.raylet
            while ks.q.queue:
                target = raylet.peer or target
                req = m.RequestLease(self.cw.job_id, ks.resources, ks.strategy, is_spillback, False, ks.name,
                                     None, ks.runtime_env, arg_bytes or None, ks.q.mean_task_s or 0.0, hops)
                reply = await raylet.request(req)
                if isinstance(reply, m.LeaseGranted):
                    await self._lease_granted(ks, reply, raylet)
                    return
                if isinstance(reply, m.LeaseSpillback):
                    target = reply.address
                    raylet = await self.cw.peers.get(reply.address)
                    is_spillback, hops = True, hops + 1
                    continue
                if isinstance(reply, m.LeaseInfeasible):
                    if not ks.warned_infeasible:
                        ks.warned_infeasible = True
                        sys.stderr.write(f"Warning: the task {ks.name} cannot be scheduled right now: "
                                         f"{reply.message}. It will wait until a node that fits joins.\n")
                    raylet, is_spillback, hops = self.cw.raylet, False, 0
                    # soon at first (an autoscaler may be bringing a node that fits), then every infeasible_retry_s
                    retry_s = min(CONFIG.infeasible_retry_s, retry_s * 2 if retry_s else 0.1)
                    await asyncio.sleep(retry_s)
                    continue
        except rpc.RpcError as e:
            if e.kind == "RuntimeEnvSetupError":
                self._fail_queue(ks, exc.RuntimeEnvSetupError(e.message))
            elif e.kind == "TaskPlacementGroupRemoved":
                self._fail_queue(ks, exc.TaskPlacementGroupRemoved(e.message))
            elif e.kind == "Unschedulable":
                self._fail_queue(ks, exc.TaskUnschedulableError(e.message))
            else:
                self._fail_queue(ks, exc.RaySystemError(f"lease request for {ks.name} failed: {e.message}"))
        except (OSError, rpc.ConnectionLost, TimeoutError) as e:
            local = self.cw.raylet
            if local is None or local.closed:  # our node daemon is gone: nothing can lease any more
                if not self.cw.is_shutdown:
                    self._fail_queue(ks, self.cw.raylet_lost_error())
            elif not self.cw.is_shutdown:  # another node failed us: lease again through ours
                self._report_unreachable(target, e)
                await asyncio.sleep(0.2)
                ks.q.lease_request_ended()
                self._pump(ks)
                return
        ks.q.lease_request_ended()

    def _report_unreachable(self, address: str, error: BaseException) -> None:
        """Say once per node daemon that it failed us and what ember does about it."""
        if address in self._unreachable_warned:
            log.debug("lease request to %s failed again: %s", address, error)
            return
        self._unreachable_warned.add(address)
        log.warning("A lease request to the node daemon at %s failed (%s): the node probably died. ember "
                    "leases workers through the other nodes; further failures there are not reported.",
                    address, error)

    async def _lease_granted(self, ks: KeyState, granted: m.LeaseGranted, raylet: rpc.Connection) -> None:
        ks.q.lease_request_ended()
        if raylet is not self.cw.raylet and not self.cw.recovery.is_following:
            self.cw.recovery.follow_node_deaths_soon()   # a worker owning tasks on another node
        lease = LeaseState(granted, raylet)
        try:
            lease.conn = await self.cw.peers.get(granted.worker_address)
        except (OSError, rpc.ConnectionLost, TimeoutError):
            self._lease_dead(ks, lease)
            return
        ks.q.lease_ready(lease)
        self._pump(ks)

    def _push(self, ks: KeyState, lease: LeaseState, rec: TaskRecord) -> None:
        if lease.linger is not None:
            lease.linger.cancel()
            lease.linger = None
        sent_key = (lease.worker_id, rec.function_id)
        blob = None
        if sent_key not in self.sent_functions:
            self.sent_functions.add(sent_key)
            blob = rec.function_blob
        spec = m.TaskSpec(rec.task_id, self.cw.job_id, rec.function_id, blob, rec.name, rec.args, rec.kwarg_names,
                          rec.num_returns, self.cw.address, rec.max_retries, False, rec.attempt, rec.resources,
                          lease.gpu_ids, None, 0, rec.runtime_env,
                          rec.strategy[0] == "PLACEMENT_GROUP" and bool(rec.strategy[3]))
        assert lease.conn is not None
        try:
            fut = lease.conn.request_future(m.PushTask(spec))
        except rpc.ConnectionLost:
            self.sent_functions.discard(sent_key)
            ks.q.push_failed(lease, rec)
            self._lease_dead(ks, lease)
            return
        pushed_at = self.cw.loop.time()
        self.in_flight[rec.task_id] = lease
        fut.add_done_callback(lambda f: self._task_replied(ks, lease, rec, f, pushed_at))

    def _task_replied(self, ks: KeyState, lease: LeaseState, rec: TaskRecord, fut: asyncio.Future,
                      pushed_at: float) -> None:
        self.in_flight.pop(rec.task_id, None)
        ks.q.task_answered(lease, self.cw.loop.time() - pushed_at)
        err = fut.exception()
        if rec.task_id in self.cancelled:
            self.cancelled.discard(rec.task_id)
            if err is not None:
                self._lease_dead(ks, lease)
            self._fail(rec, exc.TaskCancelledError(rec.task_id.hex()))
            self._pump(ks)
            return
        if err is not None:
            self._lease_dead(ks, lease)
            if isinstance(err, rpc.ConnectionLost):
                if task_policy.has_attempts_left(rec.max_retries, rec.attempt):
                    self._retry_or_fail(ks, rec, self._crash_error(rec, lease), is_system=True)
                else:   # failing for good: say whether its node died (learned within a moment)
                    self.cw.spawn(self._fail_crashed(rec, lease))
            else:
                self._retry_or_fail(ks, rec, exc.RaySystemError(f"pushing {rec.name} failed: {err}"), is_system=True)
            return
        done: m.TaskDone = fut.result()
        if done.error is not None:
            error = serialization.deserialize(done.error)
            self._retry_or_fail(ks, rec, error, is_system=False)
        else:
            self._complete(rec, done.returns, lease.worker_address)
        self._pump(ks)

    def _crash_error(self, rec: TaskRecord, lease: LeaseState) -> BaseException:
        """The error of a task whose worker connection closed: NodeDiedError when its node is known
        dead (or its node daemon's connection closed too), else WorkerCrashedError."""
        node = lease.raylet.peer or ""
        if lease.raylet is not self.cw.raylet and (lease.raylet.closed or self.cw.recovery.node_is_dead(node)):
            return exc.NodeDiedError(f"Task {rec.name} failed because the node it ran on (node daemon {node}) "
                                     f"died; its worker was {lease.worker_address}.")
        return exc.WorkerCrashedError(f"(task {rec.name}, worker {lease.worker_address})")

    async def _fail_crashed(self, rec: TaskRecord, lease: LeaseState) -> None:
        """A task out of retries lost its worker: wait briefly for its node daemon's connection
        to close or the node's death to be published, so the error names the cause."""
        for _ in range(10 if lease.raylet is not self.cw.raylet else 0):   # our own node: not dead
            if isinstance(self._crash_error(rec, lease), exc.NodeDiedError):
                break
            await asyncio.sleep(0.1)
        self._fail(rec, self._crash_error(rec, lease))

    def node_died(self, address: str) -> None:
        """The control store declared the node daemon at ``address`` dead: tasks pushed to its
        workers will never answer (a partitioned node's connections hang), so close them; the
        replies then fail and the tasks are retried elsewhere within max_retries."""
        for lease in set(self.in_flight.values()):
            if lease.raylet.peer == address and lease.conn is not None and not lease.conn.closed:
                # info, not a warning: the node's death is reported once already (test_node_death_noise)
                log.info("node daemon %s died: closing the connection to its worker %s (its tasks are "
                         "retried within max_retries)", address, lease.worker_address)
                lease.conn.abort()
        raylet = self.cw.peers.get_nowait(address)   # lease requests waiting there fail and go elsewhere
        if raylet is not None and raylet is not self.cw.raylet and not raylet.closed:
            raylet.abort()

    def _retry_or_fail(self, ks: KeyState, rec: TaskRecord, error: BaseException, is_system: bool) -> None:
        if task_policy.should_retry(max_retries=rec.max_retries, attempt=rec.attempt, is_system_failure=is_system,
                                    retry_exceptions=rec.retry_exceptions, error=error):
            self.cw.task_events.record(rec.task_id, rec.attempt, ts.FAILED, error_fields(error))
            rec.attempt += 1
            self.cw.task_events.record(rec.task_id, rec.attempt, ts.PENDING_NODE_ASSIGNMENT,
                                       {"name": rec.name, "func_or_class_name": rec.name, "type": "NORMAL_TASK"})
            log.info("retrying %s (attempt %d): %s", rec.name, rec.attempt, type(error).__name__)
            ks.q.task_added(rec, front=True)
            self._pump(ks)
            return
        self._fail(rec, error)

    def _complete(self, rec: TaskRecord, returns: list, worker_address: str) -> None:
        if rec.num_returns < 0:
            returns = self.cw.generator_task_done(rec.task_id, rec.num_returns, None)
        store = self.cw.store
        has_refs = False
        stored: Optional[list] = None   # returns kept in a node's store: lineage may rebuild them
        for ret in returns:
            if not store.complete(ret.object_id, data=ret.data, node_id=ret.node_id,
                                  node_address=ret.node_address, size=ret.size_bytes):
                if ret.node_address:   # nobody holds the ref any more (or a rebuild found it READY)
                    e = store.get(ret.object_id)
                    if e is None or e.node_address != ret.node_address:
                        self.cw._send_free(ret.node_address, ret.object_id)
            elif ret.node_address:
                if stored is None:
                    stored = []
                stored.append(ret.object_id)
            if ret.contained_refs:
                has_refs = True
        if has_refs:  # count the refs inside the values, then let the executor drop its holds
            self.cw.refs.returns_arrived(worker_address, rec.task_id, returns)
        if stored is not None or self.cw.recovery.active:
            self.cw.recovery.task_completed(rec, stored or [])
        rec.arg_refs = None
        self.cw.task_events.record(rec.task_id, rec.attempt, ts.FINISHED)

    def _fail(self, rec: TaskRecord, error: BaseException) -> None:
        if rec.num_returns < 0:
            self.cw.generator_task_done(rec.task_id, rec.num_returns, error)
        for oid in rec.return_ids:
            self.cw.store.complete(oid, error=error)
        if self.cw.recovery.active:
            self.cw.recovery.task_failed(rec)
        rec.arg_refs = None
        self.cw.task_events.record(rec.task_id, rec.attempt, ts.FAILED, error_fields(error))

    def _fail_queue(self, ks: KeyState, error: BaseException) -> None:
        while ks.q.queue:
            self._fail(ks.q.queue.popleft(), error)

    def _lease_dead(self, ks: KeyState, lease: LeaseState) -> None:
        if lease.is_dead:
            return
        lease.is_dead = True
        if lease.linger is not None:
            lease.linger.cancel()
        ks.q.lease_gone(lease)
        if not lease.raylet.closed:
            lease.raylet.send(m.ReturnLease(lease.lease_id, True))

    def _return_lease(self, ks: KeyState, lease: LeaseState) -> None:
        lease.linger = None
        if lease.is_dead or lease not in ks.q.idle_leases():
            return
        ks.q.lease_gone(lease)
        lease.is_dead = True
        if not lease.raylet.closed:
            lease.raylet.send(m.ReturnLease(lease.lease_id, False))

    def _on_connection_lost(self, conn: rpc.Connection) -> None:
        for ks in self.keys.values():
            for lease in ks.q.idle_leases():
                if lease.conn is conn:
                    self._lease_dead(ks, lease)
                    self._pump(ks)


def error_fields(error: BaseException) -> dict:
    """A failed task's event fields: the cause's type (not RayTaskError's) and the message."""
    cause = getattr(error, "cause", None)
    kind = type(cause).__name__ if isinstance(cause, BaseException) else type(error).__name__
    return {"error_type": kind, "error_message": str(error)[:2000]}


def encode_args(cw: Any, args: tuple, kwargs: dict) -> tuple[list, list, list]:
    """Arguments as wire entries: refs stay refs, small values inline, large values put."""
    wire: list = []
    keep: list = []
    inlined = 0
    values = list(args) + list(kwargs.values())
    for i, value in enumerate(values):
        if type(value) is ObjectRef:
            wire.append([1, value._id, value._owner])
            keep.append(value)
            continue
        what = f"argument {i}" if i < len(args) else f"keyword argument {list(kwargs)[i - len(args)]!r}"
        ser = serialization.serialize(value, what=what)
        if ser.contained_refs:  # held until the task ends; the executor borrows them
            keep.extend(ser.contained_refs)
        size = ser.total_bytes
        if task_policy.may_inline_arg(size, inlined, CONFIG.inline_object_max_bytes,
                                      CONFIG.task_inline_args_max_bytes):
            wire.append([0, ser.to_bytes()])
            inlined += size
        else:  # a large value, or over the task's inline budget: stored (owner memory or shm), passed by ref
            oid = cw.new_id() + b"\x00\x00\x00\x00"
            ref = ObjectRef(oid, cw.address)
            cw.store_owned(oid, ser)
            wire.append([1, oid, cw.address])
            keep.append(ref)
    return wire, list(kwargs), keep


class TaskPlan:
    """What every call of one remote function with one set of options shares (computed once)."""
    __slots__ = ("function_id", "blob", "name", "num_returns", "resources", "max_retries", "retry_exceptions",
                 "strategy", "runtime_env", "key")

    def __init__(self, *, function_id: bytes, blob: bytes, name: str, num_returns: int, resources: dict,
                 max_retries: int, retry_exceptions: Any, strategy: list, runtime_env: Optional[dict]) -> None:
        self.function_id = function_id
        self.blob = blob
        self.name = name
        self.num_returns = num_returns
        self.resources = resources
        self.max_retries = max_retries
        self.retry_exceptions = retry_exceptions
        self.strategy = strategy
        self.runtime_env = runtime_env
        self.key = (function_id, tuple(sorted(resources.items())), repr(strategy),
                    repr(runtime_env) if runtime_env else "")


def submit_task(cw: Any, plan: TaskPlan, args: tuple, kwargs: dict) -> list[ObjectRef]:
    wire, kwarg_names, keep = encode_args(cw, args, kwargs) if (args or kwargs) else ([], [], [])
    rec = TaskRecord(cw.new_id(), plan.key, plan.function_id, plan.blob, plan.name, wire, kwarg_names,
                     plan.num_returns, plan.max_retries, plan.retry_exceptions, plan.resources, plan.strategy,
                     keep, plan.runtime_env)
    refs: list = []
    address = cw.address
    add_pending = cw.store.add_pending
    for oid in rec.return_ids:
        add_pending(oid, True)
        refs.append(ObjectRef(oid, address))
    if rec.num_returns == generators.STREAMING or rec.num_returns <= -3:
        refs.append(cw.new_generator(rec.task_id, rec.num_returns))
    elif rec.num_returns == generators.DYNAMIC:
        cw.generators.register(rec.task_id, rec.num_returns)
    if cw.mode == "worker":   # a nested task: ember.cancel(parent, recursive=True) reaches it
        parent = getattr(cw.context, "task", None)
        if parent is not None:
            cw.submitter.note_child(parent.task_id, rec.task_id)
    cw.submitter.submit(rec)
    return refs
