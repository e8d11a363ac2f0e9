"""ObjectRef: the id of an immutable object plus the address of its owner.

An ObjectRef is a plain value: hashable, printable, picklable.  Creating and dropping
refs only posts events to the process's core worker (when one is running); all
reference counting decisions live in the owner's logic.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

# Set by the core worker when it starts; called as hook(event, ref). Events:
# "add" (a new local ref), "drop" (a local ref was garbage collected),
# "deserialized" (a ref arrived inside an object or argument: a borrow).
_ref_hook: Optional[Callable[[str, "ObjectRef"], None]] = None


def set_ref_hook(hook: Optional[Callable[[str, "ObjectRef"], None]]) -> None:
    global _ref_hook
    _ref_hook = hook


# Set by the core worker while one runs in this process: it turns refs into futures.
# (A registration rather than an import, so that this module stays below the core worker.)
_futures: Any = None


def set_future_source(source: Any) -> None:
    global _futures
    _futures = source


def _future_source() -> Any:
    if _futures is None:
        from ember.exceptions import RaySystemError
        raise RaySystemError("ember.init() has not been called in this process")
    return _futures


_OBJECT_ID_BYTES = 20  # the creating task's 16-byte id and a 4-byte return index


class ObjectRef:
    __slots__ = ("_id", "_owner", "_tracked", "__weakref__")

    def __init__(self, object_id: bytes, owner_address: str = "", *, _track: bool = True) -> None:
        self._id = object_id
        self._owner = owner_address
        self._tracked = _track and _ref_hook is not None
        if self._tracked:
            _ref_hook("add", self)  # type: ignore[misc]

    # --- identity -------------------------------------------------------------
    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    @property
    def owner_address(self) -> str:
        return self._owner

    def task_id(self) -> bytes:
        return self._id[:-4]

    # Ray's BaseID constructors.  These refs have no owner and take no part in reference counting:
    # ``ember.get`` on one fails (use ``ember.ObjectID`` for a plain id).
    @classmethod
    def nil(cls) -> "ObjectRef":
        return cls(b"\xff" * _OBJECT_ID_BYTES, "", _track=False)

    @classmethod
    def from_random(cls) -> "ObjectRef":
        import os
        return cls(os.urandom(_OBJECT_ID_BYTES), "", _track=False)

    @classmethod
    def from_binary(cls, id_bytes: bytes) -> "ObjectRef":
        if not isinstance(id_bytes, bytes) or len(id_bytes) != _OBJECT_ID_BYTES:
            raise ValueError(f"ID string needs to have length {_OBJECT_ID_BYTES}")
        return cls(id_bytes, "", _track=False)

    @classmethod
    def from_hex(cls, hex_id: str) -> "ObjectRef":
        return cls.from_binary(bytes.fromhex(hex_id))

    def is_nil(self) -> bool:
        return self._id == b"\xff" * len(self._id)

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    # --- lifetime ---------------------------------------------------------------
    def __del__(self) -> None:
        if self._tracked and _ref_hook is not None:
            try:
                _ref_hook("drop", self)
            except Exception:
                pass

    def __reduce__(self) -> Any:
        return (_deserialize_ref, (self._id, self._owner))

    # --- asyncio ----------------------------------------------------------------
    def future(self) -> Any:
        """A concurrent.futures.Future resolved with the object's value."""
        return _future_source().as_future(self)

    def __await__(self) -> Any:
        return _future_source().as_asyncio_future(self).__await__()


def _deserialize_ref(object_id: bytes, owner_address: str) -> ObjectRef:
    ref = ObjectRef(object_id, owner_address)
    if _ref_hook is not None:
        _ref_hook("deserialized", ref)
    return ref
