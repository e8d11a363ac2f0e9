"""Where a lease request goes: the pure placement policy of a node daemon (no I/O).

A node daemon asks ``choose(...)`` for every lease request it receives that it may move.
The answer names one node (itself: keep the request; another: spill it back there) or says why
no node can ever run it.

Rule 1 (feasibility): a node is a candidate only when it is alive, the request's shape fits its
        *total* resources and its labels satisfy the request's hard label selector.
Rule 2 (policies for DEFAULT, ``Config.scheduling_policy``):
        - ``"wait"`` (the seed's policy, the default): the node with the lowest estimated cost,
          ``wait_s + missing_argument_bytes / bandwidth``; ``wait_s`` is 0 where the shape fits
          what is free now and nothing waits there, else ``(queued + 1) x mean slot hold time / slots``
          for the shape. The node keeps the request while its own cost is within
          ``keep_margin_s`` of the best (it can run it soon), so a stale view never bounces work.
        - ``"hybrid"`` (Ray's default): local node first, then the others in id order; the first
          node that fits now and is under ``spread_threshold`` utilization wins; else the least
          utilized node that fits now; else the least utilized feasible node (the request waits).
        - ``"least_loaded"``: the node with the most free CPUs that fits now (ties: local, then id);
          else the local node if feasible, else the feasible node with the most free CPUs.
Rule 3 (SPREAD): round robin in node-id order: the first node after the previous pick that fits
        now (the first feasible one after it when none does), so consecutive requests land on
        consecutive nodes however the set of free nodes changes between them.
Rule 4 (soft label preferences): among the candidates, those matching the soft selector are
        preferred when any of them fits now or, failing that, when any is feasible.

Everything is given: the caller passes the views, the counter for SPREAD and the parameters.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

from ember.logic.resources import UNIT, ResourceSet

POLICIES = ("wait", "hybrid", "least_loaded")


@dataclass
class NodeLoad:
    """One node as a placement decision sees it (from heartbeats, or this node's own state)."""
    node_id: bytes
    address: str
    total: ResourceSet
    available: ResourceSet
    is_alive: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    queued: int = 0               # lease requests waiting there
    mean_task_s: float = 0.0      # moving average of task durations reported by owners (0: unknown)


@dataclass(frozen=True)
class PlacementParams:
    policy: str = "wait"
    bandwidth_bytes_per_s: float = 125e6
    keep_margin_s: float = 0.02
    spread_threshold: float = 0.5
    default_task_s: float = 0.1


class LabelOp(enum.Enum):
    IN = "in"
    NOT_IN = "not_in"
    EXISTS = "exists"
    DOES_NOT_EXIST = "does_not_exist"


# A selector on the wire: {label: [op, [values...]]}.
Selector = Mapping[str, Sequence[object]]


def selector_error(selector: object) -> Optional[str]:
    """Why a wire selector is malformed (peer input), or None."""
    if not isinstance(selector, Mapping):
        return f"a label selector must be a dict, got {type(selector).__name__}"
    ops = {op.value for op in LabelOp}
    for key, expr in selector.items():
        if not isinstance(key, str) or not isinstance(expr, (list, tuple)) or len(expr) != 2:
            return f"label selector entry {key!r}: expected [op, values]"
        if expr[0] not in ops or not isinstance(expr[1], (list, tuple)):
            return f"label selector entry {key!r}: unknown operator {expr[0]!r}"
    return None


def labels_match(labels: Mapping[str, str], selector: Selector) -> bool:
    for key, (op, values) in selector.items():
        has = key in labels
        if op == LabelOp.EXISTS.value and not has:
            return False
        if op == LabelOp.DOES_NOT_EXIST.value and has:
            return False
        if op == LabelOp.IN.value and (not has or labels[key] not in values):
            return False
        if op == LabelOp.NOT_IN.value and has and labels[key] in values:
            return False
    return True


# --- measures ------------------------------------------------------------------------------
def fits_now(node: NodeLoad, shape: ResourceSet) -> bool:
    return node.queued == 0 and shape.fits_in(node.available)


def slots(node: NodeLoad, shape: ResourceSet) -> int:
    """How many requests of this shape the node runs at once (at least 1)."""
    count: Optional[int] = None
    for name, need in shape.units.items():
        if need > 0:
            n = node.total.units.get(name, 0) // need
            count = n if count is None else min(count, n)
    return max(1, count if count is not None else 1)


def utilization(node: NodeLoad, shape: ResourceSet) -> float:
    """The most used of the resources the shape asks for (and CPU), as a fraction of the total."""
    worst = 0.0
    for name in set(shape.units) | {"CPU"}:
        total = node.total.units.get(name, 0)
        if total > 0:
            used = total - node.available.units.get(name, 0)
            worst = max(worst, used / total)
    return worst


def wait_s(node: NodeLoad, shape: ResourceSet, task_s: float, params: PlacementParams) -> float:
    """Estimated wait before a request of this shape starts on the node."""
    if fits_now(node, shape):
        return 0.0
    mean = node.mean_task_s or task_s or params.default_task_s
    # A slot frees after a whole hold time at worst (owners keep leases for their backlog), and each
    # request queued ahead takes one more.
    return (node.queued + 1) * mean / slots(node, shape)


def transfer_s(node: NodeLoad, arg_bytes: Mapping[str, int], params: PlacementParams) -> float:
    """Seconds to bring the arguments the node lacks (arg_bytes: node address -> bytes there)."""
    missing = sum(b for address, b in arg_bytes.items() if address != node.address)
    return missing / params.bandwidth_bytes_per_s if params.bandwidth_bytes_per_s > 0 else 0.0


def cost_s(node: NodeLoad, shape: ResourceSet, arg_bytes: Mapping[str, int], task_s: float,
           params: PlacementParams) -> float:
    return wait_s(node, shape, task_s, params) + transfer_s(node, arg_bytes, params)


# --- decisions -----------------------------------------------------------------------------
def _free_cpu(node: NodeLoad) -> int:
    return node.available.units.get("CPU", 0)


def _by_policy(local: NodeLoad, others: Sequence[NodeLoad], cands: list[NodeLoad], shape: ResourceSet,
               arg_bytes: Mapping[str, int], task_s: float, params: PlacementParams) -> NodeLoad:
    """One of ``cands`` (non-empty, local first if present, then id order) by the DEFAULT policy."""
    if params.policy == "hybrid":
        now = [n for n in cands if fits_now(n, shape)]
        for node in now:
            if utilization(node, shape) < params.spread_threshold:
                return node
        pool = now or cands
        return min(pool, key=lambda n: utilization(n, shape))  # min() keeps the first of equals
    if params.policy == "least_loaded":
        now = [n for n in cands if fits_now(n, shape)]
        if now:
            return max(now, key=_free_cpu)  # max() keeps the first of equals: local wins ties
        if cands[0] is local:
            return local
        return max(cands, key=_free_cpu)
    picks = _wait_candidates(cands, shape, arg_bytes)
    costs = {i: cost_s(cands[i], shape, arg_bytes, task_s, params) for i in picks}
    best = min(picks, key=lambda i: (costs[i], i))
    if cands[0] is local and costs[0] <= costs[best] + params.keep_margin_s:
        return local
    return cands[best]


def _wait_candidates(cands: list[NodeLoad], shape: ResourceSet, arg_bytes: Mapping[str, int]) -> list[int]:
    """The indices of ``cands`` among which the lowest ``cost_s`` (first of equals) must be: the
    first one, those holding argument bytes, and the first other node that fits now.  Every other
    node lacks the same bytes as that one and waits at least as long, and comes after it in
    order, so it cannot win: the answer equals a scan of every node, without computing every
    cost (at thousands of nodes that scan was most of a decision's time).  When no such node
    fits now, every index."""
    holders = {address for address, b in arg_bytes.items() if b}
    picks = [0]
    free = None
    for i in range(1, len(cands)):
        node = cands[i]
        if node.address in holders:
            picks.append(i)
        elif free is None and fits_now(node, shape):
            free = i
            if not holders:
                break
    if free is None:
        return list(range(len(cands)))
    picks.append(free)
    return picks


def choose(local: NodeLoad, others: Sequence[NodeLoad], shape: ResourceSet, *, strategy: str = "DEFAULT",
           hard: Optional[Selector] = None, soft: Optional[Selector] = None,
           arg_bytes: Optional[Mapping[str, int]] = None, task_s: float = 0.0,
           params: PlacementParams = PlacementParams(), spread_after: Optional[bytes] = None,
           local_ok: bool = True) -> Union[NodeLoad, str]:
    """The node for a request (``local`` to keep it), or a string saying why none can ever run it.

    ``local_ok`` is False when the local node cannot take the shape for reasons outside the
    resource view (a fractional GPU amount above one, say)."""
    everyone = [local] + sorted((n for n in others if n.node_id != local.node_id), key=lambda n: n.node_id)
    feasible = [n for n in everyone if n.is_alive and shape.fits_in(n.total) and (n is not local or local_ok)]
    cands = [n for n in feasible if hard is None or labels_match(n.labels, hard)]
    if not cands:
        if hard and feasible:
            return f"no alive node has labels matching {dict(hard)} and fits {shape.to_dict()}"
        return (f"no node can ever fit {shape.to_dict()}; node totals: "
                f"{[n.total.to_dict() for n in everyone if n.is_alive]}")
    if soft:
        preferred = [n for n in cands if labels_match(n.labels, soft)]
        now = [n for n in preferred if fits_now(n, shape)]
        if now or (preferred and not any(fits_now(n, shape) for n in cands)):
            cands = now or preferred
    if strategy == "SPREAD":
        ordered = sorted(cands, key=lambda n: n.node_id)
        if spread_after is not None:  # rotate: the nodes after the previous pick come first
            ordered = [n for n in ordered if n.node_id > spread_after] + [n for n in ordered if n.node_id <= spread_after]
        now = [n for n in ordered if fits_now(n, shape)]
        return (now or ordered)[0]
    return _by_policy(local, others, cands, shape, arg_bytes or {}, task_s, params)


def gpu_shape_ok(shape: ResourceSet) -> bool:
    """A GPU amount above one must be whole."""
    units = shape.units.get("GPU", 0)
    return units <= UNIT or units % UNIT == 0
