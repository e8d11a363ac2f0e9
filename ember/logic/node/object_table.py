"""Accounting and policy of one node's shared-memory object store.  Pure: no I/O.

The table knows each object's size, state, pins and recency, and decides who may
create, what to spill, what to delete and when a restore may start.  The shell
(``ember.shells.shared.shm_store`` plus the node daemon) carries out the effects and
reports back with events.

States and moves (numbers refer to ``TRANSITIONS``)::

    (new) --1--> CREATING --2--> SEALED --3--> SPILLING --4--> SPILLED
                                   ^  ^            |              |  ^
                                   |  +-----5------+              6  7
                                   |   (spill failed)             v  |
                                   +-------------8------------- RESTORING
    SEALED --9--> SPILLED  (evicted while a spill file from an earlier spill exists)

    1 create allowed        2 ObjectSealed          3 chosen to make room (primary)
    4 ObjectSpilled         5 ObjectSpillFailed     6 restore admitted
    7 ObjectRestoreFailed   8 ObjectRestored        9 evicted, spill file reused
    Any state leaves the table on ObjectFreed; a SEALED secondary copy chosen to make
    room leaves it with DeleteObject.

Rule 1. ``used_bytes`` = sizes of CREATING, SEALED, SPILLING and RESTORING objects;
        it never exceeds ``capacity_bytes``.  A create or restore is admitted only
        when its size fits in what is free.
Rule 2. Requests (creates and restores) are admitted in arrival order.  When the
        first one does not fit, room is made from unpinned SEALED objects: secondary
        copies first (deleted at once), then primaries least recently used first
        (spilled; a primary that still has a spill file is dropped at once).  The
        request then waits for the spills to report back.  Bytes already being
        spilled count as on their way.
Rule 3. If free bytes + bytes being spilled + everything spillable cannot hold a
        request, it is refused at once (CreateRefused / RestoreFailed): nothing is
        spilled for it.
Rule 4. Pinned objects (being read or sent) are never chosen.  Accessing an object
        makes it the most recently used.
Rule 5. Spill files outlive restores: a restored object keeps its url until freed,
        so evicting it again costs no copy.  ``spilled_bytes`` = sizes of objects
        that have a spill file.
Rule 6. A primary whose spill failed (disk full, I/O error) is not chosen again
        until a spill succeeds or a spill file is deleted (room on disk may have
        come back).  A request that only those objects could have made room for is
        refused with reason "spill_failed" (the detail names the last failure),
        so a full disk makes puts fail instead of retrying forever.
Rule 7. Reports about orders this table gave (spilled, restored, failed) that do not
        match its state raise InvalidTransition: a broken shell.  Events about
        unknown or already freed objects (seal after free, duplicate free) are
        logged and ignored.

Rules 8-12 (the pool of freed store files, written into again instead of fresh pages)
are in the docstring of ``ember.logic.node.file_pool``, whose ``FilePool`` this table
composes; pooled bytes count against ``capacity_bytes`` but not ``used_bytes``.
Rule 13 (an owner's death frees its objects) is in ``ember.logic.node.object_owners``.

Rule 14. A CREATING object freed by its owner keeps its bytes until its writer seals
         it (the writer is still writing into them), then leaves the table as any
         freed SEALED object does (its file pooled, rule 8).  An owner's free can
         overtake the writer's seal: they are sent by different threads of the owner,
         or by different processes.  ``ObjectCreateAborted`` (the writer died, a pull
         failed) drops a CREATING object at once and deletes its file.
Rule 15. A create aborted because the store's filesystem was full (ENOSPC: the tmpfs
         is smaller than the capacity, or others filled it) lowers ``capacity_bytes``
         to the bytes held at that moment, so that later creates spill to make room
         (or are refused) instead of failing in the writer.  While it is lower than
         ``configured_capacity_bytes`` the shell reports the filesystem's free bytes
         (StoreSpaceMeasured) and the capacity grows back to held + free, at most to
         the configured capacity.
"""
from __future__ import annotations

import enum
from collections import OrderedDict, deque
from typing import Any, Callable, Optional

from ember.logic.fsm import InvalidTransition, LogEntry, TransitionLog, lookup
from ember.logic.node.file_pool import (
    POOL_FILES_MAX, POOL_IDLE_S, FilePool, PoolFileState, pool_key,
)
from ember.logic.node.object_owners import OwnerIndex
from ember.logic.node.object_events import (
    CreateAllowed,
    CreateRefused,
    DeleteObject,
    DeleteSpillFile,
    FileId,
    ObjectAccessed,
    ObjectCreateAborted,
    ObjectCreateRequested,
    ObjectFreed,
    ObjectId,
    ObjectPinned,
    ObjectPromoted,
    ObjectRecycled,
    ObjectRecycleFailed,
    ObjectRestored,
    ObjectRestoreFailed,
    ObjectRestoreRequested,
    ObjectSealed,
    ObjectSpilled,
    ObjectSpillFailed,
    ObjectTableEffect,
    ObjectTableEvent,
    ObjectUnpinned,
    OwnerDied,
    PoolTrimTimerFired,
    RecycleObject,
    StoreSpaceMeasured,
    RequestId,
    RestoreDone,
    RestoreFailed,
    RestoreObject,
    SchedulePoolTrim,
    SpillObject,
    TrimPoolFile,
)

__all__ = [
    "ObjectTable", "ObjectState", "PoolFileState", "ObjectTableError", "InvalidTransition",
    "ObjectCreateRequested", "ObjectSealed", "ObjectAccessed", "ObjectPinned",
    "ObjectUnpinned", "ObjectFreed", "ObjectSpilled", "ObjectSpillFailed",
    "ObjectRestoreRequested", "ObjectRestored", "ObjectRestoreFailed",
    "CreateAllowed", "CreateRefused", "SpillObject", "DeleteObject", "DeleteSpillFile",
    "RestoreObject", "RestoreDone", "RestoreFailed", "ObjectTableEvent", "ObjectTableEffect",
    "ObjectRecycled", "ObjectRecycleFailed", "PoolTrimTimerFired", "RecycleObject",
    "TrimPoolFile", "SchedulePoolTrim", "pool_key", "ObjectCreateAborted", "OwnerDied",
    "StoreSpaceMeasured", "ObjectPromoted",
]

POOL_FRACTION = 0.25     # default pool_max_bytes: this share of the capacity


class ObjectTableError(Exception):
    """An internal expectation was broken (e.g. more unpins than pins)."""


class ObjectState(enum.Enum):
    CREATING = "CREATING"
    SEALED = "SEALED"
    SPILLING = "SPILLING"
    SPILLED = "SPILLED"
    RESTORING = "RESTORING"


_IN_MEMORY = frozenset({ObjectState.CREATING, ObjectState.SEALED, ObjectState.SPILLING,
                        ObjectState.RESTORING})

TRANSITIONS: dict[tuple[ObjectState, ObjectState], str] = {
    (ObjectState.CREATING, ObjectState.SEALED): "2 sealed",
    (ObjectState.SEALED, ObjectState.SPILLING): "3 spilling to make room",
    (ObjectState.SPILLING, ObjectState.SPILLED): "4 spilled",
    (ObjectState.SPILLING, ObjectState.SEALED): "5 spill failed",
    (ObjectState.SPILLED, ObjectState.RESTORING): "6 restoring",
    (ObjectState.RESTORING, ObjectState.SPILLED): "7 restore failed",
    (ObjectState.RESTORING, ObjectState.SEALED): "8 restored",
    (ObjectState.SEALED, ObjectState.SPILLED): "9 evicted, spill file kept",
}


# --- records ---------------------------------------------------------------------------
class _Object:
    __slots__ = ("state", "size_bytes", "is_primary", "pins", "spill_url", "is_freed",
                 "restore_waiters", "has_spill_failed", "writer", "owner")

    def __init__(self, state: ObjectState, size_bytes: int, is_primary: bool,
                 writer: Any = None, owner: str = "") -> None:
        self.state = state
        self.size_bytes = size_bytes
        self.is_primary = is_primary
        self.writer = writer
        self.owner = owner
        self.pins = 0
        self.spill_url: Optional[str] = None
        self.is_freed = False  # freed while a spill/restore was in flight
        self.restore_waiters: list[RequestId] = []
        self.has_spill_failed = False  # not chosen to spill again until the disk may have room


class _Request:
    __slots__ = ("req_id", "object_id", "size_bytes", "is_primary", "is_restore", "cause_id",
                 "writer", "owner")

    def __init__(self, req_id: RequestId, object_id: ObjectId, size_bytes: int,
                 is_primary: bool, is_restore: bool, cause_id: str, writer: Any = None,
                 owner: str = "") -> None:
        self.req_id = req_id
        self.object_id = object_id
        self.size_bytes = size_bytes
        self.is_primary = is_primary
        self.is_restore = is_restore
        self.cause_id = cause_id
        self.writer = writer
        self.owner = owner


_Out = list[ObjectTableEffect]
LOG_ENTRIES_MAX = 10_000


class ObjectTable:
    """One node's store accounting.  See the module docstring for the rules."""

    def __init__(self, capacity_bytes: int, log_entries_max: int = LOG_ENTRIES_MAX, *,
                 pool_max_bytes: Optional[int] = None, pool_files_max: int = POOL_FILES_MAX,
                 pool_idle_s: float = POOL_IDLE_S) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.configured_capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self.spilled_bytes = 0
        self._spilling_bytes = 0
        self._spill_failed: set[ObjectId] = set()
        self._last_spill_error = ""
        self._objects: dict[ObjectId, _Object] = {}
        self._lru: OrderedDict[ObjectId, None] = OrderedDict()  # SEALED only, oldest first
        self._queue: deque[_Request] = deque()
        self._owners = OwnerIndex()
        self._log = TransitionLog(log_entries_max)
        self._pool = FilePool(int(capacity_bytes * POOL_FRACTION) if pool_max_bytes is None
                              else min(pool_max_bytes, capacity_bytes),
                              pool_files_max, pool_idle_s, self._log)
        self._now = 0.0
        self._handlers: dict[type, Callable[[Any, _Out], None]] = {
            ObjectCreateRequested: self._on_create_requested,
            ObjectSealed: self._on_sealed,
            ObjectAccessed: self._on_accessed,
            ObjectPinned: self._on_pinned,
            ObjectPromoted: self._on_promoted,
            ObjectUnpinned: self._on_unpinned,
            ObjectFreed: self._on_freed,
            ObjectSpilled: self._on_spilled,
            ObjectSpillFailed: self._on_spill_failed,
            ObjectRestoreRequested: self._on_restore_requested,
            ObjectRestored: self._on_restored,
            ObjectRestoreFailed: self._on_restore_failed,
            ObjectRecycled: self._on_recycled,
            ObjectRecycleFailed: self._on_recycle_failed,
            PoolTrimTimerFired: self._on_pool_timer,
            ObjectCreateAborted: self._on_create_aborted,
            OwnerDied: self._on_owner_died,
            StoreSpaceMeasured: self._on_space_measured,
        }

    # --- entry point --------------------------------------------------------------------
    def handle(self, event: ObjectTableEvent, now: float) -> list[ObjectTableEffect]:
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"ObjectTable cannot handle {event!r}")
        self._now = now
        out: _Out = []
        handler(event, out)
        return out

    # --- queries ------------------------------------------------------------------------
    @property
    def num_objects(self) -> int:
        """Objects known to the table, in shm or spilled."""
        return len(self._objects)

    @property
    def num_spilled_objects(self) -> int:
        """Objects that are on disk only (SPILLED or being restored); O(objects)."""
        return sum(1 for o in self._objects.values()
                   if o.state in (ObjectState.SPILLED, ObjectState.RESTORING))

    @property
    def available_bytes(self) -> int:
        """Free bytes: neither objects nor pooled files."""
        return self.capacity_bytes - self.used_bytes - self.pool_bytes

    @property
    def pool_bytes(self) -> int:
        """Bytes of pooled files, confirmed or not."""
        return self._pool.total_bytes

    @property
    def pool_max_bytes(self) -> int:
        return self._pool.max_bytes

    @property
    def pool_files_max(self) -> int:
        return self._pool.files_max

    @property
    def pool_idle_s(self) -> float:
        return self._pool.idle_s

    @property
    def num_pool_files(self) -> int:
        return len(self._pool)

    def pool_files(self) -> list[tuple[FileId, int, bool]]:
        """Pooled files, oldest first, as ``(file_id, size_bytes, is_confirmed)``."""
        return self._pool.files()

    @property
    def num_waiting_requests(self) -> int:
        return len(self._queue)

    def state_of(self, object_id: ObjectId) -> Optional[ObjectState]:
        obj = self._objects.get(object_id)
        return obj.state if obj is not None else None

    def size_of(self, object_id: ObjectId) -> Optional[int]:
        obj = self._objects.get(object_id)
        return obj.size_bytes if obj is not None else None

    def spill_url_of(self, object_id: ObjectId) -> Optional[str]:
        obj = self._objects.get(object_id)
        return obj.spill_url if obj is not None else None

    def pins_of(self, object_id: ObjectId) -> int:
        obj = self._objects.get(object_id)
        return obj.pins if obj is not None else 0

    def entries(self) -> list[tuple[ObjectId, ObjectState, int, bool]]:
        """Every object as ``(object_id, state, size_bytes, is_primary)``, for ``ember memory``."""
        return [(oid, obj.state, obj.size_bytes, obj.is_primary) for oid, obj in self._objects.items()]

    def objects_of(self, owner: str) -> list[ObjectId]:
        """The objects ``owner`` has in this table (rule 13), oldest first."""
        return self._owners.objects_of(owner)

    def story(self, object_id: ObjectId) -> list[LogEntry]:
        return self._log.story(object_id)

    # --- moves and log ------------------------------------------------------------------
    def _move(self, object_id: ObjectId, obj: _Object, to: ObjectState, cause_id: str) -> None:
        note = lookup(TRANSITIONS, f"object {object_id.hex()}", obj.state, to, cause_id)
        self._log.record(object_id, obj.state, to, cause_id, at_s=self._now, note=note)
        if obj.state is ObjectState.SEALED:
            self._lru.pop(object_id, None)
        was_in_memory = obj.state in _IN_MEMORY
        if obj.state is ObjectState.SPILLING:
            self._spilling_bytes -= obj.size_bytes
        obj.state = to
        if to is ObjectState.SEALED:
            self._lru[object_id] = None
        elif to is ObjectState.SPILLING:
            self._spilling_bytes += obj.size_bytes
        if was_in_memory and to not in _IN_MEMORY:
            self.used_bytes -= obj.size_bytes
        elif to in _IN_MEMORY and not was_in_memory:
            self.used_bytes += obj.size_bytes

    def _note(self, object_id: ObjectId, cause_id: str, note: str) -> None:
        obj = self._objects.get(object_id)
        state = obj.state if obj is not None else None
        self._log.record(object_id, state, state, cause_id, at_s=self._now, note=note)

    def _drop(self, object_id: ObjectId, obj: _Object, cause_id: str, note: str,
              out: _Out, may_recycle: bool = False) -> None:
        """Forget the object, deleting its spill file and its shm file (or pooling the
        shm file: rule 8)."""
        if obj.state is ObjectState.SEALED:
            self._lru.pop(object_id, None)
        if obj.state is ObjectState.SPILLING:
            self._spilling_bytes -= obj.size_bytes
        if obj.state in _IN_MEMORY:
            self.used_bytes -= obj.size_bytes
            file_id = None
            if may_recycle and obj.state is ObjectState.SEALED:
                file_id = self._pool.add(obj.size_bytes, obj.writer, cause_id, self._now, out)
            if file_id is None:
                out.append(DeleteObject(object_id, cause_id))
            else:
                out.append(RecycleObject(object_id, file_id, cause_id))
                note = f"{note}; file pooled as {pool_key(file_id)}"
        if obj.spill_url is not None:
            self.spilled_bytes -= obj.size_bytes
            out.append(DeleteSpillFile(obj.spill_url, cause_id))
            self._forget_spill_failures()
        self._spill_failed.discard(object_id)
        for req_id in obj.restore_waiters:
            out.append(RestoreFailed(req_id, object_id, "freed", cause_id))
        if obj.restore_waiters and self._queue:
            self._queue = deque(r for r in self._queue if r.object_id != object_id)
        self._owners.remove(obj.owner, object_id)
        del self._objects[object_id]
        self._log.record(object_id, obj.state, None, cause_id, at_s=self._now, note=note)

    # --- handlers ------------------------------------------------------------------------
    def _on_create_requested(self, ev: ObjectCreateRequested, out: _Out) -> None:
        if ev.size_bytes < 0:
            raise ObjectTableError(f"negative size {ev.size_bytes} for {ev.object_id.hex()}")
        if ev.object_id in self._objects or any(r.object_id == ev.object_id and not r.is_restore
                                                for r in self._queue):
            self._note(ev.object_id, ev.cause_id, "create refused: exists")
            out.append(self._refusal(ev.req_id, "exists", ev.size_bytes, ev.cause_id))
            return
        if ev.size_bytes > self.capacity_bytes:
            self._note(ev.object_id, ev.cause_id, "create refused: larger than the store")
            out.append(self._refusal(ev.req_id, "too_large", ev.size_bytes, ev.cause_id))
            return
        self._queue.append(_Request(ev.req_id, ev.object_id, ev.size_bytes, ev.is_primary,
                                    False, ev.cause_id, ev.writer, ev.owner))
        self._admit(out)

    def _on_sealed(self, ev: ObjectSealed, out: _Out) -> None:
        obj = self._objects.get(ev.object_id)
        if obj is None or obj.state is not ObjectState.CREATING:
            self._note(ev.object_id, ev.cause_id, "seal ignored: not being created")
            return
        self._move(ev.object_id, obj, ObjectState.SEALED, ev.cause_id)
        if obj.is_freed:  # rule 14: the owner's free overtook the seal
            self._drop(ev.object_id, obj, ev.cause_id, "freed while being written", out,
                       may_recycle=True)
            self._admit(out)

    def _on_create_aborted(self, ev: ObjectCreateAborted, out: _Out) -> None:
        obj = self._objects.get(ev.object_id)
        if obj is None or obj.state is not ObjectState.CREATING:
            self._note(ev.object_id, ev.cause_id, "abort ignored: not being created")
            return
        self._drop(ev.object_id, obj, ev.cause_id, "create aborted", out)
        if ev.is_out_of_space:  # rule 15
            held = self.used_bytes + self.pool_bytes
            if held < self.capacity_bytes:
                self._note(ev.object_id, ev.cause_id, f"out of space: capacity lowered from "
                                                      f"{self.capacity_bytes} to {held} bytes")
                self.capacity_bytes = held
        self._admit(out)

    def _on_space_measured(self, ev: StoreSpaceMeasured, out: _Out) -> None:
        held = self.used_bytes + self.pool_bytes
        capacity = min(self.configured_capacity_bytes, max(self.capacity_bytes,
                                                           held + max(0, ev.free_bytes)))
        if capacity != self.capacity_bytes:
            self._log.record("capacity", None, None, ev.cause_id, at_s=self._now,
                             note=f"capacity {self.capacity_bytes} -> {capacity} bytes")
            self.capacity_bytes = capacity
            self._admit(out)

    def _on_owner_died(self, ev: OwnerDied, out: _Out) -> None:
        for object_id in self._owners.objects_of(ev.owner):
            self._on_freed(ObjectFreed(object_id, ev.cause_id), out)

    def _on_accessed(self, ev: ObjectAccessed, out: _Out) -> None:
        if ev.object_id in self._lru:
            self._lru.move_to_end(ev.object_id)

    def _on_pinned(self, ev: ObjectPinned, out: _Out) -> None:
        obj = self._objects.get(ev.object_id)
        if obj is None:
            self._note(ev.object_id, ev.cause_id, "pin ignored: unknown object")
            return
        obj.pins += 1

    def _on_promoted(self, ev: ObjectPromoted, out: _Out) -> None:
        obj = self._objects.get(ev.object_id)
        if obj is None or obj.is_freed or obj.state not in (ObjectState.SEALED, ObjectState.SPILLED):
            self._note(ev.object_id, ev.cause_id, "promotion ignored: no sealed copy here")
            return
        obj.is_primary = True
        if obj.owner != ev.owner:
            self._owners.remove(obj.owner, ev.object_id)
            obj.owner = ev.owner
            self._owners.add(ev.owner, ev.object_id)
        self._note(ev.object_id, ev.cause_id, "promoted to primary")

    def _on_unpinned(self, ev: ObjectUnpinned, out: _Out) -> None:
        obj = self._objects.get(ev.object_id)
        if obj is None:
            self._note(ev.object_id, ev.cause_id, "unpin ignored: unknown object")
            return
        if obj.pins == 0:
            raise ObjectTableError(f"object {ev.object_id.hex()} unpinned more than pinned "
                                   f"(cause {ev.cause_id!r})")
        obj.pins -= 1

    def _on_freed(self, ev: ObjectFreed, out: _Out) -> None:
        obj = self._objects.get(ev.object_id)
        if obj is None:
            for req in [r for r in self._queue if r.object_id == ev.object_id]:
                self._queue.remove(req)
                out.append(self._refusal(req.req_id, "freed", req.size_bytes, ev.cause_id)
                           if not req.is_restore else
                           RestoreFailed(req.req_id, ev.object_id, "freed", ev.cause_id))
            self._note(ev.object_id, ev.cause_id, "free of an unknown object")
            self._admit(out)
            return
        if obj.state in (ObjectState.SPILLING, ObjectState.RESTORING):
            obj.is_freed = True  # finish the I/O in flight first, then forget it
            self._note(ev.object_id, ev.cause_id, "freed; waiting for I/O in flight")
            return
        if obj.state is ObjectState.CREATING:
            obj.is_freed = True  # rule 14: its writer still writes into these bytes
            self._note(ev.object_id, ev.cause_id, "freed; waiting for the writer's seal")
            return
        self._drop(ev.object_id, obj, ev.cause_id, "freed", out, may_recycle=True)
        self._admit(out)

    def _on_spilled(self, ev: ObjectSpilled, out: _Out) -> None:
        obj = self._known(ev.object_id, ev.cause_id, ObjectState.SPILLING, ObjectState.SPILLED)
        self._move(ev.object_id, obj, ObjectState.SPILLED, ev.cause_id)
        obj.spill_url = ev.url
        self.spilled_bytes += obj.size_bytes
        self._forget_spill_failures()
        if obj.is_freed:
            self._drop(ev.object_id, obj, ev.cause_id, "freed during spill", out)
        elif obj.restore_waiters:
            self._enqueue_restore(ev.object_id, obj, ev.cause_id)
        self._admit(out)

    def _on_spill_failed(self, ev: ObjectSpillFailed, out: _Out) -> None:
        obj = self._known(ev.object_id, ev.cause_id, ObjectState.SPILLING, ObjectState.SEALED)
        self._move(ev.object_id, obj, ObjectState.SEALED, ev.cause_id)
        self._note(ev.object_id, ev.cause_id, f"spill failed: {ev.reason}")
        obj.has_spill_failed = True
        self._spill_failed.add(ev.object_id)
        self._last_spill_error = ev.reason
        waiters, obj.restore_waiters = obj.restore_waiters, []
        out.extend(RestoreDone(req_id, ev.cause_id) for req_id in waiters)
        if obj.is_freed:
            self._drop(ev.object_id, obj, ev.cause_id, "freed during spill", out, may_recycle=True)
        self._admit(out)

    def _on_restore_requested(self, ev: ObjectRestoreRequested, out: _Out) -> None:
        obj = self._objects.get(ev.object_id)
        if obj is None or obj.is_freed:
            self._note(ev.object_id, ev.cause_id, "restore of an unknown object")
            out.append(RestoreFailed(ev.req_id, ev.object_id, "unknown", ev.cause_id))
            return
        if obj.state in (ObjectState.SEALED, ObjectState.CREATING):
            if obj.state is ObjectState.SEALED:
                self._lru.move_to_end(ev.object_id)
            out.append(RestoreDone(ev.req_id, ev.cause_id))
            return
        first = not obj.restore_waiters
        obj.restore_waiters.append(ev.req_id)
        if obj.state is ObjectState.SPILLED and first:
            self._enqueue_restore(ev.object_id, obj, ev.cause_id)
            self._admit(out)
        # SPILLING: enqueued when the spill reports back.  RESTORING: already queued.

    def _on_restored(self, ev: ObjectRestored, out: _Out) -> None:
        obj = self._known(ev.object_id, ev.cause_id, ObjectState.RESTORING, ObjectState.SEALED)
        self._move(ev.object_id, obj, ObjectState.SEALED, ev.cause_id)
        waiters, obj.restore_waiters = obj.restore_waiters, []
        if obj.is_freed:
            obj.restore_waiters = waiters  # answered with RestoreFailed("freed")
            self._drop(ev.object_id, obj, ev.cause_id, "freed during restore", out,
                       may_recycle=True)
            self._admit(out)
            return
        out.extend(RestoreDone(req_id, ev.cause_id) for req_id in waiters)

    def _on_restore_failed(self, ev: ObjectRestoreFailed, out: _Out) -> None:
        obj = self._known(ev.object_id, ev.cause_id, ObjectState.RESTORING, ObjectState.SPILLED)
        self._move(ev.object_id, obj, ObjectState.SPILLED, ev.cause_id)
        waiters, obj.restore_waiters = obj.restore_waiters, []
        out.extend(RestoreFailed(r, ev.object_id, ev.reason or "io", ev.cause_id) for r in waiters)
        if obj.is_freed:
            self._drop(ev.object_id, obj, ev.cause_id, "freed during restore", out)
        self._admit(out)

    # --- the file pool (rules 8-12; the pool itself is ``FilePool``) -------------------------
    def _on_recycled(self, ev: ObjectRecycled, out: _Out) -> None:
        self._pool.confirm(ev.file_id, ev.cause_id, self._now, out)
        self._admit(out)

    def _on_recycle_failed(self, ev: ObjectRecycleFailed, out: _Out) -> None:
        self._pool.discard_unconfirmed(ev.file_id, ev.reason, ev.cause_id, self._now)
        self._admit(out)

    def _on_pool_timer(self, ev: PoolTrimTimerFired, out: _Out) -> None:
        self._pool.on_timer(ev.cause_id, self._now, out)

    def _pick_pool_file(self, req: _Request) -> Optional[FileId]:
        """The pooled file a create should take (rule 10), or None."""
        return None if req.is_restore else self._pool.pick(req.size_bytes, req.writer)

    def _known(self, object_id: ObjectId, cause_id: str, expected: ObjectState,
               to: ObjectState) -> _Object:
        """The record of an object whose I/O this table ordered: it must be ``expected``."""
        obj = self._objects.get(object_id)
        if obj is None:
            raise InvalidTransition(f"unknown object {object_id.hex()}", None, to, cause_id)
        if obj.state is not expected:
            raise InvalidTransition(f"object {object_id.hex()}", obj.state, to, cause_id)
        return obj

    # --- admission -----------------------------------------------------------------------
    def _enqueue_restore(self, object_id: ObjectId, obj: _Object, cause_id: str) -> None:
        self._queue.append(_Request(None, object_id, obj.size_bytes, obj.is_primary, True,
                                    cause_id))

    def _refusal(self, req_id: RequestId, reason: str, size_bytes: int,
                 cause_id: str, detail: str = "") -> CreateRefused:
        return CreateRefused(req_id, reason, size_bytes, self.capacity_bytes,
                             self.used_bytes + self.pool_bytes, cause_id, detail)

    def _forget_spill_failures(self) -> None:
        """The disk may have room again: objects whose spill failed may be chosen again."""
        for object_id in self._spill_failed:
            self._objects[object_id].has_spill_failed = False
        self._spill_failed.clear()

    def _admit(self, out: _Out) -> None:
        """Admit waiting requests in order while they fit; make room for the first one."""
        while self._queue:
            req = self._queue[0]
            pick = self._pick_pool_file(req)
            reused = self._pool.size_of(pick) if pick is not None else 0
            missing = req.size_bytes - self.available_bytes - reused
            if missing <= 0:
                self._queue.popleft()
                self._grant(req, pick, out)
                continue
            spare = self._pool.spare_bytes(pick)
            shortfall = missing - spare - self._spilling_bytes - self._pool.recycling_bytes
            victims = self._choose_victims(shortfall) if shortfall > 0 else []
            if victims is None:
                self._queue.popleft()
                is_disk = (bool(self._spill_failed)
                           and self._choose_victims(shortfall, True) is not None)
                self._refuse(req, "spill_failed" if is_disk else "full", out)
                continue
            self._pool.trim_for(missing, pick, req.cause_id, self._now, out)
            for object_id in victims:
                self._evict(object_id, req.cause_id, out)
            if req.size_bytes > self.available_bytes + reused:
                return  # wait for the spills (or pool confirmations) in flight

    def _grant(self, req: _Request, pick: Optional[FileId], out: _Out) -> None:
        if req.is_restore:
            obj = self._objects[req.object_id]
            self._move(req.object_id, obj, ObjectState.RESTORING, req.cause_id)
            assert obj.spill_url is not None
            out.append(RestoreObject(req.object_id, obj.spill_url, req.cause_id))
            return
        note = "1 create allowed"
        if pick is not None:
            size = self._pool.take(pick, req.object_id.hex(), req.cause_id, self._now)
            note = f"1 create allowed into {pool_key(pick)} ({size} bytes)"
        obj = _Object(ObjectState.CREATING, req.size_bytes, req.is_primary, req.writer,
                      req.owner)
        self._objects[req.object_id] = obj
        self._owners.add(req.owner, req.object_id)
        self.used_bytes += req.size_bytes
        self._log.record(req.object_id, None, ObjectState.CREATING, req.cause_id,
                         at_s=self._now, note=note)
        out.append(CreateAllowed(req.req_id, req.cause_id, pick))

    def _refuse(self, req: _Request, reason: str, out: _Out) -> None:
        detail = self._last_spill_error if reason == "spill_failed" else ""
        self._note(req.object_id, req.cause_id,
                   f"refused: store full, nothing left to spill ({reason} {detail})".rstrip())
        if not req.is_restore:
            out.append(self._refusal(req.req_id, reason, req.size_bytes, req.cause_id, detail))
            return
        obj = self._objects[req.object_id]
        waiters, obj.restore_waiters = obj.restore_waiters, []
        why = f"{reason}: {detail}" if detail else reason
        out.extend(RestoreFailed(r, req.object_id, why, req.cause_id) for r in waiters)

    def _choose_victims(self, shortfall_bytes: int,
                        is_spill_failed_ok: bool = False) -> Optional[list[ObjectId]]:
        """Unpinned SEALED objects whose sizes cover the shortfall, or None if impossible.

        Primaries whose spill failed (and that have no spill file) are skipped unless
        ``is_spill_failed_ok``.
        """
        chosen: list[ObjectId] = []
        total = 0
        for want_primary in (False, True):
            for object_id in self._lru:
                obj = self._objects[object_id]
                if obj.pins or obj.is_primary is not want_primary:
                    continue
                if obj.has_spill_failed and obj.spill_url is None and not is_spill_failed_ok:
                    continue
                chosen.append(object_id)
                total += obj.size_bytes
                if total >= shortfall_bytes:
                    return chosen
        return None

    def _evict(self, object_id: ObjectId, cause_id: str, out: _Out) -> None:
        obj = self._objects[object_id]
        if not obj.is_primary:
            self._drop(object_id, obj, cause_id, "secondary copy evicted", out)
        elif obj.spill_url is not None:
            self._move(object_id, obj, ObjectState.SPILLED, cause_id)
            out.append(DeleteObject(object_id, cause_id))
        else:
            self._move(object_id, obj, ObjectState.SPILLING, cause_id)
            out.append(SpillObject(object_id, cause_id))

    # --- invariants -----------------------------------------------------------------------
    def check_invariants(self) -> None:
        used = sum(o.size_bytes for o in self._objects.values() if o.state in _IN_MEMORY)
        spilling = sum(o.size_bytes for o in self._objects.values()
                       if o.state is ObjectState.SPILLING)
        spilled = sum(o.size_bytes for o in self._objects.values() if o.spill_url is not None)
        sealed = [oid for oid, o in self._objects.items() if o.state is ObjectState.SEALED]
        problems = []
        if used != self.used_bytes:
            problems.append(f"used_bytes {self.used_bytes} != sum of sizes {used}")
        if self.used_bytes + self.pool_bytes > self.capacity_bytes:
            problems.append(f"used_bytes {self.used_bytes} + pool_bytes {self.pool_bytes} > "
                            f"capacity {self.capacity_bytes}")
        problems.extend(self._pool.problems())
        problems.extend(self._owners.problems((oid, o.owner) for oid, o in self._objects.items()))
        if spilling != self._spilling_bytes:
            problems.append(f"spilling bytes {self._spilling_bytes} != {spilling}")
        if spilled != self.spilled_bytes:
            problems.append(f"spilled_bytes {self.spilled_bytes} != {spilled}")
        if sorted(sealed) != sorted(self._lru):
            problems.append("LRU list does not hold exactly the SEALED objects")
        for oid, o in self._objects.items():
            if o.pins < 0:
                problems.append(f"{oid.hex()} has {o.pins} pins")
            if o.state in (ObjectState.SPILLED, ObjectState.RESTORING) and o.spill_url is None:
                problems.append(f"{oid.hex()} is {o.state.name} without a spill url")
            if o.restore_waiters and o.state in (ObjectState.SEALED, ObjectState.CREATING):
                problems.append(f"{oid.hex()} is {o.state.name} with restore waiters")
        flagged = {oid for oid, o in self._objects.items() if o.has_spill_failed}
        if flagged != self._spill_failed:
            problems.append("spill-failed flags do not match the spill-failed set")
        if self._queue:
            first = self._queue[0]
            pick = self._pick_pool_file(first)
            reused = self._pool.size_of(pick) if pick is not None else 0
            if first.size_bytes <= self.available_bytes + reused:
                problems.append("the first waiting request fits but was not admitted")
        if problems:
            raise ObjectTableError("; ".join(problems))
