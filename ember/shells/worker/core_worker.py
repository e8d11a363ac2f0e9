"""The core worker: the runtime inside every driver and worker process.

An asyncio loop on a background thread ("ember-io") does all I/O; user threads call
the sync bridge (get/put/wait/submit).  The process owns the objects it creates and
the tasks it submits (see DESIGN.md "Task" and "Object").
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import mmap
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, Optional

from ember import exceptions as exc
from ember.config import CONFIG
from ember.object_ref import ObjectRef, set_future_source, set_ref_hook
from ember.protocol import codec
from ember.protocol import messages as m
from ember.shells.wire import addresses
from ember.shells.wire import rpc
from ember.shells.shared import serialization
from ember.shells.worker.memory_store import FAILED, PENDING, READY, Entry, MemoryStore
from ember.shells.shared.shm_store import ShmStore, map_spill_file
from ember.shells.worker.store_writer import store_full_error as _store_full_error
from ember.shells.worker.store_writer import write_object
from ember.shells.worker.recovery import RECOVERIES_PER_GET_MAX

log = logging.getLogger("ember.core_worker")

_core_worker: Optional["CoreWorker"] = None


try:  # imported here, not on first use: forked workers then share it with the zygote
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


def _new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


_MAP_TRIES_MAX = 3


def get_core_worker() -> "CoreWorker":
    cw = _core_worker
    if cw is None:
        raise exc.RaySystemError("ember.init() has not been called in this process")
    return cw


def set_core_worker(cw: Optional["CoreWorker"]) -> None:
    global _core_worker
    _core_worker = cw
    set_future_source(cw)


class CoreWorker:
    def __init__(self, *, mode: str, token: bytes, node_address: str, gcs_address: str,
                 worker_id: bytes, job_id: bytes = b"", namespace: str = "", host: str = "127.0.0.1",
                 log_to_driver: bool = True, client_server_address: str = "") -> None:
        self.mode = mode                      # "driver" or "worker"
        self.token = token
        self.node_address = node_address
        self.gcs_address = gcs_address
        self.worker_id = worker_id
        self.job_id = job_id
        self.namespace = namespace
        self.host = host
        self.log_to_driver = log_to_driver
        self.client_server_address = client_server_address  # ember:// client: no node of its own
        self.tunnel: Any = None                               # (shells/worker/remote_client.py)
        self.address = ""
        self.node_id = b""
        self.session_dir = ""
        self.node_resources: dict = {}
        self.store = MemoryStore()
        self.shm: Optional[ShmStore] = None
        # Store mappings in use: an entry lives as long as some value read from it (zero copy).
        self._mapped: weakref.WeakValueDictionary[bytes, mmap.mmap] = weakref.WeakValueDictionary()
        self._is_prune_scheduled = False  # the timer dropping kept write mappings of deleted files
        self._id_prefix = os.urandom(8)
        self._id_counter = 0
        self._id_lock = threading.Lock()
        self.loop = _new_loop()
        self._thread: Optional[threading.Thread] = None
        self.raylet: Optional[rpc.Connection] = None
        self.gcs: Optional[rpc.Connection] = None
        self.peers = rpc.Peers(token, self, mode)
        self.handlers: dict[type, Callable[[rpc.Connection, int, Any], None]] = {}
        self.connection_lost_hooks: list[Callable[[rpc.Connection], None]] = []
        self._server: Optional[asyncio.AbstractServer] = None
        self.is_shutdown = False
        self.context = threading.local()  # current task per executing thread
        self._tasks: set[asyncio.Task] = set()  # every task spawned on the I/O loop, cancelled at shutdown
        from ember.shells.worker.head_link import HeadLink
        self.head = HeadLink(self)
        from ember.shells.worker.recovery import ObjectRecovery
        self.recovery = ObjectRecovery(self)   # lineage: lost objects rebuilt (recovery.py)
        from ember.shells.worker.ref_counting import RefCounting
        self.refs = RefCounting(self)
        from ember.shells.worker.task_submitter import TaskSubmitter
        self.submitter = TaskSubmitter(self)
        from ember.shells.worker.generators import GeneratorManager
        self.generators = GeneratorManager(self)
        from ember.shells.worker.task_events import TaskEvents
        self.task_events = TaskEvents(self)
        self.handlers[m.GetObjectStatus] = self._on_get_object_status
        self.handlers[m.Published] = self._on_published
        self.handlers[m.ListProcessObjects] = self._on_list_process_objects
        # EMBER_RECORD_REF_CREATION_SITES=1 (Ray: RAY_record_ref_creation_sites): object id -> call site
        self.call_sites: Optional[dict[bytes, str]] = (
            {} if os.environ.get("EMBER_RECORD_REF_CREATION_SITES") == "1" else None)
        self.published_hooks: dict[str, Callable[[m.Published], None]] = {}  # channel -> handler
        from ember.shells.worker.actor_submitter import ActorSubmitter
        self.actor_submitter = ActorSubmitter(self)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_loop, name="ember-io", daemon=True)
        self._thread.start()
        self.run_sync(self._connect(), timeout_s=CONFIG.connect_timeout_s * 3)
        set_ref_hook(self.refs.hook)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _connect(self) -> None:
        if self.client_server_address:
            from ember.shells.worker import remote_client
            await remote_client.connect(self, self.client_server_address)
        else:
            self._server = await rpc.serve(self, self.host, 0, self.token)
            self.address = f"{addresses.advertised_host(self.host)}:{self._server.sockets[0].getsockname()[1]}"
        if self.mode == "driver":
            from ember.shells.wire.leader import wait_leader  # several head addresses: the leader's
            self.gcs, self.head.leader_address = await wait_leader(
                self.gcs_address, self.token, self, "driver", CONFIG.connect_timeout_s, known=self.head.known_heads)
            reg = await self.gcs.request(m.RegisterJob(self.address, os.getpid(), self.namespace, b"",
                                                       " ".join(sys.argv)[:200]))
            self.job_id = reg.job_id
            if self.log_to_driver:
                await self.gcs.request(m.Subscribe("logs", self.job_id))
            self.head.reconnected_hooks.append(self.head.rejoin_job)
            await self.recovery.follow_node_deaths(self.gcs)   # in-flight tasks on dead nodes are retried
            self.head.reconnected_hooks.append(self.recovery.follow_node_deaths)
            self.head.start_watch()  # follows the leading head when the current one goes silent
            if not self.node_address:
                self.node_address = await self._pick_local_node()
        self.raylet = await rpc.connect(self.node_address, self.token, self, self.mode, CONFIG.connect_timeout_s)
        info = await self.raylet.request(m.RegisterWorker(self.worker_id, os.getpid(), self.address, self.job_id,
                                                          self.mode == "driver", CONFIG.driver_prestart_workers != 0))
        self.node_id = info.node_id
        self.session_dir = info.session_dir
        self.node_resources = info.node_resources
        if self.tunnel is None:
            self.shm = ShmStore(info.store_dir)
        self.loop.call_later(0.1, self._drain_ref_ops_periodic)

    async def _pick_local_node(self) -> str:
        """The node daemon a driver joining an existing cluster attaches to: one at the driver's own
        address (the head's first), else the head's if it is on this host, else any live node here."""
        assert self.gcs is not None
        nodes = [n for n in (await self.gcs.request(m.GetNodes())).nodes if n.is_alive]
        from ember.shells.wire.leader import split_addresses
        local_hosts = {"127.0.0.1", "localhost", self.host, *(a.rpartition(":")[0] for a in split_addresses(self.gcs_address))}
        mine = sorted((n for n in nodes if n.address.rpartition(":")[0] == self.host), key=lambda n: not n.is_head)
        for pick in (mine, [n for n in nodes if n.is_head and n.address.rpartition(":")[0] in local_hosts],
                     [n for n in nodes if n.address.rpartition(":")[0] in local_hosts], nodes):
            if pick:
                return pick[0].address
        raise ConnectionError(f"the cluster at {self.gcs_address} has no live node")

    def shutdown(self) -> None:
        if self.is_shutdown:
            return
        self.is_shutdown = True
        set_ref_hook(None)

        async def _close() -> None:
            if self.gcs is not None and not self.gcs.closed:   # the last task events go out first
                try:
                    await asyncio.wait_for(self.task_events.flush(), 1.0)
                except Exception:
                    pass
                if getattr(self, "user_metrics", None) is not None:   # ember.util.metrics
                    self.user_metrics.flush()
            await self._cancel_tasks()
            if self.gcs is not None and not self.gcs.closed and self.mode == "driver":
                try:
                    await self.gcs.request(m.JobFinished(self.job_id), timeout_s=2)
                except Exception:
                    pass
            for conn in (self.gcs, self.raylet):
                if conn is not None:
                    conn.close()
            self.peers.close_all()
            if self._server is not None:
                self._server.close()
            if self.tunnel is not None:
                from ember.shells.worker import remote_client
                remote_client.close(self)

        try:
            self.run_sync(_close(), timeout_s=5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._mapped.clear()
        if self.shm is not None:
            self.shm.write_mappings.clear()

    async def _cancel_tasks(self) -> None:
        """Cancel and reap every task still pending on the I/O loop (those spawned here and
        those of the rpc layer), so none is destroyed pending when the loop stops."""
        me = asyncio.current_task()
        pending = [t for t in {*self._tasks, *asyncio.all_tasks()} if t is not me and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)

    # --- threads ----------------------------------------------------------------------------------
    def spawn(self, coro: Any) -> asyncio.Task:
        """Start a task on the I/O loop (I/O thread only), tracked so that shutdown cancels it."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def run_sync(self, coro: Any, timeout_s: Optional[float] = None) -> Any:
        if threading.current_thread() is self._thread:
            raise RuntimeError("blocking ember call on the I/O thread")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def new_id(self) -> bytes:
        with self._id_lock:
            self._id_counter += 1
            n = self._id_counter
        return self._id_prefix + n.to_bytes(8, "little")

    # --- rpc.Handler --------------------------------------------------------------------------------
    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        handler = self.handlers.get(type(msg))
        if handler is None:
            if kind == codec.KIND_REQUEST:
                conn.reply_error(request_id, "ValueError", f"{self.mode} does not handle {type(msg).__name__}")
            return
        try:
            handler(conn, request_id, msg)
        except Exception as e:
            log.exception("handling %s", type(msg).__name__)
            if kind == codec.KIND_REQUEST:
                conn.reply_error(request_id, type(e).__name__, str(e))

    def connection_lost(self, conn: rpc.Connection) -> None:
        self.peers.forget(conn)
        for hook in self.connection_lost_hooks:
            hook(conn)
        if conn is self.raylet and not self.is_shutdown:
            log.error("lost the connection to the node daemon")
            if self.mode == "worker":
                os._exit(1)
            self._fail_pending(self.raylet_lost_error())

    def raylet_lost_error(self) -> exc.RaySystemError:
        if self.tunnel is not None and self.tunnel.error is not None:
            return self.tunnel.error  # a remote client whose session ended
        why = " after losing the control store (head)" if self.head.is_out else ""
        return exc.LocalRayletDiedError(
            f"the node daemon at {self.node_address} died or closed the connection{why}; "
            f"see its log in {self.session_dir}/logs")

    def _fail_pending(self, error: BaseException) -> None:
        """Fail every object this process is still waiting for (nothing will complete them)."""
        with self.store.lock:
            pending = [oid for oid, e in self.store.entries.items() if e.state == PENDING]
        for oid in pending:
            self.store.complete(oid, error=error)

    def get_namespace(self) -> str:
        """The job's namespace (workers learn it from the control store on first use)."""
        if not self.namespace:
            async def _ask() -> str:
                jobs = await (await self.gcs_conn()).request(m.GetJobs())
                for job_id, namespace, _pid, _alive in jobs.jobs:
                    if job_id == self.job_id:
                        return namespace
                return ""
            self.namespace = self.run_sync(_ask(), timeout_s=CONFIG.connect_timeout_s + CONFIG.gcs_reconnect_timeout_s)
        return self.namespace

    async def gcs_conn(self) -> rpc.Connection:
        """The control store connection; during an outage it waits (bounded), then raises
        HeadUnreachableError (see head_link.py)."""
        return await self.head.conn()

    # --- reference counting (ember/shells/worker/ref_counting.py) ---------------------------------------------
    def _drain_ref_ops_periodic(self) -> None:
        if self.is_shutdown:
            return
        self.refs.drain()
        self.loop.call_later(0.1, self._drain_ref_ops_periodic)

    def _send_free(self, node_address: str, oid: bytes) -> None:
        """Delete an object nobody holds from a node's store (I/O thread)."""
        self.refs.free_on_node(node_address, [oid])

    # --- tasks ---------------------------------------------------------------------------------------
    def submit_task(self, plan: Any, args: tuple, kwargs: dict) -> list[ObjectRef]:
        from ember.shells.worker.task_submitter import submit_task
        refs = submit_task(self, plan, args, kwargs)
        if self.call_sites is not None:
            self._record_call_site(refs, "(task call)")
        return refs

    # --- generator tasks (see shells/worker/generators.py) -------------------------------------------
    def new_generator(self, task_id: bytes, wire_num_returns: int) -> Any:
        from ember.shells.worker.generators import ObjectRefGenerator
        return ObjectRefGenerator(self, task_id, self.generators.register(task_id, wire_num_returns))

    def generator_task_done(self, task_id: bytes, wire_num_returns: int,
                            error: Optional[BaseException]) -> list:
        """A generator task ended (I/O thread); a dynamic one's return value, as ``ReturnObject``s."""
        from ember.logic.owner.generators import DYNAMIC
        from ember.shells.worker.generators import DynamicObjectRefGenerator
        self.generators.finish(task_id, error)
        if wire_num_returns != DYNAMIC:
            return []
        items = self.generators.items_of(task_id)   # ends the stream
        if error is not None:
            return []
        oid = task_id + (1).to_bytes(4, "little")
        ser = serialization.serialize(DynamicObjectRefGenerator(items))
        if ser.contained_refs:
            self.refs.object_contains(oid, ser.contained_refs)
        return [m.ReturnObject(oid, ser.to_bytes(), None, "", ser.total_bytes, None)]

    # --- objects: put ----------------------------------------------------------------------------------
    def put(self, value: Any, *, _owner_address: Optional[str] = None) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really want to do this, "
                            "you can wrap the ObjectRef in a list and call 'put' on it.")
        ser = serialization.serialize(value, what="the value passed to put()")
        oid = self.new_id() + b"\x00\x00\x00\x00"
        ref = ObjectRef(oid, self.address)
        self.store_owned(oid, ser)
        if self.call_sites is not None:
            self._record_call_site([ref], "(put object)")
        return ref

    def store_owned(self, oid: bytes, ser: Any) -> None:
        """Store the value of an owned object whose ObjectRef already exists."""
        if ser.contained_refs:
            self.refs.object_contains(oid, ser.contained_refs)
        size = ser.total_bytes
        if size <= CONFIG.inline_object_max_bytes:
            self.store.put_ready(oid, ser.to_bytes(), size=size)
            return
        self.write_to_shm(oid, ser, self.address)
        self.store.put_ready(oid, None, self.node_id, self.node_address, size)

    def write_to_shm(self, oid: bytes, ser: Any, owner_address: str) -> None:
        if self.shm is None:  # a remote client: into the head node's store, in chunks
            from ember.shells.worker import remote_client
            return remote_client.upload(self, oid, ser, owner_address)
        # A recycled file (pages already in memory) when the node daemon has one that fits;
        # a failed write gives its reservation back (store_writer).
        if not write_object(self, oid, ser, owner_address):
            return  # already in this node's store (a retried task's return): nothing to write
        size = ser.total_bytes
        self.post(self._send_sealed, oid, size, owner_address)
        self.refs.note_stored(size)
        if len(self.shm.write_mappings) and not self._is_prune_scheduled:
            self._is_prune_scheduled = True
            self.post(self._prune_write_mappings)

    def _prune_write_mappings(self) -> None:
        """I/O thread, every second while this process keeps mappings of recycled files:
        drop those of files the node daemon deleted."""
        if self.shm is not None and not self.is_shutdown and self.shm.write_mappings.prune():
            self.loop.call_later(1.0, self._prune_write_mappings)
        else:
            self._is_prune_scheduled = False

    def _send_sealed(self, oid: bytes, size: int, owner_address: str) -> None:
        if self.raylet is not None and not self.raylet.closed:
            self.raylet.send(m.ObjectSealed(oid, size, owner_address))

    # --- objects: get ------------------------------------------------------------------------------------
    def _entry_for(self, ref: ObjectRef) -> Entry:
        e = self.store.get(ref._id)
        if e is not None:
            return e
        if ref._owner == self.address:
            e = Entry(True)
            e.state = FAILED
            e.error = exc.ReferenceCountingAssertionError(ref.hex(), self.address, "")
            return e
        e = self.store.add_pending(ref._id, is_owned=False)
        self.post(self._start_fetch, ref)
        return e

    def _start_fetch(self, ref: ObjectRef) -> None:
        self.spawn(self._fetch_from_owner(ref))

    async def _fetch_from_owner(self, ref: ObjectRef) -> None:
        oid = ref._id
        try:
            conn = await self.peers.get(ref._owner)
            st = await conn.request(m.GetObjectStatus(oid))
        except (OSError, rpc.ConnectionLost, TimeoutError) as e:
            self.store.complete(oid, error=exc.OwnerDiedError(ref.hex(), ref._owner, detail=str(e)))
            return
        except rpc.RpcError as e:
            self.store.complete(oid, error=exc.ObjectLostError(ref.hex(), ref._owner, detail=e.message))
            return
        if st.status == "ready":
            self.store.complete(oid, data=st.data, node_id=st.node_id, node_address=st.node_address,
                                size=st.size_bytes)
        else:
            self.store.complete(oid, error=serialization.deserialize(st.data))

    def _on_get_object_status(self, conn: rpc.Connection, request_id: int, msg: m.GetObjectStatus) -> None:
        e = self.store.get(msg.object_id)
        if e is None:
            err = exc.ReferenceCountingAssertionError(msg.object_id.hex(), self.address, "")
            conn.reply(request_id, m.ObjectStatus("failed", serialization.serialize(err).to_bytes(), None, "", 0))
            return

        def answer() -> None:
            if e.state == READY:
                conn.reply(request_id, m.ObjectStatus("ready", e.data, e.node_id, e.node_address, e.size))
            else:
                data = serialization.serialize(e.error).to_bytes()
                conn.reply(request_id, m.ObjectStatus("failed", data, None, "", 0))

        if not self.store.add_waiter(msg.object_id, lambda: self.loop.call_soon_threadsafe(answer)):
            answer()

    def get(self, refs: list[ObjectRef], timeout_s: Optional[float], is_task_args: bool = False) -> list[Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        entries = [self._entry_for(r) for r in refs]
        blocked = False
        try:
            for ref, e in zip(refs, entries):
                if e.state != PENDING:
                    continue
                if not blocked:
                    blocked = self._notify_blocked()
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self.store.wait(ref._id, left):
                    raise exc.GetTimeoutError(f"Get timed out: some object(s) not ready (first: {ref.hex()}) "
                                              f"after {timeout_s}s.")
        finally:
            if blocked:
                self._notify_unblocked()
        self._prefetch(refs, entries, is_task_args, None if deadline is None else deadline - time.monotonic())
        return [self.materialize(r, e, deadline) for r, e in zip(refs, entries)]

    def _prefetch(self, refs: list[ObjectRef], entries: list[Entry], is_task_args: bool,
                  timeout_s: Optional[float]) -> None:
        """Have the node daemon pull every object of this get held on other nodes at once
        (its pull manager admits them by room, task arguments first); errors show when
        each one is read."""
        remote = [[r._id, e.node_address, e.size] for r, e in zip(refs, entries)
                  if e.state != FAILED and e.data is None and e.node_address and e.node_id != self.node_id
                  and r._id not in self._mapped]
        if self.raylet is None or not remote or (len(remote) == 1 and not is_task_args):
            return
        try:
            self.run_sync(self._raylet_request(m.PrefetchObjects(remote, 0 if is_task_args else 1)),
                          None if timeout_s is None else max(0.0, timeout_s))
        except (exc.EmberError, ConnectionError, concurrent.futures.TimeoutError):
            pass

    def _notify_blocked(self) -> bool:
        if self.mode != "worker" or getattr(self.context, "task", None) is None:
            return False
        self.post(self._send_raylet, m.WorkerBlocked(self.worker_id))
        return True

    def _notify_unblocked(self) -> None:
        self.post(self._send_raylet, m.WorkerUnblocked(self.worker_id))

    def _send_raylet(self, msg: Any) -> None:
        if self.raylet is not None and not self.raylet.closed:
            self.raylet.send(msg)

    def materialize(self, ref: ObjectRef, e: Entry, deadline: Optional[float] = None) -> Any:
        for _ in range(RECOVERIES_PER_GET_MAX):
            if e.state == FAILED:
                err = e.error
                if isinstance(err, exc.RayTaskError):
                    raise err.as_instanceof_cause()
                raise err  # type: ignore[misc]
            if e.data is not None:
                return serialization.deserialize(e.data)
            try:
                return serialization.deserialize(self._map_local(ref._id, e))
            except exc.ObjectLostError as lost:   # its copy is gone: rebuilt or relocated (recovery.py)
                if type(lost) is not exc.ObjectLostError:
                    raise
                e = self.recovery.after_failed_read(ref, e, lost, deadline)
        raise self._lost_error(ref._id, f"still unreadable after {RECOVERIES_PER_GET_MAX} rebuilds or re-reads")

    def _map_local(self, oid: bytes, e: Entry) -> memoryview:
        mapping = self._mapped.get(oid)
        if mapping is not None:
            return memoryview(mapping)
        if self.shm is None:  # a remote client: read it from its node, in chunks
            from ember.shells.worker import remote_client
            return remote_client.download(self, oid, e)
        view = self.shm.open(oid)
        tries = 0
        while view is None:  # spilled (map its spill file) or on another node (pull it)
            tries += 1
            if tries > _MAP_TRIES_MAX:  # restored, then evicted again before we mapped it
                raise self._lost_error(oid, "the object's file vanished from the local store")
            if e.node_id == self.node_id:  # on disk only: map its spill file (not into shm)
                spill_path = self.run_sync(self._raylet_request(m.EnsureReadable(oid))).spill_path
                view = map_spill_file(spill_path) if spill_path else self.shm.open(oid)
            else:
                self.run_sync(self._raylet_request(m.PullObject(oid, e.node_address, e.size)))
                view = self.shm.open(oid)
        if isinstance(view.obj, mmap.mmap):
            self._mapped[oid] = view.obj
        return view

    async def _raylet_request(self, msg: Any) -> Any:
        assert self.raylet is not None
        try:
            return await self.raylet.request(msg)
        except rpc.RpcError as e:
            if e.kind == "ObjectStoreFullError":   # e.g. a pull of an object larger than this store
                raise _store_full_error(e) from None
            if e.kind != "ObjectLostError":    # not a lost copy: surface it, never rebuild
                raise exc.RaySystemError(f"{e.kind}: {e.message}") from None
            raise self._lost_error(getattr(msg, "object_id", b""), e.message) from None

    def _lost_error(self, oid: bytes, detail: str) -> exc.ObjectLostError:
        """ObjectLostError for an object whose copies are gone: the owner, where the ref was
        created (when recorded) and what the node daemon said, each in its own place."""
        e = self.store.get(oid)
        owner = self.address if e is not None and e.is_owned else ""
        site = self.call_sites.get(oid, "") if self.call_sites is not None else ""
        return exc.ObjectLostError(oid.hex(), owner, site, detail=detail)

    # --- wait -----------------------------------------------------------------------------------------------
    def wait(self, refs: list[ObjectRef], num_returns: int, timeout_s: Optional[float],
             fetch_local: bool) -> tuple[list[ObjectRef], list[ObjectRef]]:
        entries = [self._entry_for(r) for r in refs]
        done = [e.state != PENDING for e in entries]
        count = sum(done)
        if count < num_returns and timeout_s != 0:
            self._wait_for_some(refs, entries, done, count, num_returns, timeout_s)
        ready, not_ready = [], []
        for r, is_done in zip(refs, done):
            (ready if is_done and len(ready) < num_returns else not_ready).append(r)
        return ready, not_ready

    def _wait_for_some(self, refs: list[ObjectRef], entries: list[Entry], done: list[bool], count: int,
                       num_returns: int, timeout_s: Optional[float]) -> None:
        """Block until ``num_returns`` of ``refs`` are done (marking them in ``done``) or the
        timeout passes; the waiters it registered are removed before it returns."""
        cond = threading.Condition()
        counter = [count]
        callbacks: list[tuple[bytes, Callable[[], None]]] = []

        def make_cb(i: int) -> Callable[[], None]:
            def cb() -> None:
                with cond:
                    if not done[i]:
                        done[i] = True
                        counter[0] += 1
                        cond.notify_all()
            return cb

        for i, (r, e) in enumerate(zip(refs, entries)):
            if not done[i]:
                cb = make_cb(i)
                if self.store.add_waiter(r._id, cb):
                    callbacks.append((r._id, cb))
                else:
                    cb()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with cond:
            while counter[0] < num_returns:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                cond.wait(left)
        for oid, cb in callbacks:
            self.store.remove_waiter(oid, cb)

    # --- futures ----------------------------------------------------------------------------------------------
    def as_future(self, ref: ObjectRef) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        e = self._entry_for(ref)

        def resolve() -> None:
            try:
                fut.set_result(self.materialize(ref, e))
            except BaseException as err:
                fut.set_exception(err)

        if e.state != PENDING or not self.store.add_waiter(ref._id, lambda: threading.Thread(target=resolve, daemon=True).start()):
            resolve()
        return fut

    def as_asyncio_future(self, ref: ObjectRef) -> asyncio.Future:
        return asyncio.wrap_future(self.as_future(ref))

    # --- pub/sub -------------------------------------------------------------------------------------------------
    def _on_published(self, conn: rpc.Connection, request_id: int, msg: m.Published) -> None:
        hook = self.published_hooks.get(msg.channel)
        if hook is not None:
            hook(msg)
            return
        data = msg.data
        if msg.channel == "logs" and isinstance(data, m.LogLines):
            from ember.shells.worker import progress_bars   # progress bars ride the log stream (tqdm_ray)
            progress_bars.print_log_lines(data)

    # --- ember memory: this process's objects ----------------------------------------------------------------
    def _record_call_site(self, refs: list[ObjectRef], what: str) -> None:
        """Remember file:line of the user's frame that created ``refs`` (only when enabled)."""
        sites = self.call_sites
        assert sites is not None
        frame: Any = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith(_EMBER_DIR):
            frame = frame.f_back
        site = f"{what} {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else what
        for ref in refs:
            sites[ref._id] = site
        if len(sites) > 2 * len(self.store) + 1024:  # forget the sites of freed objects
            for oid in list(sites):
                if oid not in self.store:
                    sites.pop(oid, None)

    def _on_list_process_objects(self, conn: rpc.Connection, request_id: int, msg: m.ListProcessObjects) -> None:
        """``ember memory``: every object this process owns or holds a ref to, one row each."""
        self.refs.drain()
        table = self.refs.table
        with self.store.lock:
            entries = dict(self.store.entries)
        pinned = set(self._mapped.keys())
        sites = self.call_sites
        rows = []
        for oid in {*table.object_ids(), *(oid for oid, e in entries.items() if e.is_owned)}:
            e, summary = entries.get(oid), table.summary(oid)
            is_owned = e.is_owned if e is not None else bool(summary and summary.is_owned)
            owner = self.address if is_owned else (summary.owner if summary is not None else "")
            status = "" if e is None else ("PENDING", "READY", "FAILED")[e.state]
            is_inline = e is not None and e.state == READY and e.data is not None
            site = ("(disabled)" if sites is None else sites.get(oid, "(unknown)")) if is_owned else ""
            rows.append([oid, owner, e.size if e is not None else 0, status, is_inline,
                         e.node_address if e is not None else "", _reference_type(summary, oid in pinned), site])
        rows.sort(key=lambda row: -row[2])
        conn.reply(request_id, m.ProcessObjects(os.getpid(), self.address, self.mode, len(rows),
                                                rows[:max(0, msg.objects_max)]))


_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def _reference_type(summary: Any, is_pinned: bool) -> str:
    """Ray's reference types, from this process's counts for one object."""
    if summary is None:
        return "PINNED_IN_MEMORY" if is_pinned else "UNKNOWN_STATUS"
    if summary.local_count and is_pinned:
        return "PINNED_IN_MEMORY"
    if summary.submitted_count:
        return "USED_BY_PENDING_TASK"
    if summary.local_count:
        return "LOCAL_REFERENCE"
    if summary.contained_in:
        return "CAPTURED_IN_OBJECT"
    return "UNKNOWN_STATUS"
