"""Runs tasks pushed to this worker: resolves arguments, calls user code, stores results.

Pushes arrive on the I/O thread and are queued; the worker's main thread executes them
one at a time (Ray's default for normal tasks) and hands each reply back to the I/O
thread.
"""
from __future__ import annotations

import os
import signal
import queue
import threading
from typing import Any, Optional


from ember.logic import task_states as ts
from ember import exceptions as exc
from ember.config import CONFIG
from ember.object_ref import ObjectRef
from ember.logic.gpus import task_visible_devices
from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.shared import serialization
from ember.shells.worker import generators
from ember.shells.worker.actor_executor import ActorExecutor
from ember.shells.worker.task_context import TaskContext


class Executor:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.functions: dict[bytes, Any] = {}
        self.queue: "queue.SimpleQueue[Optional[tuple]]" = queue.SimpleQueue()
        self.gpu_ids: list = []
        self._base_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
        cw.handlers[m.PushTask] = self._on_push
        cw.handlers[m.Exit] = self._on_exit
        cw.handlers[m.CancelTask] = self._on_cancel
        self.cancelled: set[bytes] = set()   # cancelled before they started
        self.running_task: Optional[bytes] = None
        self._main_thread_id = 0
        self._cancel_lock = threading.Lock()
        self.running_fields: dict = {}   # the fields of this worker's RUNNING events
        self.actor = ActorExecutor(cw, self)  # CreateActor / PushActorTask

    # --- I/O thread ---------------------------------------------------------------------------
    def _on_push(self, conn: rpc.Connection, request_id: int, msg: m.PushTask) -> None:
        self.queue.put((conn, request_id, msg.spec))

    def _on_exit(self, conn: rpc.Connection, request_id: int, msg: m.Exit) -> None:
        self.queue.put(None)

    def _on_cancel(self, conn: rpc.Connection, request_id: int, msg: m.CancelTask) -> None:
        """Cancel a queued task, interrupt a running one (KeyboardInterrupt), or with force
        end this worker process (the owner then reports TaskCancelledError)."""
        if self.actor.instance is not None:   # an actor call: queued ones are dropped, async ones cancelled
            self.actor.cancel(msg.task_id)
            conn.reply(request_id, m.Ok())
            return
        with self._cancel_lock:
            if msg.task_id == self.running_task:
                if msg.force:   # after a moment: the cancels of its children (CancelChildren) go out first
                    self.cw.loop.call_later(0.1, os._exit, 1)
                    conn.reply(request_id, m.Ok())
                    return
                # SIGINT to the main thread: interrupts blocking calls (sleep, I/O) too, and
                # Python raises KeyboardInterrupt in the task.
                signal.pthread_kill(self._main_thread_id, signal.SIGINT)
            else:
                self.cancelled.add(msg.task_id)
        conn.reply(request_id, m.Ok())

    # --- main thread ----------------------------------------------------------------------------
    def run(self) -> None:
        self._main_thread_id = threading.get_ident()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        while True:
            try:
                if self._run_one():
                    return
            except KeyboardInterrupt:  # a cancel that arrived between tasks: nothing to stop
                continue

    def _run_one(self) -> bool:
        """Run one queued item; True when the worker should exit."""
        item = self.queue.get()
        if item is None:
            return True
        if callable(item):  # work posted for the main thread (actor creation and calls)
            item()
            return False
        conn, request_id, spec = item
        try:
            done = self.execute(spec)
        except KeyboardInterrupt:  # a cancel that landed just as the task ended
            done = self.cancelled_reply(spec)
        self.cw.post(conn.reply, request_id, done)
        return False

    def function_for(self, spec: m.TaskSpec) -> Any:
        fn = self.functions.get(spec.function_id)
        if fn is None:
            if spec.function_blob is None:
                raise exc.RaySystemError(f"function {spec.name} was never sent to this worker")
            fn = serialization.deserialize(spec.function_blob)
            self.functions[spec.function_id] = fn
        return fn

    def resolve_args(self, spec: m.TaskSpec) -> tuple[list, dict]:
        values: list[Any] = [None] * len(spec.args)
        refs, ref_pos = [], []
        for i, arg in enumerate(spec.args):
            if arg[0] == 0:
                values[i] = serialization.deserialize(arg[1])
            else:
                refs.append(ObjectRef(arg[1], arg[2]))
                ref_pos.append(i)
        if refs:
            for i, v in zip(ref_pos, self.cw.get(refs, None, is_task_args=True)):
                values[i] = v
        nk = len(spec.kwarg_names)
        if nk:
            return values[:-nk], dict(zip(spec.kwarg_names, values[-nk:]))
        return values, {}

    def _set_gpus(self, spec: m.TaskSpec) -> list:
        gpu_ids = list(spec.gpu_ids)
        if spec.resources.get("GPU"):
            os.environ["CUDA_VISIBLE_DEVICES"] = task_visible_devices(gpu_ids, self._base_cuda)
        elif self._base_cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = self._base_cuda
        return gpu_ids

    def execute(self, spec: m.TaskSpec) -> m.TaskDone:
        if self.cancelled and spec.task_id in self.cancelled:
            self.cancelled.discard(spec.task_id)
            return self.cancelled_reply(spec)
        ctx = self.cw.context
        ctx.task = TaskContext(spec, self._set_gpus(spec))
        self.running_task = spec.task_id
        fields = self.running_fields
        if fields.get("job_id") != spec.job_id:   # a worker runs one job's tasks: built once
            fields = self.running_fields = {"worker_id": self.cw.worker_id, "worker_pid": os.getpid(),
                                            "node_id": self.cw.node_id, "job_id": spec.job_id}
        self.cw.task_events.record(spec.task_id, spec.attempt, ts.RUNNING, fields)
        try:
            fn = self.function_for(spec)
            args, kwargs = self.resolve_args(spec)
            result = fn(*args, **kwargs)
            if spec.num_returns < 0:   # a generator task: its values stream to the owner as it yields
                done = generators.stream_items(self, spec, result)
            else:
                done = m.TaskDone(self.store_returns(spec, result), None, False)
            with self._cancel_lock:
                self.running_task = None
            return done
        except KeyboardInterrupt:
            return self.cancelled_reply(spec)
        except Exception as e:  # the task's own error: reported, the worker lives on
            return self.error_reply(spec, e)
        finally:
            with self._cancel_lock:
                self.running_task = None
            ctx.task = None
            if self.cw.submitter.children:   # the tasks it submitted: no longer cancellable through it
                self.cw.submitter.children.pop(spec.task_id, None)

    def cancelled_reply(self, spec: m.TaskSpec) -> m.TaskDone:
        self.cw.refs.wait_borrows_registered()
        err = exc.TaskCancelledError(spec.task_id.hex())
        return m.TaskDone([], serialization.serialize(err).to_bytes(), False)

    def error_reply(self, spec: m.TaskSpec, e: BaseException) -> m.TaskDone:
        self.cw.refs.wait_borrows_registered()  # refs the task kept are registered before the reply
        if isinstance(e, exc.RayTaskError):
            err = e
        else:
            err = exc.RayTaskError.from_exception(e, spec.name)
        try:
            data = serialization.serialize(err).to_bytes()
        except Exception:
            data = serialization.serialize(exc.RayTaskError(spec.name, err.traceback_str, RuntimeError(str(e)))).to_bytes()
        return m.TaskDone([], data, True)

    def store_returns(self, spec: m.TaskSpec, result: Any) -> list:
        n = spec.num_returns
        if n == 1:
            values = [result]
        elif n == 0:
            values = []
        else:
            try:
                values = list(result)
            except TypeError:
                raise ValueError(f"Task {spec.name} has num_returns={n} but returned a {type(result).__name__}, "
                                 f"not a sequence of {n} values") from None
            if len(values) != n:
                raise ValueError(f"Task {spec.name} has num_returns={n} but returned {len(values)} values")
        lent: list = []
        out = [self.return_object(spec, i, value, lent) for i, value in enumerate(values, start=1)]
        if lent:  # kept alive until the caller has registered them
            self.cw.refs.hold_for_caller(spec.task_id, spec.owner_address, lent)
        self.cw.refs.wait_borrows_registered()
        return out

    def return_object(self, spec: m.TaskSpec, index: int, value: Any, lent: list) -> m.ReturnObject:
        """Return value ``index`` of the task: inline when small, else written to this node's store.
        Refs inside the value are added to ``lent`` (the caller counts them)."""
        oid = spec.task_id + index.to_bytes(4, "little")
        ser = serialization.serialize(value, what=f"the return value of {spec.name}")
        inner = None
        if ser.contained_refs:  # the caller counts them (ReturnObject.contained_refs)
            refs = [r for r in ser.contained_refs if r._owner]
            lent.extend(refs)
            inner = [[r._id, r._owner] for r in refs] or None
        size = ser.total_bytes
        if size <= CONFIG.inline_object_max_bytes:
            return m.ReturnObject(oid, ser.to_bytes(), None, "", size, inner)
        self.cw.write_to_shm(oid, ser, spec.owner_address)
        return m.ReturnObject(oid, None, self.cw.node_id, self.cw.node_address, size, inner)
