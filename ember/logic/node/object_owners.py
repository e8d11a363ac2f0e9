"""Which owner holds which objects in one node's store.  Pure: no I/O.

Rule 13. Every object created for an owner (``ObjectCreateRequested.owner``, the
         owner's address) is listed under that owner until it leaves the table.
         ``OwnerDied(owner)`` frees all of them at once, in the order they were
         created: nobody is left to free them (Ray: the owner's death loses its
         objects), so they must not stay in the store for good.  Copies pulled from
         other nodes have no owner here and are deleted when room is needed.

The table (``ember.logic.node.object_table``) owns this index and keeps it in step
with its records; ``problems()`` feeds its ``check_invariants()``.
"""
from __future__ import annotations

from typing import Iterable

from ember.logic.node.object_events import ObjectId

__all__ = ["OwnerIndex"]


class OwnerIndex:
    """owner address -> its objects here, oldest first (dicts keep insertion order, so
    frees on an owner's death are ordered by creation, never by hashing)."""

    def __init__(self) -> None:
        self._by_owner: dict[str, dict[ObjectId, None]] = {}

    def __len__(self) -> int:
        return len(self._by_owner)

    def add(self, owner: str, object_id: ObjectId) -> None:
        if owner:
            self._by_owner.setdefault(owner, {})[object_id] = None

    def remove(self, owner: str, object_id: ObjectId) -> None:
        objects = self._by_owner.get(owner)
        if objects is None:
            return
        objects.pop(object_id, None)
        if not objects:
            del self._by_owner[owner]

    def objects_of(self, owner: str) -> list[ObjectId]:
        """The owner's objects here, oldest first."""
        return list(self._by_owner.get(owner, ()))

    def problems(self, owner_of: Iterable[tuple[ObjectId, str]]) -> list[str]:
        """Differences between this index and the table's ``(object_id, owner)`` records."""
        expected: dict[str, set[ObjectId]] = {}
        for object_id, owner in owner_of:
            if owner:
                expected.setdefault(owner, set()).add(object_id)
        actual = {owner: set(objects) for owner, objects in self._by_owner.items()}
        if expected != actual:
            return [f"owner index {sorted(actual)} does not match the objects' owners "
                    f"{sorted(expected)}"]
        return []
