"""Ray's ID classes (``ember.ActorID``, ``ember.NodeID`` ...): immutable byte strings with a type.

Each class has ``binary()``, ``hex()``, ``from_binary()``, ``from_hex()``, ``from_random()``,
``nil()``, ``is_nil()``, ``size()``, equality and hashing (an ID equals only an ID of the same
class with the same bytes), and pickles as a plain value.  The sizes are ember's, not Ray's
(ember's ids are shorter): a job id is 4 bytes, an object id 20 (its task's 16 and a 4-byte
index), every other id 16.  ``nil()`` is all ``0xff`` bytes, as in Ray.

``ember.ObjectID`` is an id only; ``ember.ObjectRef`` (which also carries its owner and takes
part in reference counting) is a separate class, see ``ember/object_ref.py``.
"""
from __future__ import annotations

import os
from typing import Any, Optional, TypeVar

__all__ = ["BaseID", "UniqueID", "JobID", "ActorID", "ActorClassID", "TaskID", "ObjectID", "NodeID",
           "WorkerID", "FunctionID", "PlacementGroupID", "ClusterID"]

_T = TypeVar("_T", bound="BaseID")
_DEFAULT_SIZE = 16


class BaseID:
    """Bytes with a type.  Subclasses set ``_SIZE`` (``None``: any non-empty length)."""

    __slots__ = ("_id",)
    _SIZE: Optional[int] = _DEFAULT_SIZE

    def __init__(self, id: bytes) -> None:  # noqa: A002 - Ray's parameter name
        if not isinstance(id, (bytes, bytearray)):
            raise TypeError(f"Unsupported type: {type(id).__name__}; {type(self).__name__} takes bytes")
        id = bytes(id)
        expected = self._SIZE
        if expected is not None and len(id) != expected:
            raise ValueError(f"ID string needs to have length {expected}, got {len(id)}")
        if expected is None and not id:
            raise ValueError(f"{type(self).__name__} cannot be empty")
        self._id = id

    # --- constructors -------------------------------------------------------------------------------
    @classmethod
    def size(cls) -> int:
        return cls._SIZE if cls._SIZE is not None else _DEFAULT_SIZE

    @classmethod
    def from_binary(cls: type[_T], id_bytes: bytes) -> _T:
        return cls(id_bytes)

    @classmethod
    def from_hex(cls: type[_T], hex_id: str) -> _T:
        if isinstance(hex_id, bytes):
            hex_id = hex_id.decode()
        if not isinstance(hex_id, str):
            raise TypeError(f"from_hex() takes a hex string, got {type(hex_id).__name__}")
        try:
            raw = bytes.fromhex(hex_id)
        except ValueError:
            raise ValueError(f"{hex_id!r} is not a hex string") from None
        return cls(raw)

    @classmethod
    def from_random(cls: type[_T]) -> _T:
        return cls(os.urandom(cls.size()))

    @classmethod
    def nil(cls: type[_T]) -> _T:
        return cls(b"\xff" * cls.size())

    # --- values -------------------------------------------------------------------------------------
    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def is_nil(self) -> bool:
        return self._id == b"\xff" * len(self._id)

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other._id == self._id

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._id))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._id.hex()})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        return (type(self), (self._id,))


class UniqueID(BaseID):
    __slots__ = ()


class JobID(BaseID):
    __slots__ = ()
    _SIZE = 4

    @classmethod
    def from_int(cls, value: int) -> "JobID":
        return cls(int(value).to_bytes(4, "little"))

    def int(self) -> int:
        return int.from_bytes(self._id, "little")


class ActorID(BaseID):
    __slots__ = ()


class ActorClassID(BaseID):
    __slots__ = ()


class TaskID(BaseID):
    __slots__ = ()


class ObjectID(BaseID):
    __slots__ = ()
    _SIZE = 20

    def task_id(self) -> TaskID:
        return TaskID(self._id[:16])


class NodeID(BaseID):
    __slots__ = ()


class WorkerID(BaseID):
    __slots__ = ()


class FunctionID(BaseID):
    __slots__ = ()


class PlacementGroupID(BaseID):
    """18 bytes: 14 random, then 4 of the creating job's id (Ray's layout)."""
    __slots__ = ()
    _SIZE = 18

    @classmethod
    def from_random(cls, job_id: bytes = b"") -> "PlacementGroupID":  # type: ignore[override]
        return cls(os.urandom(14) + (job_id + b"\x00" * 4)[:4])


class ClusterID(BaseID):
    __slots__ = ()
    _SIZE = None
