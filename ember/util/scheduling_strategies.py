"""Scheduling strategies as plain data (Ray's names)."""
from __future__ import annotations

from typing import Any, Optional, Union


class NodeAffinitySchedulingStrategy:
    """Run on the node with ``node_id`` (hex); with ``soft=True`` fall back elsewhere."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    @property
    def _ember_strategy(self) -> list:
        return ["NODE_AFFINITY", bytes.fromhex(self.node_id), self.soft]

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class _LabelExpression:
    """One label match expression of NodeLabelSchedulingStrategy (Ray's In/NotIn/Exists/DoesNotExist)."""

    _op = ""

    def __init__(self, *values: str) -> None:
        self.values = list(values)

    def _to_wire(self) -> list:
        return [self._op, list(self.values)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.values))})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.values == other.values  # type: ignore[attr-defined]


class In(_LabelExpression):
    """The node's label value is one of ``values``."""

    _op = "in"

    def __init__(self, *values: str) -> None:
        _check_values(type(self).__name__, values)
        super().__init__(*values)


class NotIn(_LabelExpression):
    """The node has no such label, or its value is none of ``values``."""

    _op = "not_in"

    def __init__(self, *values: str) -> None:
        _check_values(type(self).__name__, values)
        super().__init__(*values)


class Exists(_LabelExpression):
    """The node has the label (any value)."""

    _op = "exists"

    def __init__(self) -> None:
        super().__init__()


class DoesNotExist(_LabelExpression):
    """The node does not have the label."""

    _op = "does_not_exist"

    def __init__(self) -> None:
        super().__init__()


def _check_values(name: str, values: tuple) -> None:
    if not values:
        raise ValueError(f"{name} needs at least one value, e.g. {name}(\"a\")")
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"the values of {name} must be strings, got {value!r} ({type(value).__name__})")


def _selector_to_wire(name: str, selector: Optional[dict]) -> dict:
    if selector is None:
        return {}
    if not isinstance(selector, dict):
        raise ValueError(f"NodeLabelSchedulingStrategy's {name} must be a dict of label -> In/NotIn/Exists/"
                         f"DoesNotExist, got {type(selector).__name__}")
    out = {}
    for key, expr in selector.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"NodeLabelSchedulingStrategy's {name} keys must be non-empty strings, got {key!r}")
        if not isinstance(expr, _LabelExpression):
            raise ValueError(f"NodeLabelSchedulingStrategy's {name}[{key!r}] must be In(...), NotIn(...), "
                             f"Exists() or DoesNotExist(), got {expr!r}")
        out[key] = expr._to_wire()
    return out


class NodeLabelSchedulingStrategy:
    """Run on a node whose labels (``ember start --labels``, ``init(labels=)``) match ``hard``;
    among those, prefer nodes that also match ``soft``."""

    def __init__(self, hard: Optional[dict], *, soft: Optional[dict] = None,
                 _spill_on_unavailable: bool = False, _fail_on_unavailable: bool = False) -> None:
        if not hard and not soft:
            raise ValueError("The `hard` and `soft` parameter of NodeLabelSchedulingStrategy cannot both be empty.")
        self._wire = ["NODE_LABEL", _selector_to_wire("hard", hard), _selector_to_wire("soft", soft)]
        self.hard = hard
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    @property
    def _ember_strategy(self) -> list:
        return list(self._wire)

    def __repr__(self) -> str:
        return f"NodeLabelSchedulingStrategy(hard={self.hard!r}, soft={self.soft!r})"


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group: in bundle ``placement_group_bundle_index``, or in any of
    its bundles (-1)."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: Optional[bool] = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    @property
    def _ember_strategy(self) -> list:
        if self.placement_group is None:  # Ray's way to opt out of a parent's captured group
            return ["DEFAULT"]
        return ["PLACEMENT_GROUP", self.placement_group.id.binary(), int(self.placement_group_bundle_index),
                bool(self.placement_group_capture_child_tasks)]

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy(placement_group={self.placement_group!r}, "
                f"placement_group_bundle_index={self.placement_group_bundle_index})")


SchedulingStrategyT = Union[None, str, NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy,
                            NodeLabelSchedulingStrategy]


def to_wire(strategy: SchedulingStrategyT) -> list:
    if strategy is None or strategy == "DEFAULT":
        return ["DEFAULT"]
    if strategy == "SPREAD":
        return ["SPREAD"]
    if isinstance(strategy, str):
        raise ValueError(f"unknown scheduling strategy {strategy!r}; use 'DEFAULT', 'SPREAD' or a strategy object")
    return list(strategy._ember_strategy)


def resolve(options: dict) -> SchedulingStrategyT:
    """The strategy of resolved task/actor options, the legacy ``placement_group=`` option included."""
    strategy = options.get("scheduling_strategy")
    pg = options.get("placement_group", "default")
    if strategy is None and pg not in ("default", None):
        strategy = PlacementGroupSchedulingStrategy(pg, options.get("placement_group_bundle_index", -1),
                                                    options.get("placement_group_capture_child_tasks"))
    return strategy


def may_capture(options: dict) -> bool:
    """A task or actor whose options name no strategy may be captured by its caller's group."""
    return options.get("scheduling_strategy") is None and options.get("placement_group", "default") == "default"


def captured_strategy(cw: Any) -> Optional[PlacementGroupSchedulingStrategy]:
    """The group a task submitted now without a strategy goes into: the caller's, when the
    caller runs in a group with ``placement_group_capture_child_tasks=True`` (else None)."""
    task = getattr(cw.context, "task", None)
    if task is not None and not task.actor_id:
        if not task.spec.capture_child_tasks:
            return None
        resources = task.resources
    elif getattr(cw, "actor_captures_child_tasks", False):
        resources = cw.actor_resources
    else:
        return None
    from ember.logic.bundle_resources import group_of
    from ember.util.placement_group import PlacementGroup, PlacementGroupID
    pg_hex = group_of(resources)
    if pg_hex is None:
        return None
    return PlacementGroupSchedulingStrategy(PlacementGroup(PlacementGroupID.from_hex(pg_hex)), -1, True)


def with_placement(strategy: SchedulingStrategyT, resources: dict, what: str = "the task",
                   is_actor_placement: bool = False) -> dict:
    """``resources`` rewritten to the group's bundle resources when ``strategy`` targets a
    placement group (Ray's ``CPU_group_<i>_<pg>`` names); unchanged otherwise.  A demand that
    fits no bundle it may use raises Ray's ValueError (``is_actor_placement``: the hidden
    1 CPU an actor needs to be created, with Ray's message for it)."""
    if not isinstance(strategy, PlacementGroupSchedulingStrategy) or strategy.placement_group is None:
        return resources
    from ember.logic.bundle_resources import task_demand
    from ember.util.placement_group import check_placement_group_index
    pg = strategy.placement_group
    index = int(strategy.placement_group_bundle_index)
    check_placement_group_index(pg, index)
    _check_fits(pg.bundle_specs, index, resources, what, is_actor_placement)
    return task_demand(pg.id.hex(), index, resources)


def _check_fits(bundles: list, index: int, resources: dict, what: str, is_actor_placement: bool) -> None:
    usable = bundles if index == -1 else [bundles[index]]
    if any(all(b.get(k, 0.0) >= v for k, v in resources.items() if v > 0) for b in usable):
        return
    shown = [{k: float(v) for k, v in b.items()} for b in bundles]
    if is_actor_placement:
        raise ValueError(f"Cannot schedule {what} with the placement group because the actor requires "
                         f"{resources.get('CPU', 0)} CPU for creation, but it cannot fit into any bundles for "
                         f"the placement group, {shown}. Consider creating a placement group with CPU resources.")
    raise ValueError(f"Cannot schedule {what} with the placement group because the resource request "
                     f"{resources} cannot fit into any bundles for the placement group, {shown}.")
