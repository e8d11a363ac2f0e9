"""The node daemon's object service: admission, seal, free, spill/restore, pulls.

Objects are files in the node's shared-memory directory (``ShmStore``); writers and
readers on the node map them directly, so this service sees only control messages.
Every decision (may this object be created, what to spill or delete to make room,
when a restore may start) is taken by the pure ``ObjectTable``; this module feeds it
events and carries out its effects:

=====================  ==================================================================
effect                 what the shell does
=====================  ==================================================================
CreateAllowed          answer the writer's ``CreateObject`` with ``CreateObjectGranted``,
                       naming the pooled file it may write into (or wake a pull)
CreateRefused          answer with ``ObjectStoreFullError`` naming sizes (``ObjectExists``
                       when the object is already here: the writer skips writing)
SpillObject            copy the file to the spill directory in a thread, unlink it from
                       shm, report ``ObjectSpilled`` / ``ObjectSpillFailed``
RestoreObject          copy the spill file back in a thread, report ``ObjectRestored`` /
                       ``ObjectRestoreFailed``
DeleteObject           unlink from shm (readers that mapped it keep their pages)
DeleteSpillFile        unlink the spill file
RestoreDone / Failed   answer ``EnsureLocal`` (or wake a ``ReadChunk`` / pull)
RecycleObject          pool the freed object's file if nobody maps it (exclusive flock),
                       else delete it; report ``ObjectRecycled`` / ``ObjectRecycleFailed``
TrimPoolFile           empty and unlink a pooled file
SchedulePoolTrim       feed ``PoolTrimTimerFired`` at the time asked
=====================  ==================================================================

Copies written here by local writers (puts, task returns) are primary copies: spilled
when room is needed.  Copies pulled from other nodes are secondary: deleted when room
is needed (the primary is elsewhere).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import shutil
import time
from typing import Any, Coroutine, Optional

from ember.config import CONFIG
from ember.logic.node import object_table as T
from ember.logic.node import pull_manager as P
from ember.protocol import messages as m
from ember.shells.node.pulls import PullService
from ember.shells.node.store_errors import StoreError
from ember.shells.wire import rpc
from ember.shells.shared.shm_store import (
    SPILL_DIR_PREFIX,
    ShmStore,
    STORE_DIR_PREFIX,
    capped_capacity_bytes,
    create_owned_dir,
    node_spill_directory,
    shm_room_bytes,
    sweep_stale,
)

log = logging.getLogger("ember.objects")

__all__ = ["ObjectService", "StoreError"]

_SPILL_THREADS = 2
_ENSURE_ATTEMPTS_MAX = 5  # a restored object can be evicted again before it is read
_MEMORY_TIMEOUT_MIN_S = 0.05  # bounds on how long `ember memory` waits for a node's processes
_MEMORY_TIMEOUT_MAX_S = 60.0


class ObjectService:
    """One node's object store: an ``ObjectTable`` plus the I/O it orders."""

    def __init__(self, daemon: Any, capacity_bytes: int, spill_root: str = "") -> None:
        """``daemon`` gives ``store``, ``session_dir``, ``node_id`` and ``peers``;
        ``capacity_bytes`` 0 means ``default_capacity_bytes()``, and any capacity is capped
        at what the store's tmpfs can hold (with a warning); spill files go to
        ``<spill_root or <session_dir>/spill>/ember-spill-<session>-<node8>/``."""
        self.daemon = daemon
        self.store: ShmStore = daemon.store
        self.shm_root = os.path.dirname(self.store.directory)
        capacity_bytes, warning = capped_capacity_bytes(capacity_bytes, self.shm_root)
        if warning:
            log.warning("%s", warning)
        self.table = T.ObjectTable(capacity_bytes)
        self.spill_dir = node_spill_directory(spill_root or os.path.join(daemon.session_dir, "spill"),
                                              os.path.basename(daemon.session_dir), daemon.node_id.hex())
        self._io = concurrent.futures.ThreadPoolExecutor(_SPILL_THREADS, "ember-spill")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cause_seq = 0
        self._events: list[Any] = []   # fed while effects are being carried out
        self._is_feeding = False
        self._pool_timer: Optional[asyncio.TimerHandle] = None
        self.spilled_total_bytes = 0
        self.restored_total_bytes = 0
        self.pulls = PullService(self)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Sweep stale store and spill directories of dead daemons; create ours."""
        for path in sweep_stale(os.path.join(self.shm_root, STORE_DIR_PREFIX)):
            log.info("removed the stale object store directory %s", path)
        spill_root = os.path.dirname(self.spill_dir)
        for path in sweep_stale(os.path.join(spill_root, SPILL_DIR_PREFIX)):
            log.info("removed the stale spill directory %s", path)
        create_owned_dir(self.spill_dir)

    def start_transfer(self, host: str, token: bytes) -> None:
        """Open this node's transfer port (docs/object_store.md section 6)."""
        self.pulls.start(host, token)

    def close(self) -> None:
        self.pulls.close()
        if self._pool_timer is not None:
            self._pool_timer.cancel()
        for task in self._tasks:
            task.cancel()
        self._io.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    # --- stats -----------------------------------------------------------------------------
    @property
    def capacity_bytes(self) -> int:
        """The table's capacity (lowered if the tmpfs ran out of room: its rule 15)."""
        return self.table.capacity_bytes

    def used_bytes(self) -> int:
        return self.table.used_bytes

    def num_objects(self) -> int:
        return self.table.num_objects

    def spilled_bytes(self) -> int:
        return self.table.spilled_bytes

    def num_spilled_objects(self) -> int:
        return self.table.num_spilled_objects

    def pool_bytes(self) -> int:
        """Bytes of freed objects' files kept for reuse (not in ``used_bytes``)."""
        return self.table.pool_bytes

    # --- the table ----------------------------------------------------------------------------
    def _cause(self, what: str) -> str:
        self._cause_seq += 1
        return f"{what}-{self._cause_seq}"

    def _feed(self, event: Any) -> None:
        """Hand an event to the table and carry out its effects; events that effects
        report back (recycling) are handled after the current batch, in order."""
        self._events.append(event)
        if self._is_feeding:
            return
        self._is_feeding = True
        try:
            while self._events:
                for effect in self.table.handle(self._events.pop(0), time.monotonic()):
                    self._perform(effect)
        finally:
            self._is_feeding = False

    def _perform(self, eff: Any) -> None:
        if isinstance(eff, T.CreateAllowed):
            if eff.recycled_file_id is not None and (eff.req_id is None or eff.req_id.done()):
                self.store.trim_pool_file(eff.recycled_file_id)  # nobody will take it
            _resolve(eff.req_id, None, eff.recycled_file_id)
        elif isinstance(eff, T.CreateRefused):
            _resolve(eff.req_id, self._refusal_error(eff))
        elif isinstance(eff, T.SpillObject):
            self._spawn(self._spill(eff.object_id, eff.cause_id))
        elif isinstance(eff, T.RestoreObject):
            self._spawn(self._restore(eff.object_id, eff.url, eff.cause_id))
        elif isinstance(eff, T.DeleteObject):
            self.store.delete(eff.object_id)
        elif isinstance(eff, T.DeleteSpillFile):
            ShmStore.delete_spill_file(eff.url)
        elif isinstance(eff, T.RestoreDone):
            _resolve(eff.req_id, None)
        elif isinstance(eff, T.RestoreFailed):
            _resolve(eff.req_id, StoreError(
                "ObjectLostError", f"object {eff.object_id.hex()} could not be restored from spill: "
                                   f"{eff.reason}"))
        elif isinstance(eff, T.RecycleObject):
            self._recycle(eff)
        elif isinstance(eff, T.TrimPoolFile):
            self.store.trim_pool_file(eff.file_id)
        elif isinstance(eff, T.SchedulePoolTrim):
            if self._pool_timer is not None:
                self._pool_timer.cancel()
            delay_s = max(0.0, eff.at_s - time.monotonic())
            self._pool_timer = asyncio.get_running_loop().call_later(
                delay_s, lambda: self._feed(T.PoolTrimTimerFired(self._cause("pool-timer"))))
        else:  # pragma: no cover - the effect list is closed
            raise TypeError(f"unknown object table effect {eff!r}")

    def _recycle(self, eff: T.RecycleObject) -> None:
        try:
            is_pooled = self.store.recycle(eff.object_id, eff.file_id)
            reason = "" if is_pooled else "mapped by a reader, or gone"
        except OSError as exc:
            log.warning("recycling the file of %s failed: %s", eff.object_id.hex(), exc)
            self.store.delete(eff.object_id)
            is_pooled, reason = False, f"{type(exc).__name__}: {exc}"
        self._feed(T.ObjectRecycled(eff.file_id, eff.cause_id) if is_pooled
                   else T.ObjectRecycleFailed(eff.file_id, reason, eff.cause_id))

    def _refusal_error(self, eff: T.CreateRefused) -> StoreError:
        if eff.reason == "exists":
            return StoreError("ObjectExists", "the object is already in this node's store")
        if eff.reason == "freed":
            return StoreError("ObjectLostError", "the object was freed before it was created")
        sizes = json.dumps({"object_size_bytes": eff.needed_bytes, "capacity_bytes": eff.capacity_bytes,
                            "used_bytes": eff.used_bytes}).encode()
        if eff.reason == "too_large":
            why = "the object is larger than the whole object store"
        elif eff.reason == "spill_failed":
            why = f"spilling to {self.spill_dir} failed ({eff.detail})"
        else:
            why = "every other object in the store is pinned or still being written"
        return StoreError("ObjectStoreFullError",
                          f"Cannot store an object of {eff.needed_bytes} bytes: the object store holds "
                          f"{eff.used_bytes} of {eff.capacity_bytes} bytes and {why}.", sizes)

    def feed(self, event: Any) -> None:
        self._feed(event)

    def cause(self, what: str) -> str:
        return self._cause(what)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._spawn(coro)

    def note_access(self, object_id: bytes) -> None:
        """Another node read the object: refresh its place in the LRU order."""
        if self.table.state_of(object_id) is not None:
            self._feed(T.ObjectAccessed(object_id))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("object store task failed", exc_info=task.exception())

    async def _spill(self, object_id: bytes, cause_id: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            url = await loop.run_in_executor(self._io, self.store.spill, object_id, self.spill_dir)
        except Exception as exc:
            log.warning("spilling %s failed: %s", object_id.hex(), exc)
            self._feed(T.ObjectSpillFailed(object_id, f"{type(exc).__name__}: {exc}", cause_id))
            return
        self.spilled_total_bytes += self.table.size_of(object_id) or 0
        self._feed(T.ObjectSpilled(object_id, url, cause_id))

    async def _restore(self, object_id: bytes, url: str, cause_id: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            size = await loop.run_in_executor(self._io, self.store.restore, object_id, url)
        except Exception as exc:
            log.warning("restoring %s failed: %s", object_id.hex(), exc)
            self._feed(T.ObjectRestoreFailed(object_id, f"{type(exc).__name__}: {exc}", cause_id))
            return
        self.restored_total_bytes += size
        self._feed(T.ObjectRestored(object_id, cause_id))

    # --- local writers ------------------------------------------------------------------------
    def _measure_space(self) -> None:
        """While a full tmpfs has lowered the capacity, tell the table how much room came
        back (its rule 15); a statfs per create, and none at the configured capacity."""
        if self.table.capacity_bytes < self.table.configured_capacity_bytes:
            room = shm_room_bytes(self.shm_root)
            if room is not None:
                self._feed(T.StoreSpaceMeasured(room, self._cause("statfs")))

    def on_CreateObject(self, conn: rpc.Connection, request_id: int, msg: m.CreateObject) -> None:
        self._measure_space()
        fut = asyncio.get_running_loop().create_future()
        writer = conn.state.get("process", (None,))[0]  # its pid: it may have kept pooled files mapped
        self._feed(T.ObjectCreateRequested(fut, msg.object_id, msg.size_bytes, True, self._cause("put"),
                                           writer, msg.owner_address))
        if fut.done():
            self._answer_create(conn, request_id, msg.object_id, fut)
        else:
            fut.add_done_callback(lambda f: self._answer_create(conn, request_id, msg.object_id, f))

    def _answer_create(self, conn: rpc.Connection, request_id: int, object_id: bytes,
                       fut: asyncio.Future[Optional[int]]) -> None:
        err = fut.exception()
        if err is None and conn.closed:  # the writer went away while it waited for room
            if fut.result() is not None:
                self.store.trim_pool_file(fut.result())
            self._feed(T.ObjectCreateAborted(object_id, self._cause("writer-lost")))
        elif err is None:
            conn.state.setdefault("objects_creating", set()).add(object_id)
            file_id = fut.result()
            name = self.store.take_pool_file(file_id, object_id) if file_id is not None else ""
            conn.reply(request_id, m.CreateObjectGranted(name))
        else:
            assert isinstance(err, StoreError)
            conn.reply_error(request_id, err.kind, err.message, err.data)

    def on_WriteObjectChunk(self, conn: rpc.Connection, request_id: int, msg: m.WriteObjectChunk) -> None:
        """A remote client's put (docs/client.md): it cannot map this node's shared memory, so it
        sends the object's bytes, after ``CreateObject`` and before ``ObjectSealed``."""
        if msg.object_id not in conn.state.get("objects_creating", ()):
            conn.reply_error(request_id, "ValueError", f"WriteObjectChunk for {msg.object_id.hex()} without "
                                                       "a granted CreateObject on this connection")
            return
        writes = conn.state.setdefault("remote_writes", {})
        pending = writes.get(msg.object_id)
        try:
            if pending is None:
                pending = writes[msg.object_id] = self.store.create_for_write(msg.object_id, msg.total_bytes,
                                                                              msg.recycled_name)
            pending.write_at(msg.offset, msg.data)
        except (OSError, ValueError) as exc:
            conn.reply_error(request_id, type(exc).__name__, f"writing {msg.object_id.hex()}: {exc}")
            return
        conn.reply(request_id, m.Ok())

    def on_ObjectSealed(self, conn: rpc.Connection, request_id: int, msg: m.ObjectSealed) -> None:
        conn.state.get("objects_creating", set()).discard(msg.object_id)
        writes = conn.state.get("remote_writes")
        if writes and writes.pop(msg.object_id, None) is not None:
            self.store.seal(msg.object_id)  # written here by WriteObjectChunk
        self._feed(T.ObjectSealed(msg.object_id, self._cause("seal")))
        if self.table.state_of(msg.object_id) is None:
            self.store.delete(msg.object_id)  # unknown here (its create was aborted)

    def on_AbortObject(self, conn: rpc.Connection, request_id: int, msg: m.AbortObject) -> None:
        """A writer's write failed: give the reservation back (see ``AbortObject``)."""
        conn.state.get("objects_creating", set()).discard(msg.object_id)
        if conn.state.get("remote_writes", {}).pop(msg.object_id, None) is not None:
            self.store.abort(msg.object_id)
        if msg.is_out_of_space:
            log.warning("%s is full: a write of %s failed with ENOSPC; lowering the store's capacity "
                        "to what it holds", self.shm_root, msg.object_id.hex())
        self._feed(T.ObjectCreateAborted(msg.object_id, self._cause("write-failed"), msg.is_out_of_space))
        self.store.remove_partial(msg.object_id)
        conn.reply(request_id, m.Ok())

    def connection_lost(self, conn: rpc.Connection) -> None:
        """A writer that died between create and seal: give its room back."""
        for object_id in conn.state.pop("remote_writes", {}):
            self.store.abort(object_id)
        for object_id in conn.state.pop("objects_creating", set()):
            self._feed(T.ObjectCreateAborted(object_id, self._cause("writer-lost")))
            self.store.remove_partial(object_id)
        process = conn.state.get("process")
        if process is not None:
            self.owner_died(process[1])

    def owner_died(self, owner_address: str) -> None:
        """The owner of objects stored here is gone: nobody can free them any more (and
        ``get`` on them raises OwnerDiedError), so the table frees them now (its rule 13)."""
        count = len(self.table.objects_of(owner_address))
        if count:
            log.info("freeing %d object(s) of %s, which is gone", count, owner_address)
        self._feed(T.OwnerDied(owner_address, self._cause("owner-died")))

    def on_FreeObjects(self, conn: rpc.Connection, request_id: int, msg: m.FreeObjects) -> None:
        cause = self._cause("free")
        for object_id in msg.object_ids:
            self._feed(T.ObjectFreed(object_id, cause))
        self.pulls.forget(msg.object_ids)

    # --- local readers ------------------------------------------------------------------------
    def on_EnsureLocal(self, conn: rpc.Connection, request_id: int, msg: m.EnsureLocal) -> None:
        if self.store.contains(msg.object_id):
            self._feed(T.ObjectAccessed(msg.object_id))
            conn.reply(request_id, m.Ok())
            return
        self._spawn(self._reply_when_local(conn, request_id, msg.object_id))

    def on_EnsureReadable(self, conn: rpc.Connection, request_id: int, msg: m.EnsureReadable) -> None:
        """An object on disk only is read from its spill file: a restore would copy it into
        fresh shared memory, and a reader that keeps many such values (one ``get`` of a
        list) would hold more than the store's capacity in shm.  Anything else as
        ``EnsureLocal``."""
        if self.store.contains(msg.object_id):
            self._feed(T.ObjectAccessed(msg.object_id))
            conn.reply(request_id, m.ReadableAt(""))
            return
        state = self.table.state_of(msg.object_id)
        url = self.table.spill_url_of(msg.object_id)
        if state in (T.ObjectState.SPILLED, T.ObjectState.RESTORING) and url:
            conn.reply(request_id, m.ReadableAt(url))
            return
        self._spawn(self._reply_when_local(conn, request_id, msg.object_id, m.ReadableAt("")))

    async def _reply_when_local(self, conn: rpc.Connection, request_id: int, object_id: bytes,
                                reply: Any = None) -> None:
        try:
            await self.ensure_local(object_id)
        except StoreError as err:
            conn.reply_error(request_id, err.kind, err.message, err.data)
            return
        conn.reply(request_id, m.Ok() if reply is None else reply)

    async def ensure_local(self, object_id: bytes) -> None:
        """Return once the object's file is in shm, restoring it from spill if needed."""
        for _ in range(_ENSURE_ATTEMPTS_MAX):
            if self.store.contains(object_id):
                return
            if self.table.state_of(object_id) is None:
                raise StoreError("ObjectLostError", f"object {object_id.hex()} is not on this node "
                                                    "(never stored here, or already freed)")
            fut = asyncio.get_running_loop().create_future()
            self._feed(T.ObjectRestoreRequested(fut, object_id, self._cause("restore")))
            await fut
        if not self.store.contains(object_id):
            raise StoreError("ObjectLostError", f"object {object_id.hex()} was evicted again each time "
                                                f"it was restored ({_ENSURE_ATTEMPTS_MAX} tries)")

    # --- transfer: serving ------------------------------------------------------------------
    def on_ReadChunk(self, conn: rpc.Connection, request_id: int, msg: m.ReadChunk) -> None:
        if not self._reply_chunk(conn, request_id, msg):
            self._spawn(self._reply_chunk_after_restore(conn, request_id, msg))

    def _reply_chunk(self, conn: rpc.Connection, request_id: int, msg: m.ReadChunk) -> bool:
        view = self.store.open(msg.object_id)
        if view is None:
            return False
        try:
            conn.reply(request_id, m.Chunk(bytes(view[msg.offset: msg.offset + msg.length]), len(view)))
        finally:
            view.release()
        if msg.offset == 0:
            self._feed(T.ObjectAccessed(msg.object_id))
        return True

    async def _reply_chunk_after_restore(self, conn: rpc.Connection, request_id: int,
                                         msg: m.ReadChunk) -> None:
        for _ in range(_ENSURE_ATTEMPTS_MAX):
            try:
                await self.ensure_local(msg.object_id)
            except StoreError as err:
                conn.reply_error(request_id, err.kind, err.message, err.data)
                return
            if self._reply_chunk(conn, request_id, msg):
                return
        conn.reply_error(request_id, "ObjectLostError", f"object {msg.object_id.hex()} could not be read")

    # --- transfer: pulling (shells/node/pulls.py) -------------------------------------
    def on_PullObject(self, conn: rpc.Connection, request_id: int, msg: m.PullObject) -> None:
        if self.store.contains(msg.object_id):
            conn.reply(request_id, m.Ok())
            return
        self._spawn(self._reply_pull(conn, request_id, msg))

    async def _reply_pull(self, conn: rpc.Connection, request_id: int, msg: m.PullObject) -> None:
        try:
            await self.pull(msg.object_id, msg.from_address, msg.size_bytes)
            conn.reply(request_id, m.Ok())
        except (StoreError, rpc.RpcError) as exc:
            conn.reply_error(request_id, exc.kind, exc.message, exc.data)
        except Exception as exc:
            conn.reply_error(request_id, "ObjectLostError",
                             f"pulling {msg.object_id.hex()} from {msg.from_address}: {exc}")

    def on_PrefetchObjects(self, conn: rpc.Connection, request_id: int, msg: m.PrefetchObjects) -> None:
        """Pull many objects at once (the pull manager admits them by room and priority)."""
        self._spawn(self._reply_prefetch(conn, request_id, msg))

    async def _reply_prefetch(self, conn: rpc.Connection, request_id: int, msg: m.PrefetchObjects) -> None:
        priority = P.PullPriority(min(max(int(msg.priority), 0), 1))
        await asyncio.gather(*(self.pull(oid, address, int(size), priority) for oid, address, size in msg.entries),
                             return_exceptions=True)
        conn.reply(request_id, m.Ok())

    async def pull(self, object_id: bytes, from_address: str, size_bytes: int = 0,
                   priority: P.PullPriority = P.PullPriority.GET) -> None:
        """Bring a copy of the object whose primary is on the node daemon at ``from_address``."""
        if self.store.contains(object_id):
            return
        if self.table.state_of(object_id) is not None and self.pulls.manager.state_of(object_id) is None:
            return await self.ensure_local(object_id)  # ours, spilled (or arriving)
        if from_address in self.daemon.dead_addresses:  # its connection could hang (a partition)
            raise StoreError("ObjectLostError", f"object {object_id.hex()} was at {from_address}, "
                                                "a node declared dead")
        await self.pulls.pull(object_id, from_address, size_bytes, priority)

    async def reserve(self, object_id: bytes, size_bytes: int) -> Optional[str]:
        """Admission for a secondary copy: None when it is already here, else the name of
        a pooled file to write into ("" for a new file)."""
        self._measure_space()
        fut = asyncio.get_running_loop().create_future()
        self._feed(T.ObjectCreateRequested(fut, object_id, size_bytes, False, self._cause("pull"),
                                           "node"))
        try:
            file_id = await fut
        except StoreError as err:
            if err.kind == "ObjectExists":
                return None
            raise
        return self.store.take_pool_file(file_id, object_id) if file_id is not None else ""

    def on_LocateObject(self, conn: rpc.Connection, request_id: int, msg: m.LocateObject) -> None:
        self.pulls.on_LocateObject(conn, request_id, msg)

    def on_TransferDone(self, conn: rpc.Connection, request_id: int, msg: m.TransferDone) -> None:
        self.pulls.on_TransferDone(conn, request_id, msg)

    def on_PromoteObjectCopy(self, conn: rpc.Connection, request_id: int, msg: m.PromoteObjectCopy) -> None:
        """The primary's node died: the owner keeps this node's copy as the primary."""
        oid = msg.object_id
        if self.table.state_of(oid) is not T.ObjectState.SEALED or not self.store.contains(oid):
            conn.reply_error(request_id, "ObjectLostError", f"object {oid.hex()} has no copy on this node")
            return
        self._feed(T.ObjectPromoted(oid, msg.owner_address, self._cause("promoted")))
        conn.reply(request_id, m.Ok())

    # --- ember memory -----------------------------------------------------------------------
    def on_GetMemoryInfo(self, conn: rpc.Connection, request_id: int, msg: m.GetMemoryInfo) -> None:
        """The store's figures; with ``include_objects`` also its table and the objects of
        this node's drivers and workers (asked in parallel; a silent one is listed as such)."""
        if not msg.include_objects:
            conn.reply(request_id, self._memory_info([], [], []))
            return
        self._spawn(self._reply_memory_info(conn, request_id, msg))

    def _memory_info(self, entries: list, processes: list, unanswered: list) -> m.NodeMemoryInfo:
        table = self.table
        return m.NodeMemoryInfo(self.daemon.node_id, self.daemon.address, table.used_bytes, self.capacity_bytes,
                                table.num_objects, table.spilled_bytes, table.num_spilled_objects,
                                entries, processes, unanswered)

    async def _reply_memory_info(self, conn: rpc.Connection, request_id: int, msg: m.GetMemoryInfo) -> None:
        daemon = self.daemon
        targets = [c for c in [*daemon.worker_conns.values(), *daemon.driver_conns]
                   if not c.closed and "process" in c.state]
        timeout_s = min(max(float(msg.process_timeout_s), _MEMORY_TIMEOUT_MIN_S), _MEMORY_TIMEOUT_MAX_S)
        answers = await asyncio.gather(*(_ask_process(c, msg.objects_max, timeout_s) for c in targets))
        processes, unanswered = [], []
        for target, (reply, reason) in zip(targets, answers):
            if reply is not None:
                processes.append(reply)
            else:
                pid, address, kind = target.state["process"]
                unanswered.append([pid, address, kind, reason])
        entries = [[oid, state.name, size, is_primary] for oid, state, size, is_primary in self.table.entries()]
        conn.reply(request_id, self._memory_info(entries, processes, unanswered))


async def _ask_process(conn: rpc.Connection, objects_max: int,
                       timeout_s: float) -> tuple[Optional[m.ProcessObjects], str]:
    """One driver's or worker's objects, or None and why it gave none."""
    try:
        async with asyncio.timeout(timeout_s):
            reply = await conn.request(m.ListProcessObjects(objects_max))
    except TimeoutError:
        return None, f"no answer within {timeout_s:g}s"
    except rpc.ConnectionLost:
        return None, "its connection closed"
    except rpc.RpcError as err:
        return None, f"{err.kind}: {err.message}"
    if not isinstance(reply, m.ProcessObjects):
        return None, f"unexpected reply {type(reply).__name__}"
    return reply, ""


def _resolve(fut: Any, error: Optional[BaseException], result: Any = None) -> None:
    """Answer a request the table was holding (an asyncio future); late answers are dropped."""
    if fut is None or fut.done():
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)
        fut.exception()  # retrieved: the waiter may be gone
