"""Placement groups in the control store's storage (issue #11): the record written when a
group is created (all bundles committed) and the restore of a table from those records.

Only CREATED groups are stored (``PgChanged`` to CREATED writes, to REMOVED forgets): a group
whose creation was under way when the head died is not known to the next head (its creator's
call fails with the lost connection, as in Ray when the GCS dies mid-creation).

A restored group keeps its bundles on their nodes; the nodes it names are entered in the
table's node totals so that the first node view without one of them (that node did not come
back) reschedules the group's lost bundles, as any node death does.
"""
from __future__ import annotations

from typing import Any

from ember.logic.control.placement_groups import PgRecord, PgSpec, PgState, PgTable
from ember.logic.resources import ResourceSet

TABLE = "placement_groups"


def group_record(rec: PgRecord) -> dict[str, Any]:
    s = rec.spec
    return {"pg_id": s.pg_id, "bundles": [dict(b) for b in s.bundles], "strategy": s.strategy, "name": s.name,
            "namespace": s.namespace, "is_detached": s.is_detached, "job_id": s.job_id,
            "nodes": [[i, n] for i, n in sorted(rec.nodes.items())]}


def restore_groups(table: PgTable, records: list[dict[str, Any]], node_totals: dict[bytes, dict]) -> int:
    """Enter stored CREATED groups into an empty ``table``; returns how many."""
    for d in records:
        spec = PgSpec(bytes(d["pg_id"]), tuple(dict(b) for b in d["bundles"]), str(d["strategy"]), str(d["name"]),
                      str(d["namespace"]), bool(d["is_detached"]), bytes(d["job_id"]))
        rec = PgRecord(spec, state=PgState.CREATED, nodes={int(i): bytes(n) for i, n in d["nodes"]})
        table.groups[spec.pg_id] = rec
        if spec.name:
            table.names[(spec.namespace, spec.name)] = spec.pg_id
        for i, node in rec.nodes.items():
            table.reserved.setdefault(node, ResourceSet()).add(ResourceSet(spec.bundles[i]))
            table._held_on.setdefault(node, {})[spec.pg_id] = None
            if node not in table.totals:
                total = {k: v for k, v in (node_totals.get(node) or {}).items() if "_group_" not in k}
                table.totals[node] = ResourceSet(total)
    return len(records)
