"""The planner's inputs and outputs: node types, budget, nodes, demand; launch/terminate orders and a report.

Amounts are kept as given (floats) at the edge and converted to fixed-point units (ember.logic.resources)
inside the planner, so 0.1 + 0.2 CPUs pack exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Prepaid:
    """Capacity already paid for: `count` nodes of a type cost nothing extra until `until` (a timestamp)."""
    count: int
    until: float


@dataclass(frozen=True, slots=True)
class NodeType:
    name: str
    resources: dict
    min_workers: int = 0
    max_workers: int = 10**9
    cost_per_hour: float = 0.0
    prepaid: Prepaid | None = None

    def prepaid_count(self, now: float) -> int:
        return self.prepaid.count if self.prepaid is not None and now < self.prepaid.until else 0


@dataclass(frozen=True, slots=True)
class Budget:
    """max_cost_per_hour caps the running rate; total caps spend within a period (hours) at the current rate."""
    max_cost_per_hour: float | None = None
    total: float | None = None
    period_hours: float | None = None


@dataclass(frozen=True, slots=True)
class NodeState:
    node_id: str
    node_type: str
    idle_since: float | None = None      # None: busy (or still launching)
    holds_only_copy: bool = False        # objects that no other node holds
    is_head: bool = False
    launching: bool = False              # asked of the provider, not registered yet
    available: dict | None = None        # free resources now (None: the type's full resources)


@dataclass(frozen=True, slots=True)
class PlanInput:
    node_types: tuple                    # NodeType, ...
    nodes: tuple = ()                    # NodeState, ...
    demands: tuple = ()                  # (shape dict, count), ... : queued leases the nodes report
    requests: tuple = ()                 # shape dict, ... : request_resources bundles (a cluster-size floor)
    budget: Budget = Budget()
    max_workers: int = 10**9             # the cluster's cap on worker nodes (head excluded)
    upscaling_speed: float = 1.0
    idle_timeout_s: float = 300.0
    now: float = 0.0
    spent: float = 0.0                   # spend so far within the current budget period
    period_hours_left: float = 0.0       # hours left in the current budget period
    placement_groups: tuple = ()         # (strategy, (bundle shape dict, ...)), ... : bundles not placed yet


@dataclass(frozen=True, slots=True)
class LaunchNode:
    node_type: str
    cost_per_hour: float                 # marginal: 0 for prepaid capacity
    serves: tuple                        # the shapes (sorted item tuples) it was launched for, or ("min_workers",)


@dataclass(frozen=True, slots=True)
class TerminateNode:
    node_id: str
    node_type: str
    reason: str                          # "idle" or "budget"


@dataclass(frozen=True, slots=True)
class Waiting:
    shape: dict
    count: int
    reason: str                          # "infeasible", "over budget", "max_workers", "upscaling_speed"
    cost_per_hour: float | None = None   # what the cheapest node that fits would cost (over budget)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    launches: tuple
    terminations: tuple
    waiting: tuple
    rate_per_hour: float                 # the running rate after this plan
    forecast: float                      # spent + rate * hours left in the period
    notes: tuple = field(default=())

    def describe(self) -> list[str]:
        lines = []
        for w in self.waiting:
            cost = f" (would cost ${w.cost_per_hour:.2f}/h)" if w.cost_per_hour is not None else ""
            lines.append(f"{w.count} x {w.shape}: {w.reason}{cost}{': ' + w.detail if w.detail else ''}")
        return lines + list(self.notes)
