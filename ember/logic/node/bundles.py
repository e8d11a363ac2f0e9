"""Placement-group bundles on one node: prepared, committed, released.

Rule 1: a node prepares all the bundles it is asked for in one request, or none (the
control store's two-phase commit counts on it).  Preparing takes the bundles' resources
out of the node's free pool (``reserve``); committing makes them visible as the group's
resources (``add_total``, Ray's ``CPU_group_<i>_<pg>`` names); cancelling undoes whichever
of the two happened.
Rule 2: every answer is idempotent: preparing a bundle that is already here says yes,
committing an unknown bundle or cancelling one twice changes nothing.
Rule 3: a group cancelled with ``is_removed`` is remembered (bounded), so lease requests
for it are refused instead of waiting forever.

Each method returns a ``ResourceChange`` for the lease manager to apply
(``LeaseManager.on_bundle_resources``); this class holds no resources itself.

Diagram::

    (none) --prepare--> PREPARED --commit--> COMMITTED
                           |                     |
                           +------cancel---------+--> (none)
"""
from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from ember.logic import fsm
from ember.logic.bundle_resources import committed_resources
from ember.logic.resources import ResourceSet


class BundleState(enum.Enum):
    PREPARED = "PREPARED"
    COMMITTED = "COMMITTED"


TRANSITIONS = {(BundleState.PREPARED, BundleState.COMMITTED): "commit"}


@dataclass
class Bundle:
    pg_id: bytes
    index: int
    resources: ResourceSet
    state: BundleState = BundleState.PREPARED


@dataclass
class ResourceChange:
    reserve: ResourceSet = field(default_factory=ResourceSet)     # free -> reserved
    unreserve: ResourceSet = field(default_factory=ResourceSet)   # reserved -> free
    add_total: ResourceSet = field(default_factory=ResourceSet)   # group resources appear
    remove_total: ResourceSet = field(default_factory=ResourceSet)  # group resources go

    def is_empty(self) -> bool:
        return all(r.is_empty() for r in (self.reserve, self.unreserve, self.add_total, self.remove_total))


class BundleTable:
    def __init__(self, *, removed_max: int = 10_000) -> None:
        self.bundles: dict[tuple[bytes, int], Bundle] = {}
        self.removed: OrderedDict[bytes, None] = OrderedDict()
        self._removed_max = removed_max
        self._log = fsm.TransitionLog(10_000)

    def prepare(self, pg_id: bytes, items: list[tuple[int, dict]], available: ResourceSet,
                cause_id: str = "") -> tuple[Optional[str], ResourceChange]:
        """Reserve every bundle in ``items`` or none: (None, change) or (reason, empty change)."""
        if pg_id in self.removed:
            return "the placement group was removed", ResourceChange()
        need = ResourceSet()
        new: list[Bundle] = []
        for index, resources in items:
            if (pg_id, index) in self.bundles:
                continue  # a repeated prepare: already held
            b = Bundle(pg_id, index, ResourceSet(resources))
            need.add(b.resources)
            new.append(b)
        if not need.fits_in(available):
            return (f"not enough free resources for bundles {[i for i, _ in items]}: need {need.to_dict()}, "
                    f"free {available.to_dict()}"), ResourceChange()
        for b in new:
            self.bundles[(pg_id, b.index)] = b
            self._log.record((pg_id, b.index), None, BundleState.PREPARED, cause_id)
        return None, ResourceChange(reserve=need)

    def commit(self, pg_id: bytes, indices: list[int], cause_id: str = "") -> ResourceChange:
        add = ResourceSet()
        for index in indices:
            b = self.bundles.get((pg_id, index))
            if b is None or b.state is BundleState.COMMITTED:
                continue
            fsm.lookup(TRANSITIONS, f"bundle {index} of {pg_id.hex()}", b.state, BundleState.COMMITTED, cause_id)
            self._log.record((pg_id, index), b.state, BundleState.COMMITTED, cause_id)
            b.state = BundleState.COMMITTED
            add.add(ResourceSet(committed_resources(pg_id.hex(), index, b.resources.to_dict())))
        return ResourceChange(add_total=add)

    def cancel(self, pg_id: bytes, indices: Optional[list[int]], is_removed: bool,
               cause_id: str = "") -> ResourceChange:
        """Release the bundles (``indices`` None: all of the group's here)."""
        if is_removed:
            self.removed[pg_id] = None
            while len(self.removed) > self._removed_max:
                self.removed.popitem(last=False)
        if indices is None:
            indices = sorted(i for (p, i) in self.bundles if p == pg_id)
        change = ResourceChange()
        for index in indices:
            b = self.bundles.pop((pg_id, index), None)
            if b is None:
                continue
            self._log.record((pg_id, index), b.state, None, cause_id, note="cancelled")
            change.unreserve.add(b.resources)
            if b.state is BundleState.COMMITTED:
                change.remove_total.add(ResourceSet(committed_resources(pg_id.hex(), index, b.resources.to_dict())))
        return change

    def groups(self) -> list[bytes]:
        return sorted({p for p, _ in self.bundles})

    def reserved(self) -> ResourceSet:
        out = ResourceSet()
        for b in self.bundles.values():
            out.add(b.resources)
        return out

    def story(self, pg_id: bytes, index: int) -> list[fsm.LogEntry]:
        return self._log.story((pg_id, index))
