"""The node daemon's placement-group part: the shell around ``BundleTable``.

``PrepareBundles`` / ``CommitBundles`` / ``CancelBundles`` come from the control store; each
resource change goes to the lease manager (``on_bundle_resources``), whose effects the
daemon runs.  Cancelling a group's last bundles here first ends the leases that use the
group's resources (their workers are killed: Ray kills what runs in a removed group).  A
removed group's lease requests, queued here or arriving later, get a
``TaskPlacementGroupRemoved`` error.
"""
from __future__ import annotations

import logging
from typing import Any

from ember.logic.bundle_resources import group_of
from ember.logic.node.bundles import BundleTable
from ember.protocol import messages as m
from ember.shells.wire import rpc

log = logging.getLogger("ember.node.bundles")

REMOVED_KIND = "TaskPlacementGroupRemoved"


class BundleService:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.table = BundleTable()

    def on_PrepareBundles(self, conn: rpc.Connection, request_id: int, msg: m.PrepareBundles) -> None:
        leases = self.daemon.leases
        reason, change = self.table.prepare(msg.pg_id, [(int(i), r) for i, r in msg.bundles], leases.available,
                                            f"prepare-{msg.attempt}")
        if reason is not None:
            conn.reply(request_id, m.BundlesPrepared(False, reason))
            return
        if msg.commit:
            committed = self.table.commit(msg.pg_id, [int(i) for i, _ in msg.bundles], f"commit-{msg.attempt}")
            change.add_total = committed.add_total
        conn.reply(request_id, m.BundlesPrepared(True, ""))
        self.daemon.run_effects(leases.on_bundle_resources(change))

    def on_CommitBundles(self, conn: rpc.Connection, request_id: int, msg: m.CommitBundles) -> None:
        change = self.table.commit(msg.pg_id, [int(i) for i in msg.indices], f"commit-{msg.attempt}")
        conn.reply(request_id, m.Ok())
        self.daemon.run_effects(self.daemon.leases.on_bundle_resources(change))

    def on_CancelBundles(self, conn: rpc.Connection, request_id: int, msg: m.CancelBundles) -> None:
        leases = self.daemon.leases
        held = {i for (p, i) in self.table.bundles if p == msg.pg_id}
        if held and held <= {int(i) for i in msg.indices}:
            self._end_leases(msg.pg_id.hex())
        change = self.table.cancel(msg.pg_id, [int(i) for i in msg.indices], msg.is_removed, "cancel")
        self.daemon.run_effects(leases.on_bundle_resources(change))
        if msg.is_removed:
            self._refuse_queued(msg.pg_id)

    def on_removed(self, msg: m.PlacementGroupRemoved) -> None:
        """Published by the control store to every node."""
        self.table.cancel(msg.pg_id, [], True, "removed")
        self._refuse_queued(msg.pg_id)

    def refuses(self, strategy: list) -> bool:
        """Is this lease request for a removed group?"""
        return bool(strategy) and strategy[0] == "PLACEMENT_GROUP" and strategy[1] in self.table.removed

    def _end_leases(self, pg_hex: str) -> None:
        leases = self.daemon.leases
        for lease in list(leases.leases.values()):
            if group_of(lease.resources.units) == pg_hex:
                log.info("placement group %s removed: ending lease of worker %s", pg_hex, lease.worker_id.hex()[-8:])
                self.daemon.run_effects(leases.on_lease_returned(lease.lease_id, True))

    def _refuse_queued(self, pg_id: bytes) -> None:
        leases = self.daemon.leases
        gone = [r for r in leases.queue if self.refuses(r.strategy)]
        if not gone:
            return
        leases.queue = [r for r in leases.queue if not self.refuses(r.strategy)]
        for req in gone:
            conn, request_id = req.req_id
            conn.reply_error(request_id, REMOVED_KIND, removed_message(pg_id))


def removed_message(pg_id: bytes) -> str:
    return f"The placement group {pg_id.hex()} has been removed."
