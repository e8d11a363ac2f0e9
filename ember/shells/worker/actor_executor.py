"""The actor's side of actors: build the instance, then run method calls in order.

``CreateActor`` (from the control store) runs ``__init__`` on the worker's main thread
and answers once it returned or raised.  ``PushActorTask`` (from callers) passes through
``CallOrder``, which releases each caller's calls in sequence order, and then runs:

- a sync actor with ``max_concurrency == 1``: on the main thread, one at a time;
- a threaded actor (``max_concurrency > 1``): in a pool of that many threads;
- an async actor (any ``async def`` method): as tasks on one event loop in its own
  thread, at most ``max_concurrency`` (default 1000) at once; its sync methods run on
  that loop's thread too.
- concurrency groups (``concurrency_groups={"io": 2}``, ``@ember.method(concurrency_group=)``,
  ``.options(concurrency_group=)`` on a call): each group gets its own event loop thread
  (async actors) or thread pool (others) with its own limit; methods in no group run in
  the default group (the modes above, and a sync actor with groups becomes threaded).

``exit_actor()`` (or ``__ray_terminate__``) reports the exit to the control store,
fails the calling call with ActorDiedError and ends the process.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import sys
import threading
from typing import Any, Callable, Optional

from ember.logic import task_states as ts
from ember import exceptions as exc
from ember.config import CONFIG
from ember.object_ref import ObjectRef
from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.shared import serialization
from ember.protocol.actor_spec import decode_creation_spec
from ember.shells.worker import generators
from ember.shells.worker.task_context import TaskContext
from ember.logic.gpus import task_visible_devices

log = logging.getLogger("ember.actor_executor")

_EXITED_MESSAGE = "The actor exited by calling exit_actor()."


class CallOrder:
    """Per caller, hand out calls in sequence order (pure: no I/O, no threads).

    ``arrived(caller, seq, min_seq, item)`` returns the items now runnable, in order.
    ``min_seq`` is the caller's promise that every call below it is finished or
    abandoned: a fresh incarnation starts there and a gap left by an abandoned call is
    skipped (items waiting below it are dropped: their caller has given up on them).
    """

    def __init__(self) -> None:
        self.next_seq: dict[str, int] = {}
        self.waiting: dict[str, dict[int, Any]] = {}
        self.dropped = 0

    def arrived(self, caller: str, seq: int, min_seq: int, item: Any) -> list[Any]:
        nxt = self.next_seq.get(caller, min_seq)
        waiting = self.waiting.setdefault(caller, {})
        if nxt < min_seq:
            for s in [s for s in waiting if s < min_seq]:
                del waiting[s]
                self.dropped += 1
            nxt = min_seq
        if seq < nxt:
            ready = [item]  # sent again after the caller skipped ahead: run it now
        else:
            waiting[seq] = item
            ready = []
        while nxt in waiting:
            ready.append(waiting.pop(nxt))
            nxt += 1
        self.next_seq[caller] = nxt
        if not waiting:
            del self.waiting[caller]
        return ready

    def check_invariants(self) -> None:
        for caller, waiting in self.waiting.items():
            assert waiting, f"empty wait list kept for {caller}"
            assert min(waiting) > self.next_seq[caller], f"{caller}: runnable call left waiting"


def _start_loop(name: str, limit: int) -> tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]:
    """An event loop running on a thread of its own, with a semaphore of ``limit`` calls."""
    ready = threading.Event()
    box: list = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        box.append((loop, asyncio.Semaphore(limit)))
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, name=name, daemon=True).start()
    ready.wait()
    return box[0]


class _ExitRequested(Exception):
    """Raised inside the executor when a call asked the actor to exit."""


class ActorExecutor:
    def __init__(self, cw: Any, executor: Any) -> None:
        self.cw = cw
        self.executor = executor            # the task executor: args, returns, errors, main-thread queue
        self.instance: Any = None
        self.class_name = ""
        self.order = CallOrder()
        self.mode = ""                      # "main", "threads" or "async"
        self.pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.semaphore: Optional[asyncio.Semaphore] = None
        # concurrency groups: each has its own event loop thread (async actors) or thread pool
        self.group_loops: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Semaphore]] = {}
        self.group_pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self.method_groups: dict[str, str] = {}   # method name -> the group it was declared in
        self.gpu_ids: list = []
        self.is_exiting = False
        self.cancelled_calls: set[bytes] = set()   # calls cancelled before they started
        self.async_calls: dict[bytes, tuple[asyncio.AbstractEventLoop, asyncio.Task]] = {}  # running async calls
        cw.handlers[m.CreateActor] = self._on_create
        cw.handlers[m.PushActorTask] = self._on_push

    # --- I/O thread ---------------------------------------------------------------------------------
    def _on_create(self, conn: rpc.Connection, request_id: int, msg: m.CreateActor) -> None:
        self.executor.queue.put(lambda: self._create(conn, request_id, msg))

    def _on_push(self, conn: rpc.Connection, request_id: int, msg: m.PushActorTask) -> None:
        spec = msg.spec
        if self.instance is None or getattr(self.cw, "actor_id", None) != spec.actor_id:
            conn.reply(request_id, self._error_done(spec, exc.ActorUnavailableError(
                "this worker does not host the actor (yet)", spec.actor_id)))
            return
        for item in self.order.arrived(spec.owner_address, spec.sequence_no, msg.min_sequence_no,
                                       (conn, request_id, spec, msg.concurrency_group)):
            self._dispatch(item)

    def _dispatch(self, item: tuple) -> None:
        conn, request_id, spec, group = item
        group = group or self.method_groups.get(spec.function_id.decode(), "")
        if self.mode == "async":
            loop, semaphore = self.group_loops.get(group) or (self.loop, self.semaphore)
            assert loop is not None and semaphore is not None
            loop.call_soon_threadsafe(self._start_async, loop, (conn, request_id, spec, semaphore))
        elif self.mode == "threads":
            pool = self.group_pools.get(group) or self.pool
            assert pool is not None
            pool.submit(self._run_sync, conn, request_id, spec)
        else:
            self.executor.queue.put(lambda: self._run_sync(conn, request_id, spec))

    # --- creation (main thread) -------------------------------------------------------------------------
    def _create(self, conn: rpc.Connection, request_id: int, msg: m.CreateActor) -> None:
        cw = self.cw
        try:
            spec = decode_creation_spec(msg.creation_spec)
        except Exception as e:
            cw.post(conn.reply, request_id, m.ActorCreationReply(None, f"bad creation spec: {e}"))
            return
        self._adopt(spec, msg)
        init_spec = m.TaskSpec(spec.actor_id, spec.job_id, b"__init__", None, f"{spec.class_name}.__init__",
                               spec.args, spec.kwarg_names, 0, spec.owner_address, 0, False, 0,
                               spec.running_resources, msg.gpu_ids, spec.actor_id, 0, None)
        ctx = cw.context
        ctx.task = self.executor_task_context(init_spec)
        try:
            cls = serialization.deserialize(spec.class_blob)
            args, kwargs = self.executor.resolve_args(init_spec)
            instance = cls(*args, **kwargs)
        except Exception as e:
            err = exc.RayTaskError.from_exception(e, f"{spec.class_name}.__init__", actor_id=spec.actor_id.hex())
            try:
                data: Optional[bytes] = serialization.serialize(err).to_bytes()
            except Exception:
                data = None
            cw.post(conn.reply, request_id, m.ActorCreationReply(data, f"{type(e).__name__}: {e}"))
            return
        finally:
            ctx.task = None
        self.instance = instance
        self._start_mode(spec)
        cw.post(conn.reply, request_id, m.ActorCreationReply(None, ""))

    def executor_task_context(self, spec: m.TaskSpec) -> Any:
        return TaskContext(spec, self.gpu_ids)

    def _adopt(self, spec: m.ActorCreationSpec, msg: m.CreateActor) -> None:
        """This worker now hosts the actor: what its runtime context reports."""
        cw = self.cw
        self.class_name = spec.class_name
        self.gpu_ids = list(msg.gpu_ids)
        cw.actor_id = spec.actor_id
        cw.actor_name = spec.name or None
        cw.actor_restarted = msg.incarnation > 0
        cw.actor_resources = dict(spec.running_resources)
        cw.actor_captures_child_tasks = spec.capture_child_tasks
        cw.actor_gpu_ids = list(msg.gpu_ids)
        if spec.job_namespace:
            cw.namespace = spec.job_namespace
        if spec.running_resources.get("GPU"):
            os.environ["CUDA_VISIBLE_DEVICES"] = task_visible_devices(list(msg.gpu_ids), self.executor._base_cuda)
        cw.actor_handle_meta = spec.handle_meta  # the public layer builds the handle (runtime_context)

    def _start_mode(self, spec: m.ActorCreationSpec) -> None:
        meta = spec.handle_meta
        is_async = bool(meta.get("is_async"))
        groups: dict = meta.get("concurrency_groups") or {}
        self.method_groups = {name: e[2] for name, e in (meta.get("methods") or {}).items() if len(e) > 2 and e[2]}
        if is_async:
            self.mode = "async"
            self.loop, self.semaphore = _start_loop("ember-actor-loop", spec.max_concurrency)
            self.group_loops = {g: _start_loop(f"ember-actor-{g}", n) for g, n in groups.items()}
        elif spec.max_concurrency > 1 or groups:
            self.mode = "threads"
            self.pool = concurrent.futures.ThreadPoolExecutor(spec.max_concurrency, thread_name_prefix="ember-actor")
            self.group_pools = {g: concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix=f"ember-actor-{g}")
                                for g, n in groups.items()}
        else:
            self.mode = "main"

    # --- calls ------------------------------------------------------------------------------------------------
    def _method(self, spec: m.TaskSpec) -> Callable[..., Any]:
        name = spec.function_id.decode()
        if name == "__ray_ready__":
            return lambda: True
        if name == "__ray_terminate__":
            def terminate() -> None:
                raise _ExitRequested()
            return terminate
        return getattr(self.instance, name)

    def _run_sync(self, conn: rpc.Connection, request_id: int, spec: m.TaskSpec) -> None:
        if self.cancelled_calls and spec.task_id in self.cancelled_calls:   # cancelled before it started
            self.cancelled_calls.discard(spec.task_id)
            self.cw.post(conn.reply, request_id, self.executor.cancelled_reply(spec))
            return
        self.cw.task_events.record(spec.task_id, 0, ts.RUNNING, self._running_fields())
        ctx = self.cw.context
        ctx.task = self.executor_task_context(spec)
        try:
            fn = self._method(spec)
            args, kwargs = self.executor.resolve_args(spec)
            result = fn(*args, **kwargs)
            if spec.num_returns < 0:   # a generator method: values stream to the caller as they are yielded
                done = generators.stream_items(self.executor, spec, result)
            else:
                done = m.TaskDone(self.executor.store_returns(spec, result), None, False)
        except (_ExitRequested, SystemExit, exc.AsyncioActorExit):
            self._exit(conn, request_id, spec)
            return
        except Exception as e:
            done = self.executor.error_reply(spec, e)
        finally:
            ctx.task = None
        self.cw.post(conn.reply, request_id, done)

    def _running_fields(self) -> dict:
        fields = self.executor.running_fields
        if fields.get("actor_id") is None:   # built once: this worker hosts one actor
            cw = self.cw
            fields = self.executor.running_fields = {"worker_id": cw.worker_id, "worker_pid": os.getpid(),
                                                     "node_id": cw.node_id, "job_id": cw.job_id,
                                                     "actor_id": getattr(cw, "actor_id", None)}
        return fields

    def _start_async(self, loop: asyncio.AbstractEventLoop, item: tuple) -> None:
        task_id = item[2].task_id
        if task_id in self.cancelled_calls:
            self.cancelled_calls.discard(task_id)
            self.cw.post(item[0].reply, item[1], self.executor.cancelled_reply(item[2]))
            return
        task = loop.create_task(self._run_async(*item))
        self.async_calls[task_id] = (loop, task)
        task.add_done_callback(lambda _t: self.async_calls.pop(task_id, None))

    def cancel(self, task_id: bytes) -> None:
        """``ember.cancel`` of a call (I/O thread): an async method's asyncio task is cancelled
        (CancelledError inside it); a call not started yet is answered TaskCancelledError when it
        comes up; a running sync method is not interrupted (as in Ray)."""
        running = self.async_calls.get(task_id)
        if running is not None:
            loop, task = running
            loop.call_soon_threadsafe(task.cancel)
        else:
            self.cancelled_calls.add(task_id)

    async def _run_async(self, conn: rpc.Connection, request_id: int, spec: m.TaskSpec,
                         semaphore: asyncio.Semaphore) -> None:
        async with semaphore:
            self.cw.task_events.record(spec.task_id, 0, ts.RUNNING, self._running_fields())
            try:
                fn = self._method(spec)
                args, kwargs = await self._resolve_args_async(spec)
                result = fn(*args, **kwargs)
                if spec.num_returns < 0:   # a generator method: values stream to the caller as they are yielded
                    done = await generators.stream_items_async(self.executor, spec, result)
                else:
                    if inspect.isawaitable(result):
                        result = await result
                    done = m.TaskDone(self.executor.store_returns(spec, result), None, False)
            except (_ExitRequested, SystemExit, exc.AsyncioActorExit):
                self._exit(conn, request_id, spec)
                return
            except asyncio.CancelledError:   # ember.cancel of this call
                done = self.executor.cancelled_reply(spec)
            except Exception as e:
                done = self.executor.error_reply(spec, e)
        self.cw.post(conn.reply, request_id, done)

    async def _resolve_args_async(self, spec: m.TaskSpec) -> tuple[list, dict]:
        values: list[Any] = [None] * len(spec.args)
        waits: list[tuple[int, asyncio.Future]] = []
        for i, arg in enumerate(spec.args):
            if arg[0] == 0:
                values[i] = serialization.deserialize(arg[1])
            else:
                waits.append((i, self.cw.as_asyncio_future(ObjectRef(arg[1], arg[2]))))
        for i, fut in waits:
            values[i] = await fut
        nk = len(spec.kwarg_names)
        if nk:
            return values[:-nk], dict(zip(spec.kwarg_names, values[-nk:]))
        return values, {}

    def _error_done(self, spec: m.TaskSpec, error: BaseException) -> m.TaskDone:
        return m.TaskDone([], serialization.serialize(error).to_bytes(), False)

    # --- exit --------------------------------------------------------------------------------------------------
    def _exit(self, conn: rpc.Connection, request_id: int, spec: m.TaskSpec) -> None:
        """Tell the control store (so the actor is not restarted), fail this call, end the process."""
        if self.is_exiting:
            return
        self.is_exiting = True
        cw = self.cw
        error = exc.ActorDiedError(actor_id=spec.actor_id, class_name=self.class_name, error_message=_EXITED_MESSAGE)

        async def report_and_reply() -> None:
            try:
                gcs = await cw.gcs_conn()
                await gcs.request(m.ActorExitReport(spec.actor_id, cw.worker_id), timeout_s=CONFIG.connect_timeout_s)
            except Exception as e:  # the worker exits anyway; the actor may then be restarted
                log.warning("could not report exit_actor() to the control store: %s", e)
            conn.reply(request_id, self._error_done(spec, error))
            await asyncio.sleep(0.05)  # let the reply leave

        try:
            cw.run_sync(report_and_reply(), timeout_s=CONFIG.connect_timeout_s * 2)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
