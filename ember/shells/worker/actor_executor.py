"""The actor's side of actors: build the instance, then run method calls in order.

``CreateActor`` (from the control store) runs ``__init__`` on the worker's main thread
and answers once it returned or raised.  ``PushActorTask`` (from callers) passes through
``CallOrder``, which releases each caller's calls in sequence order, and then runs:

- a sync actor with ``max_concurrency == 1``: on the main thread, one at a time;
- a threaded actor (``max_concurrency > 1``): in a pool of that many threads;
- an async actor (any ``async def`` method): as tasks on one event loop in its own
  thread, at most ``max_concurrency`` (default 1000) at once; its sync methods run on
  that loop's thread too.

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

from ember import exceptions as exc
from ember.config import CONFIG
from ember.object_ref import ObjectRef
from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.shared import serialization
from ember.protocol.actor_spec import decode_creation_spec
from ember.shells.worker.task_context import TaskContext

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
        self.gpu_ids: list = []
        self.is_exiting = False
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
                                       (conn, request_id, spec)):
            self._dispatch(item)

    def _dispatch(self, item: tuple) -> None:
        if self.mode == "async":
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._start_async, item)
        elif self.mode == "threads":
            assert self.pool is not None
            self.pool.submit(self._run_sync, *item)
        else:
            self.executor.queue.put(lambda: self._run_sync(*item))

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
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in msg.gpu_ids)
        cw.actor_handle_meta = spec.handle_meta  # the public layer builds the handle (runtime_context)

    def _start_mode(self, spec: m.ActorCreationSpec) -> None:
        is_async = bool(spec.handle_meta.get("is_async"))
        if is_async:
            self.mode = "async"
            ready = threading.Event()
            threading.Thread(target=self._run_loop, args=(spec.max_concurrency, ready), name="ember-actor-loop",
                             daemon=True).start()
            ready.wait()
        elif spec.max_concurrency > 1:
            self.mode = "threads"
            self.pool = concurrent.futures.ThreadPoolExecutor(spec.max_concurrency, thread_name_prefix="ember-actor")
        else:
            self.mode = "main"

    def _run_loop(self, max_concurrency: int, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.semaphore = asyncio.Semaphore(max_concurrency)
        ready.set()
        loop.run_forever()

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
        ctx = self.cw.context
        ctx.task = self.executor_task_context(spec)
        try:
            fn = self._method(spec)
            args, kwargs = self.executor.resolve_args(spec)
            done = m.TaskDone(self.executor.store_returns(spec, fn(*args, **kwargs)), None, False)
        except (_ExitRequested, SystemExit, exc.AsyncioActorExit):
            self._exit(conn, request_id, spec)
            return
        except Exception as e:
            done = self.executor.error_reply(spec, e)
        finally:
            ctx.task = None
        self.cw.post(conn.reply, request_id, done)

    def _start_async(self, item: tuple) -> None:
        assert self.loop is not None
        self.loop.create_task(self._run_async(*item))

    async def _run_async(self, conn: rpc.Connection, request_id: int, spec: m.TaskSpec) -> None:
        assert self.semaphore is not None
        async with self.semaphore:
            try:
                fn = self._method(spec)
                args, kwargs = await self._resolve_args_async(spec)
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                done = m.TaskDone(self.executor.store_returns(spec, result), None, False)
            except (_ExitRequested, SystemExit, exc.AsyncioActorExit):
                self._exit(conn, request_id, spec)
                return
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
