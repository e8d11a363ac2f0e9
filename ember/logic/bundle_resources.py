"""How placement-group bundles show up as resources (Ray's naming).

A committed bundle ``i`` of group ``G`` (hex id) holding ``{"CPU": 2}`` adds to its node:

- ``CPU_group_i_G: 2``     the bundle's own share (indexed),
- ``CPU_group_G: 2``       the group's share on that node (wildcard; sums over its bundles there),
- ``bundle_group_i_G: 1000`` and ``bundle_group_G: 1000`` per bundle, so that even a task asking
  for no resources can be routed to the bundle's node.

A task or actor scheduled into bundle ``i`` asks for ``CPU_group_i_G`` *and* ``CPU_group_G``
(so indexed and wildcard users of one node cannot overcommit it); one scheduled into any
bundle (index -1) asks for the wildcard names only.  Both ask for 0.001 of the bundle
resource.  Pure functions, used by the owner (to rewrite demands), the node (to add and
remove resources) and the control store (to show them).
"""
from __future__ import annotations

from typing import Mapping, Optional

BUNDLE_RESOURCE = "bundle"
BUNDLE_UNITS = 1000.0
BUNDLE_DEMAND = 0.001


def indexed_name(resource: str, index: int, pg_hex: str) -> str:
    return f"{resource}_group_{index}_{pg_hex}"


def wildcard_name(resource: str, pg_hex: str) -> str:
    return f"{resource}_group_{pg_hex}"


def committed_resources(pg_hex: str, index: int, bundle: Mapping[str, float]) -> dict[str, float]:
    """What committing bundle ``index`` adds to its node's totals."""
    out: dict[str, float] = {}
    for name, amount in bundle.items():
        if amount > 0:
            out[indexed_name(name, index, pg_hex)] = float(amount)
            out[wildcard_name(name, pg_hex)] = float(amount)
    out[indexed_name(BUNDLE_RESOURCE, index, pg_hex)] = BUNDLE_UNITS
    out[wildcard_name(BUNDLE_RESOURCE, pg_hex)] = BUNDLE_UNITS
    return out


def task_demand(pg_hex: str, index: int, resources: Mapping[str, float]) -> dict[str, float]:
    """A task's or actor's demand rewritten to run inside group ``pg_hex`` (bundle ``index``,
    or any bundle when ``index`` is -1)."""
    out: dict[str, float] = {}
    for name, amount in resources.items():
        if amount > 0:
            out[wildcard_name(name, pg_hex)] = float(amount)
            if index >= 0:
                out[indexed_name(name, index, pg_hex)] = float(amount)
    out[wildcard_name(BUNDLE_RESOURCE, pg_hex)] = BUNDLE_DEMAND
    if index >= 0:
        out[indexed_name(BUNDLE_RESOURCE, index, pg_hex)] = BUNDLE_DEMAND
    return out


def group_of(resources: Mapping[str, float]) -> Optional[str]:
    """The hex id of the group a demand or lease belongs to, or None (reads the bundle name)."""
    prefix = BUNDLE_RESOURCE + "_group_"
    for name in resources:
        if name.startswith(prefix):
            return name.rsplit("_", 1)[-1]
    return None


def is_group_resource(name: str, pg_hex: str) -> bool:
    return name.endswith("_" + pg_hex) and "_group_" in name


def original_resources(resources: Mapping[str, float]) -> dict[str, float]:
    """The plain names behind a demand rewritten by ``task_demand`` (for the runtime
    context's assigned resources): wildcard names only, bundle resource dropped."""
    out: dict[str, float] = {}
    for name, amount in resources.items():
        if "_group_" not in name:
            out[name] = amount
            continue
        base, rest = name.split("_group_", 1)
        if base == BUNDLE_RESOURCE or "_" in rest:
            continue  # the bundle marker, or an indexed name (its wildcard twin is counted)
        out[base] = amount
    return out
