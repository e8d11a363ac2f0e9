"""Events (facts) and effects (orders) of ``ember.logic.node.object_table``.  Pure.

Kept apart from the table so each module stays small; import them from
``object_table``, which re-exports every name here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from ember.logic.effects import Effect

ObjectId = bytes
RequestId = Any  # opaque to the table: whatever the shell uses to answer its caller

__all__ = [
    "ObjectId", "RequestId", "ObjectTableEvent", "ObjectTableEffect",
    "ObjectCreateRequested", "ObjectSealed", "ObjectAccessed", "ObjectPinned",
    "ObjectUnpinned", "ObjectFreed", "ObjectSpilled", "ObjectSpillFailed",
    "ObjectRestoreRequested", "ObjectRestored", "ObjectRestoreFailed",
    "CreateAllowed", "CreateRefused", "SpillObject", "DeleteObject", "DeleteSpillFile",
    "RestoreObject", "RestoreDone", "RestoreFailed",
    "ObjectRecycled", "ObjectRecycleFailed", "PoolTrimTimerFired",
    "RecycleObject", "TrimPoolFile", "SchedulePoolTrim", "FileId",
    "ObjectCreateAborted", "OwnerDied", "StoreSpaceMeasured",
]

FileId = int  # a pooled file's number, given by the table (the shell names it "pool.<id>")


# --- events (facts) --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ObjectCreateRequested:
    """``writer``: who will write it (any hashable, e.g. a pid); a pooled file last
    written by the same writer is preferred (that writer may still have it mapped).
    ``owner``: the address of the process that owns the object ("" for copies pulled
    from other nodes); ``OwnerDied`` frees what an owner left here."""
    req_id: RequestId
    object_id: ObjectId
    size_bytes: int
    is_primary: bool
    cause_id: str = ""
    writer: Any = None
    owner: str = ""


@dataclass(frozen=True, slots=True)
class ObjectSealed:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectAccessed:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectPinned:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectUnpinned:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectFreed:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectCreateAborted:
    """The writer of a CREATING object will never seal it (it died, its write failed, a
    pull failed).  ``is_out_of_space``: the write failed because the store's filesystem
    was full (ENOSPC) before the capacity was reached."""
    object_id: ObjectId
    cause_id: str = ""
    is_out_of_space: bool = False


@dataclass(frozen=True, slots=True)
class ObjectPromoted:
    """The owner made this node's copy the object's primary (the node that held the primary
    died): it is spilled rather than dropped to make room, and freed by ``owner``."""
    object_id: ObjectId
    owner: str
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class OwnerDied:
    """The process at ``owner`` (an address) is gone: nobody can free its objects any
    more, so every object it owns here is freed."""
    owner: str
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class StoreSpaceMeasured:
    """The store's filesystem has ``free_bytes`` free (besides what the store holds);
    measured by the shell while the capacity is below the configured one (rule 15)."""
    free_bytes: int
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectSpilled:
    object_id: ObjectId
    url: str
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectSpillFailed:
    object_id: ObjectId
    reason: str = ""
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectRestoreRequested:
    req_id: RequestId
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectRestored:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectRestoreFailed:
    object_id: ObjectId
    reason: str = ""
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectRecycled:
    """The freed object's file was unmapped everywhere and is now pooled file ``file_id``."""
    file_id: FileId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectRecycleFailed:
    """The freed object's file could not be pooled (a process still maps it, or it was
    gone); the shell deleted it instead."""
    file_id: FileId
    reason: str = ""
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class PoolTrimTimerFired:
    """The time asked for by ``SchedulePoolTrim`` has come."""
    cause_id: str = ""


ObjectTableEvent = Union[
    ObjectCreateRequested, ObjectSealed, ObjectAccessed, ObjectPinned, ObjectUnpinned,
    ObjectFreed, ObjectSpilled, ObjectSpillFailed, ObjectRestoreRequested, ObjectRestored,
    ObjectRestoreFailed, ObjectRecycled, ObjectRecycleFailed, PoolTrimTimerFired,
    ObjectCreateAborted, OwnerDied, StoreSpaceMeasured,
]


# --- effects (orders) ------------------------------------------------------------------
_Effect = Effect


@dataclass(frozen=True, slots=True)
class CreateAllowed(_Effect):
    """The creator may write the object now; its bytes are reserved.  With
    ``recycled_file_id`` it writes into that pooled file (pages already in memory),
    resized to the object's size, instead of a new one."""
    req_id: RequestId
    cause_id: str = ""
    recycled_file_id: Optional[FileId] = None


@dataclass(frozen=True, slots=True)
class CreateRefused(_Effect):
    """No room even after spilling everything spillable (reason "full"); or
    "spill_failed" (room could only come from objects whose spill failed; ``detail``
    names the failure), "too_large", "exists" (already in this store: the shell may
    treat it as done), "freed"."""
    req_id: RequestId
    reason: str
    needed_bytes: int
    capacity_bytes: int
    used_bytes: int
    cause_id: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SpillObject(_Effect):
    """Copy the object to disk, unlink it from shm, report ObjectSpilled(url)."""
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class DeleteObject(_Effect):
    """Unlink the object from shm (readers that mapped it keep their pages)."""
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class DeleteSpillFile(_Effect):
    url: str
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class RestoreObject(_Effect):
    """Copy the spill file back into shm (room is reserved), report ObjectRestored."""
    object_id: ObjectId
    url: str
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class RestoreDone(_Effect):
    """The object is in shm: the requester may open it."""
    req_id: RequestId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class RestoreFailed(_Effect):
    """The object could not be brought back ("unknown", "full", "freed", or an I/O reason)."""
    req_id: RequestId
    object_id: ObjectId
    reason: str
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class RecycleObject(_Effect):
    """If no process maps the freed object's file, make it pooled file ``file_id`` and
    report ObjectRecycled; else delete it (as DeleteObject) and report ObjectRecycleFailed."""
    object_id: ObjectId
    file_id: FileId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class TrimPoolFile(_Effect):
    """Delete pooled file ``file_id`` (its pages go back to the system)."""
    file_id: FileId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class SchedulePoolTrim(_Effect):
    """Report PoolTrimTimerFired at ``at_s`` (the clock of ``handle``'s ``now``)."""
    at_s: float
    cause_id: str = ""


ObjectTableEffect = Union[CreateAllowed, CreateRefused, SpillObject, DeleteObject,
                          DeleteSpillFile, RestoreObject, RestoreDone, RestoreFailed,
                          RecycleObject, TrimPoolFile, SchedulePoolTrim]
