"""Where a placement group's bundles go: Ray's four strategies as one pure function.

- STRICT_PACK: every bundle on one node.
- PACK: one node if any can hold them all; else as few nodes as the greedy fill gives.
- STRICT_SPREAD: every bundle on a different node.
- SPREAD: bundles over as many nodes as fit, fewest bundles of the group per node first.

Nodes are tried in a fixed order (most free CPU first, then node id), so equal inputs
give equal answers.  ``fixed`` holds bundles that already have a node (a group being
re-placed after a node died keeps the bundles that survived).
"""
from __future__ import annotations

from typing import Mapping, Optional

from ember.logic.resources import ResourceSet

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def _order(free: Mapping[bytes, ResourceSet]) -> list[bytes]:
    return sorted(free, key=lambda n: (-free[n].units.get("CPU", 0), n))


def place(bundles: list[ResourceSet], strategy: str, free: Mapping[bytes, ResourceSet],
          fixed: Optional[Mapping[int, bytes]] = None) -> Optional[dict[int, bytes]]:
    """A node for every bundle not in ``fixed`` (``{index: node}``), or None if they do not fit
    ``free`` now.  ``free`` is not changed."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown placement strategy {strategy!r}")
    fixed = dict(fixed or {})
    left = {n: free[n].copy() for n in free}
    todo = [i for i in range(len(bundles)) if i not in fixed]
    if not todo:
        return {}
    if strategy in ("STRICT_PACK", "PACK"):
        whole = _pack_on_one(bundles, todo, left, fixed)
        if whole is not None or strategy == "STRICT_PACK":
            return whole
        return _greedy(bundles, todo, left, fixed, prefer_used=True, distinct=False)
    if strategy == "STRICT_SPREAD":
        return _greedy(bundles, todo, left, fixed, prefer_used=False, distinct=True)
    return _spread(bundles, todo, left, fixed)


def _pack_on_one(bundles: list[ResourceSet], todo: list[int], left: dict[bytes, ResourceSet],
                 fixed: dict[int, bytes]) -> Optional[dict[int, bytes]]:
    need = ResourceSet()
    for i in todo:
        need.add(bundles[i])
    used = set(fixed.values())
    candidates = sorted(used) if used else _order(left)
    for node in candidates:
        if node in left and need.fits_in(left[node]):
            return {i: node for i in todo}
    return None


def _greedy(bundles: list[ResourceSet], todo: list[int], left: dict[bytes, ResourceSet],
            fixed: dict[int, bytes], *, prefer_used: bool, distinct: bool) -> Optional[dict[int, bytes]]:
    out: dict[int, bytes] = {}
    used = list(dict.fromkeys(fixed.values()))
    # Largest bundles first (CPU, then total units), so small ones fill the gaps.
    for i in sorted(todo, key=lambda i: (-bundles[i].units.get("CPU", 0), -sum(bundles[i].units.values()), i)):
        order = _order(left)
        if prefer_used:
            order = [n for n in used if n in left] + [n for n in order if n not in used]
        elif distinct:
            order = [n for n in order if n not in used]
        node = next((n for n in order if bundles[i].fits_in(left[n])), None)
        if node is None:
            return None
        left[node].subtract(bundles[i])
        out[i] = node
        if node not in used:
            used.append(node)
    return out


def _spread(bundles: list[ResourceSet], todo: list[int], left: dict[bytes, ResourceSet],
            fixed: dict[int, bytes]) -> Optional[dict[int, bytes]]:
    out: dict[int, bytes] = {}
    count: dict[bytes, int] = {}
    for node in fixed.values():
        count[node] = count.get(node, 0) + 1
    for i in todo:
        fitting = [n for n in _order(left) if bundles[i].fits_in(left[n])]
        if not fitting:
            return None
        node = min(fitting, key=lambda n: count.get(n, 0))  # stable: first of the fewest
        left[node].subtract(bundles[i])
        count[node] = count.get(node, 0) + 1
        out[i] = node
    return out
