"""The reference table's events (facts) and effects (orders).

Split out of ``references.py`` (which re-exports every name here) to keep modules small;
the rules and the table live there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ember.logic.effects import Effect

__all__ = [
    "ObjectId", "TaskId", "Address", "RefAdded", "RefDropped", "TaskSubmittedWithArgs",
    "TaskArgsReleased", "ObjectContainsRefs", "BorrowerAdded", "BorrowerRemoved",
    "BorrowerDied", "BorrowedRefReceived", "LineageRecorded", "ObjectInlined",
    "ObjectLocationAdded", "ObjectLocationRemoved", "NodeRemoved", "ReferenceEvent",
    "FreeObject", "NotifyOwnerBorrowing", "NotifyOwnerReleased", "ReleaseLineage",
    "RecoverObject", "ReferenceEffect",
]

ObjectId = bytes
TaskId = bytes
Address = str


# --- events (facts) ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RefAdded:
    object_id: ObjectId
    owner: Address
    is_owned: bool
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class RefDropped:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskSubmittedWithArgs:
    task_id: TaskId
    object_ids: tuple[ObjectId, ...]
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskArgsReleased:
    task_id: TaskId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectContainsRefs:
    outer_id: ObjectId
    inner_ids: tuple[ObjectId, ...]
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class BorrowerAdded:
    object_id: ObjectId
    borrower_address: Address
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class BorrowerRemoved:
    object_id: ObjectId
    borrower_address: Address
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class BorrowerDied:
    borrower_address: Address
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class BorrowedRefReceived:
    object_id: ObjectId
    owner: Address
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class LineageRecorded:
    object_id: ObjectId
    task_id: TaskId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectInlined:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectLocationAdded:
    object_id: ObjectId
    node_address: Address
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ObjectLocationRemoved:
    object_id: ObjectId
    node_address: Address
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    node_address: Address
    cause_id: str = ""


ReferenceEvent = Union[
    RefAdded, RefDropped, TaskSubmittedWithArgs, TaskArgsReleased, ObjectContainsRefs,
    BorrowerAdded, BorrowerRemoved, BorrowerDied, BorrowedRefReceived, LineageRecorded,
    ObjectInlined, ObjectLocationAdded, ObjectLocationRemoved, NodeRemoved,
]


# --- effects (orders) --------------------------------------------------------------------
_Effect = Effect


@dataclass(frozen=True, slots=True)
class FreeObject(_Effect):
    """Delete the object's value from this process and from the stores at plasma_nodes."""
    object_id: ObjectId
    plasma_nodes: frozenset[Address]
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class NotifyOwnerBorrowing(_Effect):
    """Tell the owner this process now holds the object (await its ack: see the doc)."""
    owner: Address
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class NotifyOwnerReleased(_Effect):
    """Tell the owner this process no longer holds the object."""
    owner: Address
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseLineage(_Effect):
    """No object pins this task's spec for reconstruction any more."""
    task_id: TaskId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class RecoverObject(_Effect):
    """A referenced owned object lost its last stored copy: rebuild it from lineage_task_id
    (None: no lineage, so it is lost)."""
    object_id: ObjectId
    lineage_task_id: Optional[TaskId]
    cause_id: str = ""


ReferenceEffect = Union[
    FreeObject, NotifyOwnerBorrowing, NotifyOwnerReleased, ReleaseLineage, RecoverObject]
