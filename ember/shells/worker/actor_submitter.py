"""The caller's side of actors: registration, per-actor call queues, direct pushes.

Runs on the core worker's I/O thread (user threads only append and post).  Each actor
this process calls has one ``_ActorClient``: its latest ``ActorInfo`` (learned from the
control store once, then from its publications), a connection to the actor's worker
while it is ALIVE, the calls held while it is PENDING/RESTARTING, and the calls in flight.

Rule 1: a call gets its sequence number when it is sent; every push carries the lowest
sequence number this caller still waits for, so the executor can start (or skip ahead)
there.  Calls of one caller therefore run in submission order.
Rule 2: when the control store reports a newer incarnation (or DEAD), every call sent to
an older one is lost: retried (up to ``max_task_retries``, -1 forever) on the new
incarnation with fresh sequence numbers, or failed with ActorDiedError carrying the cause.
Rule 3: a non-detached, unnamed actor is released (killed) when its owner drops the last
handle, no copy of a handle was ever serialized, and no call is pending.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from typing import Any, Optional

from ember.logic import task_states as ts
from ember import exceptions as exc
from ember.config import CONFIG
from ember.logic.owner import generators
from ember.object_ref import ObjectRef
from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.shared import serialization
from ember.protocol.actor_spec import encode_creation_spec
from ember.shells.worker.task_submitter import encode_args, error_fields

log = logging.getLogger("ember.actor_submitter")

_POLL_FIRST_S = 0.05
_POLL_MAX_S = 1.0
_DEATH_GRACE_S = 2.0  # how long calls in flight to an exited actor wait for replies still on its socket
_SAME_INCARNATION_POLLS_MAX = 20  # connection lost but still ALIVE: then give up on in-flight calls


class _Call:
    __slots__ = ("task_id", "name", "method", "args", "kwarg_names", "num_returns", "return_ids",
                 "retries_left", "arg_refs", "seq", "incarnation", "worker_address", "concurrency_group")

    def __init__(self, task_id: bytes, name: str, method: str, args: list, kwarg_names: list, num_returns: int,
                 retries_left: int, arg_refs: list) -> None:
        self.task_id = task_id
        self.name = name
        self.method = method
        self.args = args
        self.kwarg_names = kwarg_names
        self.num_returns = num_returns
        n = 1 if num_returns == generators.DYNAMIC else num_returns   # generator items arrive as yielded
        self.return_ids = [task_id + i.to_bytes(4, "little") for i in range(1, n + 1)]
        self.retries_left = retries_left
        self.arg_refs: Optional[list] = arg_refs
        self.seq = -1
        self.incarnation = -1
        self.worker_address = ""
        self.concurrency_group = ""


class _Registration:
    __slots__ = ("msg", "keep", "is_releasable", "done")

    def __init__(self, msg: m.RegisterActor, keep: list, is_releasable: bool) -> None:
        self.msg = msg
        self.keep = keep
        self.is_releasable = is_releasable
        self.done: concurrent.futures.Future = concurrent.futures.Future()  # the control store answered


class _ActorClient:
    __slots__ = ("actor_id", "meta", "version", "state", "address", "incarnation", "conn", "queue", "in_flight",
                 "dead_error", "next_seq", "is_suspect", "is_polling", "is_owned", "is_releasable",
                 "creation_refs", "message", "same_incarnation_polls", "is_fetch_failure_reported", "death_pending")

    def __init__(self, actor_id: bytes, meta: dict) -> None:
        self.actor_id = actor_id
        self.meta = meta
        self.version = 0
        self.state = "UNKNOWN"
        self.address = ""
        self.incarnation = 0
        self.conn: Optional[rpc.Connection] = None
        self.queue: collections.deque[_Call] = collections.deque()
        self.in_flight: dict[int, _Call] = {}       # seq -> call, in sending order
        self.dead_error: Optional[BaseException] = None
        self.next_seq = 0
        self.is_suspect = False                      # the connection broke; waiting for news
        self.is_polling = False
        self.is_owned = False                        # this process created it
        self.is_releasable = False                   # owned, unnamed, not detached
        self.creation_refs: Optional[list] = None    # keeps __init__'s argument objects alive
        self.message = ""
        self.same_incarnation_polls = 0
        self.is_fetch_failure_reported = False
        self.death_pending: Optional[m.ActorInfo] = None  # DEAD, applied once the connection closes


class ActorSubmitter:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.clients: dict[bytes, _ActorClient] = {}
        self._incoming: collections.deque[tuple[bytes, dict, Any]] = collections.deque()  # _Call | _Registration
        self._registrations: dict[bytes, _Registration] = {}  # anonymous actors registering in the background
        self._drain_scheduled = False
        self._lock = threading.Lock()
        self._handle_counts: dict[bytes, int] = {}
        self._escaped: set[bytes] = set()
        self._pending_counts: dict[bytes, int] = {}
        cw.connection_lost_hooks.append(self._on_connection_lost)
        cw.published_hooks["actors"] = self._on_published
        cw.head.reconnected_hooks.append(self._resubscribe)
        cw.head.lost_hooks.append(self._head_lost)

    # --- handles (any thread) -----------------------------------------------------------------
    def handle_created(self, actor_id: bytes) -> None:
        with self._lock:
            self._handle_counts[actor_id] = self._handle_counts.get(actor_id, 0) + 1

    def handle_dropped(self, actor_id: bytes) -> None:
        with self._lock:
            n = self._handle_counts.get(actor_id, 0) - 1
            if n > 0:
                self._handle_counts[actor_id] = n
                return
            self._handle_counts.pop(actor_id, None)
        if not self.cw.is_shutdown:
            self.cw.post(self._maybe_release, actor_id)

    def handle_escaped(self, actor_id: bytes) -> None:
        """A handle is being serialized: the actor can no longer be released by scope, and
        whoever receives the handle must find it registered."""
        with self._lock:
            self._escaped.add(actor_id)
            reg = self._registrations.get(actor_id)
        if reg is not None and threading.current_thread() is not self.cw._thread:
            try:
                reg.done.result(timeout=CONFIG.connect_timeout_s * 3)
            except Exception:
                pass

    # --- creation (user thread) -------------------------------------------------------------------
    def create_actor(self, *, class_name: str, class_blob: bytes, args: tuple, kwargs: dict, handle_meta: dict,
                     name: str, namespace: Optional[str], is_detached: bool, get_if_exists: bool,
                     placement_resources: dict, running_resources: dict, strategy: list, max_restarts: int,
                     max_concurrency: int) -> tuple[bytes, dict]:
        """Register a new actor; (actor id, handle meta) — another actor's with get_if_exists.

        The caller's handle is counted here, before the registration can finish: build it
        with ``ActorHandle(..., is_counted=True)``."""
        cw = self.cw
        wire, kwarg_names, keep = encode_args(cw, args, kwargs)
        actor_id = cw.new_id()
        job_namespace = cw.get_namespace()
        actor_namespace = namespace if namespace is not None else job_namespace
        spec = m.ActorCreationSpec(actor_id, cw.job_id, job_namespace, class_name, class_blob, wire, kwarg_names,
                                   cw.address, cw.node_address, running_resources, max_concurrency, handle_meta,
                                   name, actor_namespace if name else "",
                                   strategy[0] == "PLACEMENT_GROUP" and bool(strategy[3]))
        msg = m.RegisterActor(actor_id, cw.job_id, cw.address, cw.worker_id, class_name, encode_creation_spec(spec),
                              name, actor_namespace if name else "", is_detached, running_resources,
                              placement_resources, strategy, max_restarts, get_if_exists)
        reg = _Registration(msg, keep, not name and not is_detached)
        if not name:  # in the background, in order with the calls that follow
            with self._lock:
                self._registrations[actor_id] = reg
                self._handle_counts[actor_id] = self._handle_counts.get(actor_id, 0) + 1
            self._post_incoming(actor_id, handle_meta, reg)
            return actor_id, handle_meta
        reply = cw.run_sync(self._register(reg, handle_meta))
        self.handle_created(reply.actor_id)
        return reply.actor_id, (reply.handle_meta or handle_meta)

    def _new_owned_client(self, reg: _Registration, meta: dict) -> _ActorClient:
        client = _ActorClient(reg.msg.actor_id, meta)
        client.state = "PENDING_CREATION"
        client.is_owned = True
        client.is_releasable = reg.is_releasable
        client.creation_refs = reg.keep
        self.clients[reg.msg.actor_id] = client
        return client

    async def _register_in_background(self, client: _ActorClient, reg: _Registration) -> None:
        msg = reg.msg
        try:
            await (await self.cw.gcs_conn()).request(msg)
        except (rpc.RpcError, OSError, rpc.ConnectionLost, TimeoutError) as e:
            text = e.message if isinstance(e, rpc.RpcError) else str(e)
            self._set_dead(client, exc.ActorDiedError(actor_id=client.actor_id, class_name=msg.class_name,
                                                      error_message=f"Registering the actor failed: {text}"))
        finally:
            with self._lock:
                self._registrations.pop(msg.actor_id, None)
            reg.done.set_result(None)
        self._maybe_release(msg.actor_id)

    async def _register(self, reg: _Registration, meta: dict) -> m.ActorRegistration:
        msg = reg.msg
        client = self._new_owned_client(reg, meta)
        try:
            reply = await (await self.cw.gcs_conn()).request(msg)
        except rpc.RpcError as e:
            self.clients.pop(msg.actor_id, None)
            raise ValueError(e.message) from None
        if reply.is_existing:
            self.clients.pop(msg.actor_id, None)
            self._client(reply.actor_id, reply.handle_meta)
        return reply

    # --- lookups and kill (user thread) -------------------------------------------------------------------
    def _gcs_request(self, msg: Any) -> Any:
        async def _ask() -> Any:
            return await self.cw.head.request(msg)  # sent again if the head fails over under it
        try:  # during a control store outage this waits up to gcs_reconnect_timeout_s
            return self.cw.run_sync(_ask(), timeout_s=CONFIG.connect_timeout_s * 3 + CONFIG.gcs_reconnect_timeout_s)
        except rpc.RpcError as e:
            if e.kind == "ValueError":
                raise ValueError(e.message) from None
            raise exc.RaySystemError(f"{type(msg).__name__} failed: {e.message}") from None

    def get_named(self, name: str, namespace: str) -> tuple[bytes, dict]:
        reply = self._gcs_request(m.GetNamedActor(name, namespace))
        return reply.actor_id, reply.handle_meta

    def list_named(self, namespace: str, all_namespaces: bool) -> list[tuple[str, str]]:
        return [(ns, name) for ns, name in self._gcs_request(m.ListNamedActors(namespace, all_namespaces)).actors]

    def kill(self, actor_id: bytes, no_restart: bool) -> None:
        self._gcs_request(m.KillActor(actor_id, no_restart))

    # --- calls (user thread) ---------------------------------------------------------------------------------
    def submit_call(self, actor_id: bytes, meta: dict, *, method_name: str, task_name: str, args: tuple, kwargs: dict,
                    num_returns: int, max_task_retries: int, concurrency_group: str = "") -> list[ObjectRef]:
        cw = self.cw
        limit = int(meta.get("max_pending_calls", -1))
        with self._lock:
            pending = self._pending_counts.get(actor_id, 0)
            if 0 <= limit <= pending:
                raise exc.PendingCallsLimitExceeded(
                    f"The task {task_name} could not be submitted to actor {actor_id.hex()} because more than "
                    f"{limit} tasks are queued on the actor. This limit can be adjusted with the "
                    f"`max_pending_calls` actor option.")
            self._pending_counts[actor_id] = pending + 1
        try:
            wire, kwarg_names, keep = encode_args(cw, args, kwargs)
        except BaseException:
            self._call_finished(actor_id)
            raise
        call = _Call(cw.new_id(), task_name, method_name, wire, kwarg_names, num_returns, max_task_retries, keep)
        call.concurrency_group = concurrency_group
        cw.task_events.record(call.task_id, 0, ts.PENDING_NODE_ASSIGNMENT,
                              {"name": task_name, "func_or_class_name": task_name, "type": "ACTOR_TASK",
                               "actor_id": actor_id})
        refs = []
        for oid in call.return_ids:
            cw.store.add_pending(oid, is_owned=True)
            refs.append(ObjectRef(oid, cw.address))
        if num_returns == generators.DYNAMIC:
            cw.generators.register(call.task_id, num_returns)
        elif num_returns < 0:
            refs.append(cw.new_generator(call.task_id, num_returns))
        self._post_incoming(actor_id, meta, call)
        return refs

    def _post_incoming(self, actor_id: bytes, meta: dict, item: Any) -> None:
        self._incoming.append((actor_id, meta, item))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.cw.post(self._drain_incoming)

    def _call_finished(self, actor_id: bytes) -> None:
        with self._lock:
            n = self._pending_counts.get(actor_id, 0) - 1
            if n > 0:
                self._pending_counts[actor_id] = n
            else:
                self._pending_counts.pop(actor_id, None)

    # --- I/O thread: queues and pushes -------------------------------------------------------------------------
    def cancel(self, task_id: bytes) -> bool:
        """``ember.cancel`` of an actor call (I/O thread): a call still queued here fails with
        TaskCancelledError; one already sent is cancelled by the actor's worker (async methods are
        interrupted, calls not started are dropped).  False when no such call is pending."""
        for client in self.clients.values():
            for call in client.queue:
                if call.task_id == task_id:
                    client.queue.remove(call)
                    self._fail(client, call, exc.TaskCancelledError(task_id.hex()))
                    return True
            for call in client.in_flight.values():
                if call.task_id == task_id:
                    conn = client.conn
                    if conn is not None and not conn.closed:
                        conn.request_future(m.CancelTask(task_id, False)).add_done_callback(lambda f: f.exception())
                    return True
        return False

    def _client(self, actor_id: bytes, meta: dict) -> _ActorClient:
        client = self.clients.get(actor_id)
        if client is None:
            client = self.clients[actor_id] = _ActorClient(actor_id, meta)
            self.cw.spawn(self._fetch_info(client, subscribe=True))
        return client

    def _drain_incoming(self) -> None:
        self._drain_scheduled = False
        touched: dict[bytes, _ActorClient] = {}
        while self._incoming:
            actor_id, meta, call = self._incoming.popleft()
            if isinstance(call, _Registration):
                client = self._new_owned_client(call, meta)
                self.cw.spawn(self._register_in_background(client, call))
                continue
            client = self._client(actor_id, meta)
            if client.dead_error is not None:
                self._fail(client, call, client.dead_error)
                continue
            client.queue.append(call)
            touched[actor_id] = client
        for client in touched.values():
            self._pump(client)

    def _pump(self, client: _ActorClient) -> None:
        conn = client.conn
        if client.state != "ALIVE" or conn is None or conn.closed or client.is_suspect:
            return
        while client.queue:
            self._send(client, conn, client.queue.popleft())

    def _send(self, client: _ActorClient, conn: rpc.Connection, call: _Call) -> None:
        call.seq = client.next_seq
        client.next_seq += 1
        call.incarnation = client.incarnation
        call.worker_address = client.address
        client.in_flight[call.seq] = call
        min_seq = next(iter(client.in_flight))
        spec = m.TaskSpec(call.task_id, self.cw.job_id, call.method.encode(), None, call.name, call.args,
                          call.kwarg_names, call.num_returns, self.cw.address, 0, False, 0, {}, [],
                          client.actor_id, call.seq, None)
        try:
            fut = conn.request_future(m.PushActorTask(spec, min_seq, call.concurrency_group))
        except rpc.ConnectionLost:
            self._connection_broke(client)
            return
        fut.add_done_callback(lambda f: self._replied(client, call, f))

    def _replied(self, client: _ActorClient, call: _Call, fut: asyncio.Future) -> None:
        if client.in_flight.get(call.seq) is not call:
            if not fut.cancelled():
                fut.exception()  # already retried or failed: a late answer
            return
        err = fut.exception()
        if err is not None:
            if isinstance(err, (rpc.ConnectionLost, OSError)):
                self._connection_broke(client)
                return
            del client.in_flight[call.seq]
            self._fail(client, call, exc.RaySystemError(f"calling {call.name} failed: {err}"))
            return
        del client.in_flight[call.seq]
        done: m.TaskDone = fut.result()
        if done.error is not None:
            self._fail(client, call, serialization.deserialize(done.error))
        else:
            self._complete(client, call, done.returns)
        if client.death_pending is not None and not client.in_flight:
            self._apply_pending_death(client)

    def _complete(self, client: _ActorClient, call: _Call, returns: list) -> None:
        if call.num_returns < 0:
            returns = self.cw.generator_task_done(call.task_id, call.num_returns, None)
        store = self.cw.store
        has_refs = False
        for ret in returns:
            if not store.complete(ret.object_id, data=ret.data, node_id=ret.node_id,
                                  node_address=ret.node_address, size=ret.size_bytes):
                if ret.node_address:
                    self.cw._send_free(ret.node_address, ret.object_id)
            if ret.contained_refs:
                has_refs = True
        if has_refs:  # count the refs inside the values, then let the actor drop its holds
            self.cw.refs.returns_arrived(call.worker_address, call.task_id, returns)
        self.cw.task_events.record(call.task_id, 0, ts.FINISHED)
        self._finish(client, call)

    def _fail(self, client: _ActorClient, call: _Call, error: BaseException) -> None:
        if call.num_returns < 0:
            self.cw.generator_task_done(call.task_id, call.num_returns, error)
        for oid in call.return_ids:
            self.cw.store.complete(oid, error=error)
        self.cw.task_events.record(call.task_id, 0, ts.FAILED, error_fields(error))
        self._finish(client, call)

    def _finish(self, client: _ActorClient, call: _Call) -> None:
        call.arg_refs = None
        self._call_finished(client.actor_id)
        if not client.queue and not client.in_flight:
            self._maybe_release(client.actor_id)

    # --- I/O thread: what the control store says ------------------------------------------------------------------
    def _on_published(self, msg: m.Published) -> None:
        info = msg.data
        if isinstance(info, m.ActorInfo):
            client = self.clients.get(info.actor_id)
            if client is not None:
                self._apply(client, info)

    async def _fetch_info(self, client: _ActorClient, subscribe: bool) -> None:
        try:
            info = await (await self.cw.gcs_conn()).request(m.GetActorInfo(client.actor_id, subscribe))
        except (rpc.RpcError, OSError, rpc.ConnectionLost, TimeoutError) as e:
            if self.cw.is_shutdown or client.dead_error is not None:
                return
            if self.cw.head.lost_error is not None:
                self._set_dead(client, self._head_lost_error(client, e))
                return
            if not client.is_fetch_failure_reported and not self.cw.head.is_out:  # head_link reports outages
                client.is_fetch_failure_reported = True
                log.warning("asking the control store about actor %s failed: %s; retrying",
                            client.actor_id.hex()[:12], e)
            await asyncio.sleep(_POLL_MAX_S)
            self.cw.spawn(self._fetch_info(client, subscribe))
            return
        self._apply(client, info)

    def _apply(self, client: _ActorClient, info: m.ActorInfo) -> None:
        if info.version <= client.version or client.dead_error is not None:
            return
        client.version = info.version
        if info.message:
            client.message = info.message
        if self._defer_death(client, info):
            return
        if info.state == "DEAD" or info.incarnation > client.incarnation:
            self._lose_in_flight(client, info)
        client.state, client.incarnation = info.state, info.incarnation
        if info.state == "DEAD":
            self._set_dead(client, self._death_error(client, info))
            return
        if info.state != "ALIVE":
            client.conn, client.address = None, ""
            return
        if info.address != client.address or client.conn is None or client.conn.closed:
            client.address, client.conn, client.is_suspect = info.address, None, False
            client.same_incarnation_polls = 0
            self.cw.spawn(self._connect(client, info.address))
        elif client.is_suspect:
            self._still_alive_after_break(client)

    def _defer_death(self, client: _ActorClient, info: m.ActorInfo) -> bool:
        """An actor that exited (exit_actor, __ray_terminate__) replied to earlier calls before it
        reported its exit, but those replies travel on the actor's socket and this news on the
        control store's: they can arrive in either order.  While that socket is open, the calls in
        flight wait for their replies; the death applies when it closes (or after a grace period)."""
        conn = client.conn
        if info.state != "DEAD" or not client.in_flight or conn is None or conn.closed \
                or info.incarnation != client.incarnation:
            return False
        client.death_pending, client.state = info, "DEAD"  # DEAD: nothing more is sent
        self.cw.loop.call_later(_DEATH_GRACE_S, self._apply_pending_death, client)
        return True

    def _apply_pending_death(self, client: _ActorClient) -> None:
        info, client.death_pending = client.death_pending, None
        if info is None or client.dead_error is not None:
            return
        self._lose_in_flight(client, info)
        self._set_dead(client, self._death_error(client, info))

    def _still_alive_after_break(self, client: _ActorClient) -> None:
        client.same_incarnation_polls += 1
        if client.same_incarnation_polls < _SAME_INCARNATION_POLLS_MAX:
            return
        # Only the connection broke: what was in flight is lost, the actor itself is fine.
        error = exc.ActorUnavailableError("the connection to the actor's worker was lost", client.actor_id)
        for call in list(client.in_flight.values()):
            self._fail(client, call, error)
        client.in_flight.clear()
        client.is_suspect, client.conn, client.same_incarnation_polls = False, None, 0
        self.cw.spawn(self._connect(client, client.address))

    async def _connect(self, client: _ActorClient, address: str) -> None:
        try:
            conn = await self.cw.peers.get(address)
        except (OSError, rpc.ConnectionLost, TimeoutError):
            if client.address == address:
                self._connection_broke(client)
            return
        if client.address == address and client.state == "ALIVE" and client.dead_error is None:
            client.conn = conn
            self._pump(client)

    def _connection_broke(self, client: _ActorClient) -> None:
        if client.dead_error is not None:
            return
        if client.death_pending is not None:
            self._apply_pending_death(client)
            return
        client.is_suspect = True
        if not client.is_polling:
            client.is_polling = True
            self.cw.spawn(self._poll(client))

    async def _poll(self, client: _ActorClient) -> None:
        delay_s = _POLL_FIRST_S
        try:
            while client.is_suspect and client.dead_error is None and not self.cw.is_shutdown:
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _POLL_MAX_S)
                try:
                    info = await (await self.cw.gcs_conn()).request(m.GetActorInfo(client.actor_id, False))
                except (rpc.RpcError, OSError, rpc.ConnectionLost, TimeoutError) as e:
                    if self.cw.head.lost_error is not None:
                        self._set_dead(client, self._head_lost_error(client, e))
                    continue
                if info.version <= client.version and client.is_suspect and client.state == "ALIVE":
                    self._still_alive_after_break(client)
                self._apply(client, info)
        finally:
            client.is_polling = False

    # --- I/O thread: the control store lost and found (head_link.py) -------------------------------------------
    def _head_lost_error(self, client: _ActorClient, cause: BaseException) -> BaseException:
        return exc.ActorUnavailableError(f"its state cannot be learned: {str(cause).rstrip('.')}", client.actor_id)

    def _head_lost(self, error: BaseException) -> None:
        """The head is gone for good: actors whose address is not known (never learned, or
        lost with a broken connection) can never be reached again."""
        for client in list(self.clients.values()):
            if client.dead_error is None and (client.state != "ALIVE" or client.is_suspect or client.conn is None):
                self._set_dead(client, self._head_lost_error(client, error))

    async def _resubscribe(self, conn: rpc.Connection) -> None:
        """The control store is back at the same address: subscribe again to the actors this
        process follows, and catch up on what changed meanwhile."""
        for client in list(self.clients.values()):
            if client.dead_error is not None:
                continue
            try:
                info = await conn.request(m.GetActorInfo(client.actor_id, True))
            except rpc.RpcError as e:  # e.g. a head restarted without its tables
                log.warning("actor %s is unknown to the control store after reconnecting: %s",
                            client.actor_id.hex()[:12], e.message)
                continue
            self._apply(client, info)

    def _on_connection_lost(self, conn: rpc.Connection) -> None:
        for client in self.clients.values():
            if client.conn is conn:
                client.conn = None
                self._connection_broke(client)

    def _lose_in_flight(self, client: _ActorClient, info: m.ActorInfo) -> None:
        """Calls sent to an incarnation that ended: retry them in order or fail them."""
        lost = list(client.in_flight.values())
        client.in_flight.clear()
        client.conn, client.is_suspect = None, False
        retry = [c for c in lost if info.state != "DEAD" and c.retries_left != 0]
        for call in retry:
            if call.retries_left > 0:
                call.retries_left -= 1
        client.queue.extendleft(reversed(retry))
        for call in lost:
            if call not in retry:
                self._fail(client, call, self._death_error(client, info))

    def _death_error(self, client: _ActorClient, info: m.ActorInfo) -> BaseException:
        class_name = client.meta.get("class_name")
        if info.death_kind == "UNSCHEDULABLE":
            return exc.ActorUnschedulableError(info.message)
        if info.error is not None:
            cause = serialization.deserialize(info.error)
            if isinstance(cause, exc.RayTaskError):
                return exc.ActorDiedError(cause)
            if isinstance(cause, exc.RuntimeEnvSetupError):
                return cause
        return exc.ActorDiedError(actor_id=client.actor_id, class_name=class_name,
                                  error_message=info.message or client.message or None)

    def _set_dead(self, client: _ActorClient, error: BaseException) -> None:
        client.state, client.dead_error = "DEAD", error
        client.conn, client.is_suspect = None, False
        for call in list(client.in_flight.values()):
            self._fail(client, call, error)
        client.in_flight.clear()
        while client.queue:
            self._fail(client, client.queue.popleft(), error)
        client.creation_refs = None

    # --- I/O thread: out of scope ----------------------------------------------------------------------------
    def _maybe_release(self, actor_id: bytes) -> None:
        with self._lock:
            if self._handle_counts.get(actor_id, 0) > 0:
                return
            escaped = actor_id in self._escaped
            if actor_id in self._registrations:
                return  # released once the control store has the registration
        client = self.clients.get(actor_id)
        if client is None or client.queue or client.in_flight:
            return
        del self.clients[actor_id]
        if client.is_owned and client.is_releasable and not escaped and client.dead_error is None:
            gcs = self.cw.gcs
            if gcs is not None and not gcs.closed:
                gcs.send(m.ActorHandlesReleased(actor_id))
