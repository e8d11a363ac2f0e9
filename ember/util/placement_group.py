"""Placement groups (Ray's ``ray.util.placement_group``): reserve bundles of resources
atomically across nodes, then schedule tasks and actors into them.

See docs/placement_groups.md.  Bad input raises Ray's ``ValueError``s here, before anything
is sent; the reservation itself (two-phase, across nodes) is the control store's.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from ember.ids import PlacementGroupID
from ember import lifecycle
from ember.logic.bundle_resources import group_of
from ember.logic.control.bundle_placement import STRATEGIES

VALID_PLACEMENT_GROUP_STRATEGIES = set(STRATEGIES)


class PlacementGroup:
    """A handle to a placement group (picklable: pass it to tasks and actors)."""

    def __init__(self, id: PlacementGroupID, bundle_cache: Optional[list] = None) -> None:
        self._id = id
        self.bundle_cache = bundle_cache

    @property
    def id(self) -> PlacementGroupID:
        return self._id

    @staticmethod
    def empty() -> "PlacementGroup":
        return PlacementGroup(PlacementGroupID.nil())

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    def ready(self) -> Any:
        """An ObjectRef that becomes ready (its value: this group) once the group is created."""
        cw = lifecycle.core_worker_or_init()
        if self.is_empty:
            return cw.put(self)
        from ember.object_ref import ObjectRef
        from ember.shells.worker.placement_groups import client
        oid = cw.new_id() + b"\x00\x00\x00\x00"
        cw.store.add_pending(oid, True)
        ref = ObjectRef(oid, cw.address)
        client(cw).when_settled(self.id.binary(), lambda info, error: _complete_ready(cw, oid, self, info, error))
        return ref

    def wait(self, timeout_seconds: Union[float, int] = 30) -> bool:
        """True once the group is created, False if it is not within ``timeout_seconds``."""
        from ember.shells.worker.placement_groups import client
        cw = lifecycle.core_worker_or_init()
        info = client(cw).wait(self.id.binary(), None if timeout_seconds is None else float(timeout_seconds))
        return info.state == "CREATED"

    @property
    def bundle_specs(self) -> list[dict]:
        if self.bundle_cache is None:
            self.bundle_cache = [dict(b) for b in _info(self.id.binary()).bundles]
        return self.bundle_cache

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id.hex()})"

    def __reduce__(self) -> Any:
        return (PlacementGroup, (self.id, self.bundle_cache))


def _complete_ready(cw: Any, oid: bytes, pg: PlacementGroup, info: Any, error: Optional[BaseException]) -> None:
    from ember import exceptions as exc
    from ember.shells.shared import serialization
    if error is None and info is not None and info.state != "CREATED":
        error = exc.RaySystemError(f"The placement group {pg.id.hex()} was removed before it was created.")
    if error is not None:
        cw.store.complete(oid, error=error)
        return
    ser = serialization.serialize(pg, what="a placement group")
    cw.store.complete(oid, data=ser.to_bytes(), size=ser.total_bytes)


def _info(pg_id: bytes) -> Any:
    from ember.protocol import messages as m
    from ember.shells.worker.placement_groups import client
    return client(lifecycle.core_worker_or_init()).request(m.GetPlacementGroup(pg_id, "", ""))


def validate_bundles(bundles: Any) -> None:
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if len(bundles) == 0:
        raise ValueError("Bundles must be a non-empty list of resource dictionaries. For example: "
                         '`[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.')
    for bundle in bundles:
        if (not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bundle.values())):
            raise ValueError('Bundles must be a non-empty list of resource dictionaries. For example: '
                             '`[{"CPU": 1.0}, {"GPU": 1.0}]`.')
        if len(bundle) == 0 or all(v == 0 for v in bundle.values()):
            raise ValueError(f"Bundles cannot be an empty dictionary or resources with only 0 values. "
                             f"Bundles: {bundles}")
        negative = {k: v for k, v in bundle.items() if v < 0}
        if negative:
            raise ValueError(f"Bundle resources must be non-negative, got {negative} in bundle {bundle}.")


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: Optional[str] = None, _soft_target_node_id: Optional[str] = None,
                    bundle_label_selector: Optional[list] = None) -> PlacementGroup:
    """Asynchronously create a placement group of ``bundles`` placed by ``strategy``."""
    validate_bundles(bundles)
    if strategy not in VALID_PLACEMENT_GROUP_STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: "
                         f"{VALID_PLACEMENT_GROUP_STRATEGIES}.")
    if lifetime not in (None, "detached"):
        raise ValueError(f"Placement group `lifetime` argument must be either `None` or 'detached'. Got {lifetime}.")
    if _soft_target_node_id is not None or bundle_label_selector:
        raise NotImplementedError("_soft_target_node_id and bundle_label_selector are not supported by ember yet")
    from ember.protocol import messages as m
    from ember.shells.worker.placement_groups import client
    cw = lifecycle.core_worker_or_init()
    pg_id = PlacementGroupID.from_random(cw.job_id)
    clean = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    client(cw).create(m.CreatePlacementGroup(pg_id.binary(), clean, strategy, name or "", cw.get_namespace(),
                                             lifetime == "detached", cw.job_id))
    return PlacementGroup(pg_id, [dict(b) for b in bundles])


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Asynchronously remove the group: its bundles are freed and what runs in them is killed."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group expects a PlacementGroup, got {type(placement_group).__name__}")
    from ember.shells.worker.placement_groups import client
    client(lifecycle.core_worker_or_init()).remove(placement_group.id.binary())


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The group named ``placement_group_name`` in this job's namespace."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    from ember import exceptions as exc
    from ember.protocol import messages as m
    from ember.shells.worker.placement_groups import client
    cw = lifecycle.core_worker_or_init()
    try:
        info = client(cw).request(m.GetPlacementGroup(None, placement_group_name, cw.get_namespace()))
    except Exception as e:  # the control store's ValueError arrives as an RpcError
        if getattr(e, "kind", "") == "ValueError":
            raise ValueError(f"Failed to look up placement group with name: {placement_group_name}") from None
        raise exc.RaySystemError(str(e)) from None
    return PlacementGroup(PlacementGroupID(info.pg_id), [dict(b) for b in info.bundles])


def _table_entry(info: Any) -> dict[str, Any]:
    return {
        "placement_group_id": info.pg_id.hex(),
        "name": info.name,
        "bundles": {i: dict(b) for i, b in enumerate(info.bundles)},
        "bundles_to_node_id": {i: n.hex() for i, n in enumerate(info.bundle_nodes) if n is not None},
        "strategy": info.strategy,
        "state": info.state,
        "is_detached": info.is_detached,
        "namespace": info.namespace,
    }


def placement_group_table(placement_group: Optional[PlacementGroup] = None) -> dict:
    """The state of one group (a dict), or of every group (hex id -> dict)."""
    from ember.protocol import messages as m
    from ember.shells.worker.placement_groups import client
    pgc = client(lifecycle.core_worker_or_init())
    if placement_group is not None:
        return _table_entry(pgc.request(m.GetPlacementGroup(placement_group.id.binary(), "", "")))
    return {info.pg_id.hex(): _table_entry(info) for info in pgc.request(m.ListPlacementGroups()).groups}


def current_placement_group_id(cw: Any) -> Optional[str]:
    """The hex id of the group the running task or actor is in (read from its resources)."""
    task = getattr(cw.context, "task", None)
    if task is not None and not task.actor_id:
        resources = task.resources
    else:
        resources = getattr(cw, "actor_resources", None) or {}
    return group_of(resources)


def get_current_placement_group() -> Optional[PlacementGroup]:
    """The group the calling task or actor runs in; None in a driver or outside any group."""
    cw = lifecycle.core_worker_or_init()
    hex_id = current_placement_group_id(cw)
    return PlacementGroup(PlacementGroupID.from_hex(hex_id)) if hex_id else None


def check_placement_group_index(placement_group: PlacementGroup, bundle_index: int) -> None:
    if placement_group.is_empty:
        if bundle_index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
        return
    count = placement_group.bundle_count
    if bundle_index >= count or bundle_index < -1:
        raise ValueError(f"placement group bundle index {bundle_index} is invalid. Valid placement group "
                         f"indexes: 0 to {count - 1}.")


__all__ = ["PlacementGroup", "PlacementGroupID", "check_placement_group_index", "get_current_placement_group",
           "get_placement_group", "placement_group", "placement_group_table", "remove_placement_group"]
