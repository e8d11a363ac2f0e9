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


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group's bundle (placement groups are not implemented yet)."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: Optional[bool] = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    @property
    def _ember_strategy(self) -> list:
        raise NotImplementedError("placement groups are not implemented in ember yet")


SchedulingStrategyT = Union[None, str, NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy]


def to_wire(strategy: SchedulingStrategyT) -> list:
    if strategy is None or strategy == "DEFAULT":
        return ["DEFAULT"]
    if strategy == "SPREAD":
        return ["SPREAD"]
    if isinstance(strategy, str):
        raise ValueError(f"unknown scheduling strategy {strategy!r}; use 'DEFAULT', 'SPREAD' or a strategy object")
    return list(strategy._ember_strategy)
