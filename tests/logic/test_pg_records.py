"""Placement groups restored from storage (ember/logic/control/pg_records.py)."""
from __future__ import annotations

from ember.logic.control import pg_records
from ember.logic.control import placement_groups as P

A, B = b"a" * 16, b"b" * 16


def _created_table() -> tuple[P.PgTable, bytes]:
    t = P.PgTable()
    t.handle(P.NodesChanged({A: {"CPU": 2.0}, B: {"CPU": 2.0}}))
    pg = b"g" * 16
    effects = t.handle(P.PgCreated(P.PgSpec(pg, ({"CPU": 1.0}, {"CPU": 1.0}), "STRICT_SPREAD", "named", "ns")))
    for eff in effects:
        t.handle(P.BundlesPrepared(pg, eff.attempt, eff.node_id, True, indices=tuple(i for i, _ in eff.bundles)))
    for node in (A, B):
        t.handle(P.BundlesCommitted(pg, t.get(pg).attempt, node))
    assert t.get(pg).state is P.PgState.CREATED
    return t, pg


def test_a_created_group_is_restored_with_its_bundles_and_name() -> None:
    old, pg = _created_table()
    record = pg_records.group_record(old.get(pg))
    new = P.PgTable()
    assert pg_records.restore_groups(new, [record], {A: {"CPU": 2.0}, B: {"CPU": 2.0}}) == 1
    rec = new.get(pg)
    assert rec.state is P.PgState.CREATED and rec.nodes == old.get(pg).nodes
    assert new.lookup_named("named", "ns") == pg
    assert new.reserved[A].to_dict() == {"CPU": 1.0}
    new.check_invariants()
    assert new.handle(P.NodesChanged({A: {"CPU": 2.0}, B: {"CPU": 2.0}})) == []  # both came back: nothing moves


def test_a_node_that_does_not_come_back_reschedules_the_restored_group() -> None:
    old, pg = _created_table()
    new = P.PgTable()
    pg_records.restore_groups(new, [pg_records.group_record(old.get(pg))], {A: {"CPU": 2.0}, B: {"CPU": 2.0}})
    c = b"c" * 16
    effects = new.handle(P.NodesChanged({A: {"CPU": 2.0}, c: {"CPU": 2.0}}))  # B is gone, C joined
    assert new.get(pg).state is P.PgState.PREPARING
    assert [e.node_id for e in effects if isinstance(e, P.PrepareBundles)] == [c]
    new.check_invariants()
