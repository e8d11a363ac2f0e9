"""What a control store restored from storage must learn again (issue #11): the node table and
which actor workers still run.  An extension of ``ControlStore`` (hooks, no message routing of
its own but ``NodeWorkers``).

- **Nodes are stored** (table ``nodes``: address, resources, head or not, alive or dead) on
  registration and on death.  A restored head knows every node: a dead id stays refused
  (``NodeDeclaredDead``) and a node that was alive must register again within
  ``max(heartbeat_timeout_s, RESTORED_NODE_GRACE_S)`` or it is declared dead (its actors are
  restarted elsewhere), as Ray's GCS does with raylets that do not come back.
- **Reconciliation.**  A node daemon that registers sends ``NodeWorkers`` (the workers alive on
  it).  An actor restored as alive whose worker on that node is not among them died while no
  head listened (its ``WorkerExited`` report was lost): it is handled as a worker death now
  (restart or death by its ``max_restarts``).  Actors whose workers still run are left alone.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ember.config import CONFIG
from ember.logic.control.nodes import NodeRecord
from ember.logic.node.head_watch import RESTORED_NODE_GRACE_S  # node daemons rely on it (Rule 5)
from ember.protocol import messages as m
from ember.shells.wire import rpc

log = logging.getLogger("ember.gcs")

_TABLE = "nodes"


class HeadRecovery:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._saved: dict[bytes, bool] = {}  # node id -> is_alive as stored

    # --- persisting the node table -------------------------------------------------------------
    def _save(self, rec: NodeRecord) -> None:
        if self._saved.get(rec.node_id) == rec.is_alive:
            return
        self.store.durable.save(_TABLE, rec.node_id, {
            "address": rec.address, "resources_total": rec.resources_total, "is_head": rec.is_head,
            "store_dir": rec.store_dir, "labels": rec.labels, "is_alive": rec.is_alive,
            "capacity": rec.object_store_capacity_bytes})
        self._saved[rec.node_id] = rec.is_alive

    def nodes_changed(self) -> None:
        for rec in list(self.store.nodes.nodes.values()):
            self._save(rec)

    def node_died(self, node_id: bytes) -> None:
        rec = self.store.nodes.nodes.get(node_id)
        if rec is not None:
            self._save(rec)

    def restore_from(self, durable: Any) -> None:
        now = time.monotonic()
        grace_s = max(0.0, RESTORED_NODE_GRACE_S - CONFIG.heartbeat_timeout_s)
        table = self.store.nodes
        for node_id, d in durable.load_table(_TABLE):
            rec = NodeRecord(node_id, str(d["address"]), dict(d["resources_total"]), {}, bool(d["is_head"]),
                             str(d["store_dir"]), dict(d["labels"]), is_alive=bool(d["is_alive"]),
                             last_heartbeat_s=now + grace_s,
                             object_store_capacity_bytes=int(d.get("capacity") or 0))
            if rec.is_alive:
                rec.resources_available = dict(rec.resources_total)
            table.nodes[node_id] = rec
            self._saved[node_id] = rec.is_alive
        if table.nodes:
            table.version += 1
            log.info("restored %d nodes (%d dead)", len(table.nodes),
                     sum(1 for r in table.nodes.values() if not r.is_alive))

    # --- reconciliation ----------------------------------------------------------------------------
    def on_NodeWorkers(self, conn: rpc.Connection, msg: m.NodeWorkers) -> m.Ok:
        actors = next((e for e in self.store.extensions if hasattr(e, "restored_workers")), None)
        if actors is None:
            return m.Ok()
        alive = set(msg.worker_ids)
        gone = [w for w, node in actors.restored_workers.items() if node == msg.node_id and w not in alive]
        for worker_id in gone:
            actors.restored_workers.pop(worker_id, None)
            log.warning("the worker %s of a restored actor is gone from node %s: it died while no head "
                        "listened", worker_id.hex()[-8:], msg.node_id.hex()[:8])
            actors.on_WorkerExited(conn, m.WorkerExited(worker_id, msg.node_id,
                                                        "exited while the control store was away"))
        return m.Ok()
