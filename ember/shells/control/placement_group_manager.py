"""The control store's placement-group extension: the shell around ``PgTable``.

It turns messages into ``PgTable`` events and carries out the effects:

- ``PrepareBundles`` / ``CommitBundles``: requests to the node daemons; the answers (or a
  lost connection, as a "no") go back into the table.
- ``CancelBundles``: one-way to the node daemon; a removed group is also published on
  channel "placement_groups" so every node refuses its leases, and its actors are killed.
- ``PgChanged``: answers the creator's pending ``CreatePlacementGroup`` request and any
  ``WaitPlacementGroup``; refreshes the node records so ``available_resources()`` shows the
  group's resources at once (heartbeats then keep them right).
- ``WarnInfeasible``: a warning in the control store's log and on the creating driver's stderr.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from ember.logic.bundle_resources import committed_resources
from ember.logic.control import placement_groups as P
from ember.protocol import messages as m
from ember.shells.shared.task_set import TaskSet
from ember.shells.wire import rpc

PG_RETRY_PERIOD_S = 1.0   # a group a node refused is offered the nodes again at most this often

log = logging.getLogger("ember.gcs.pgs")


class PlacementGroupManager:
    """Appended to ``ControlStore.extensions``; ``on_<Message>`` methods get messages."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.table = P.PgTable()
        self.peers = rpc.Peers(store.token, store, "node")
        self.waiters: dict[bytes, list[asyncio.Future]] = {}
        self._tasks = TaskSet(log, "placement group")
        self._causes = 0
        self._nodes_version = -1
        self._retried_s = 0.0   # when waiting groups were last offered the nodes again (heartbeat_seen)

    def _cause(self, what: str) -> str:
        self._causes += 1
        return f"{what}-{self._causes}"

    # --- the brain ------------------------------------------------------------------------------
    def handle(self, event: Any) -> None:
        for eff in self.table.handle(event, time.monotonic()):
            if isinstance(eff, P.PrepareBundles):
                self._spawn(self._prepare(eff))
            elif isinstance(eff, P.CommitBundles):
                self._spawn(self._commit(eff))
            elif isinstance(eff, P.CancelBundles):
                self._cancel(eff)
            elif isinstance(eff, P.PgChanged):
                self._changed(eff)
            elif isinstance(eff, P.WarnInfeasible):
                self._warn(eff)

    def _sync_nodes(self) -> None:
        """Feed the node table to the PG table when it moved (registrations, deaths)."""
        if self.store.nodes.version == self._nodes_version:
            return
        self._nodes_version = self.store.nodes.version
        totals = {r.node_id: {k: v for k, v in r.resources_total.items() if "_group_" not in k}
                  for r in self.store.nodes.nodes.values() if r.is_alive}
        self.handle(P.NodesChanged(totals, self._cause("nodes")))

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    async def _node_conn(self, node_id: bytes) -> rpc.Connection:
        rec = self.store.nodes.nodes.get(node_id)
        if rec is None or not rec.is_alive:
            raise ConnectionError("the node is not alive")
        return await self.peers.get(rec.address)

    # --- effects ---------------------------------------------------------------------------------
    async def _prepare(self, eff: P.PrepareBundles) -> None:
        try:
            conn = await self._node_conn(eff.node_id)
            reply = await conn.request(m.PrepareBundles(eff.pg_id, eff.attempt, eff.bundles, eff.commit))
            is_ok, message = reply.is_ok, reply.message
        except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError) as e:
            is_ok, message = False, f"node unreachable: {e}"
        self.handle(P.BundlesPrepared(eff.pg_id, eff.attempt, eff.node_id, is_ok, message, self._cause("prepared"),
                                      tuple(int(i) for i, _ in eff.bundles)))

    async def _commit(self, eff: P.CommitBundles) -> None:
        try:
            conn = await self._node_conn(eff.node_id)
            await conn.request(m.CommitBundles(eff.pg_id, eff.attempt, eff.indices))
        except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError) as e:
            log.warning("commit of %s on %s failed: %s", eff.pg_id.hex(), eff.node_id.hex()[:8], e)
            return  # the node is dying: its death re-places the bundles
        self.handle(P.BundlesCommitted(eff.pg_id, eff.attempt, eff.node_id, self._cause("committed")))

    def _cancel(self, eff: P.CancelBundles) -> None:
        rec = self.store.nodes.nodes.get(eff.node_id)
        if rec is None or not rec.is_alive:
            return
        conn = self.peers.get_nowait(rec.address)
        if conn is not None:
            conn.send(m.CancelBundles(eff.pg_id, eff.indices, eff.is_removed))
        else:
            self._spawn(self._send_cancel(rec.address, eff))
        if eff.is_removed:  # its resources leave the node record now (only a removal had committed ones)
            group = self.table.get(eff.pg_id)
            if group is not None:
                for i in eff.indices:
                    for k in committed_resources(eff.pg_id.hex(), i, group.spec.bundles[i]):
                        rec.resources_total.pop(k, None)
                        rec.resources_available.pop(k, None)
                self._bump_nodes()

    async def _send_cancel(self, address: str, eff: P.CancelBundles) -> None:
        try:
            conn = await self.peers.get(address)
            conn.send(m.CancelBundles(eff.pg_id, eff.indices, eff.is_removed))
        except (OSError, rpc.ConnectionLost, TimeoutError):
            pass

    def _changed(self, eff: P.PgChanged) -> None:
        rec = self.table.get(eff.pg_id)
        self._persist(eff, rec)
        waiting = self.waiters.pop(eff.pg_id, [])
        if waiting:
            info = self.info(eff.pg_id)
            for fut in waiting:
                if not fut.done():
                    fut.set_result(info)
        if eff.state is P.PgState.CREATED and rec is not None:
            for node_id in set(rec.nodes.values()):
                self._show_created(node_id, rec)
            self._bump_nodes()
            self._publish_view()  # removals need none: nodes refuse a removed group's leases
        if eff.state is P.PgState.REMOVED:
            self.store.publish("placement_groups", b"", m.PlacementGroupRemoved(eff.pg_id))
            self._kill_actors(eff.pg_id)

    def _show_created(self, node_id: bytes, group: P.PgRecord) -> None:
        """Make the node record show the group's resources now (the next heartbeat confirms)."""
        node = self.store.nodes.nodes.get(node_id)
        if node is None or not node.is_alive:
            return
        shown = self.table.bundle_resources_on(node_id, group.spec.pg_id)
        node.resources_total.update(shown)
        node.resources_available.update(shown)
        for i, n in group.nodes.items():
            if n == node_id:
                for k, v in group.spec.bundles[i].items():
                    node.resources_available[k] = node.resources_available.get(k, 0.0) - v

    def _bump_nodes(self) -> None:
        self.store.nodes.version += 1
        self._nodes_version = self.store.nodes.version

    def _publish_view(self) -> None:
        """Node daemons route group leases by their view: push it now if there is more than one node."""
        alive = [r for r in self.store.nodes.nodes.values() if r.is_alive]
        if len(alive) > 1:
            self.store.publish("placement_groups", b"", self.store._view())

    def _kill_actors(self, pg_id: bytes) -> None:
        actors = next((e for e in self.store.extensions if hasattr(e, "kill_actors_in_group")), None)
        if actors is not None:
            actors.kill_actors_in_group(pg_id)

    def _warn(self, eff: P.WarnInfeasible) -> None:
        log.warning("%s", eff.message)
        rec = self.table.get(eff.pg_id)
        if rec is not None:
            self.store.publish("logs", rec.spec.job_id, m.LogLines(rec.spec.job_id, 0, b"", True,
                                                                   ["Warning: " + eff.message]))

    # --- queries --------------------------------------------------------------------------------------
    def info(self, pg_id: bytes) -> m.PlacementGroupInfo:
        rec = self.table.get(pg_id)
        if rec is None:
            raise ValueError(f"placement group {pg_id.hex()} is unknown to the control store")
        s = rec.spec
        nodes = [rec.nodes.get(i) if rec.state is P.PgState.CREATED else None for i in range(len(s.bundles))]
        addresses = [self.store.nodes.nodes[n].address if n in self.store.nodes.nodes else "" for n in nodes]
        state = rec.state.name if rec.state not in (P.PgState.PREPARING, P.PgState.COMMITTING) else "PENDING"
        return m.PlacementGroupInfo(pg_id, s.name, s.namespace, [dict(b) for b in s.bundles], s.strategy, state,
                                    s.is_detached, s.job_id, nodes, addresses)

    def is_removed(self, pg_id: bytes) -> bool:
        rec = self.table.get(pg_id)
        return rec is not None and rec.state is P.PgState.REMOVED

    def _wait(self, pg_id: bytes) -> "asyncio.Future[m.PlacementGroupInfo]":
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(pg_id, []).append(fut)
        return fut

    # --- messages -----------------------------------------------------------------------------------------
    def on_CreatePlacementGroup(self, conn: rpc.Connection, msg: m.CreatePlacementGroup) -> Any:
        """Answered once the group is created (or removed): the creator's wait() needs no round trip."""
        self._sync_nodes()
        spec = P.PgSpec(msg.pg_id, tuple(dict(b) for b in msg.bundles), msg.strategy, msg.name, msg.namespace,
                        msg.is_detached, msg.job_id)
        fut = self._wait(msg.pg_id)
        try:
            self.handle(P.PgCreated(spec, self._cause("create")))
        except ValueError:
            self.waiters[msg.pg_id].remove(fut)
            raise
        if fut.done():
            return fut.result()
        return _await(fut)

    def on_WaitPlacementGroup(self, conn: rpc.Connection, msg: m.WaitPlacementGroup) -> Any:
        info = self.info(msg.pg_id)
        if info.state in ("CREATED", "REMOVED") or msg.timeout_s == 0:
            return info
        fut = self._wait(msg.pg_id)
        return self._wait_info(msg.pg_id, fut, msg.timeout_s)

    async def _wait_info(self, pg_id: bytes, fut: asyncio.Future, timeout_s: Optional[float]) -> m.PlacementGroupInfo:
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            return self.info(pg_id)
        finally:
            waiting = self.waiters.get(pg_id)
            if waiting and fut in waiting:
                waiting.remove(fut)

    def on_RemovePlacementGroup(self, conn: rpc.Connection, msg: m.RemovePlacementGroup) -> m.Ok:
        self.handle(P.PgRemoveRequested(msg.pg_id, self._cause("remove")))
        return m.Ok()

    def on_GetPlacementGroup(self, conn: rpc.Connection, msg: m.GetPlacementGroup) -> m.PlacementGroupInfo:
        pg_id = msg.pg_id if msg.pg_id is not None else self.table.lookup_named(msg.name, msg.namespace)
        if pg_id is None:
            raise ValueError(f"Failed to look up placement group with name: {msg.name}")
        return self.info(pg_id)

    def on_ListPlacementGroups(self, conn: rpc.Connection, msg: m.ListPlacementGroups) -> m.PlacementGroupList:
        return m.PlacementGroupList([self.info(pg_id) for pg_id in list(self.table.groups)])

    # --- storage (issue #11: created groups outlive the head; ember/logic/control/pg_records.py) -------------------
    def _persist(self, eff: P.PgChanged, rec: Optional[P.PgRecord]) -> None:
        from ember.logic.control import pg_records
        if eff.state is P.PgState.CREATED and rec is not None:
            self.store.durable.save(pg_records.TABLE, eff.pg_id, pg_records.group_record(rec))
        elif eff.state is P.PgState.REMOVED:
            self.store.durable.forget(pg_records.TABLE, eff.pg_id)

    def restore_from(self, durable: Any) -> None:
        from ember.logic.control import pg_records
        totals = {node_id: d.get("resources_total") or {} for node_id, d in durable.load_table("nodes")}
        count = pg_records.restore_groups(self.table, [d for _, d in durable.load_table(pg_records.TABLE)], totals)
        if count:
            log.info("restored %d placement groups", count)

    # --- hooks the control store calls ------------------------------------------------------------------------
    def nodes_changed(self) -> None:
        self._sync_nodes()

    def heartbeat_seen(self) -> None:
        """Availability may have moved: only groups waiting for room care (none: nothing to do).

        A group that a node refused (its room was taken by leases when it asked) waits for
        NodesChanged; the node table's version moves only on registrations and deaths, so without
        this a refused group stayed PENDING on an idle cluster. Offered again at most once a second."""
        if not self.table.has_waiting():
            return
        now = time.monotonic()
        if self.store.nodes.version == self._nodes_version and now - self._retried_s < PG_RETRY_PERIOD_S:
            return
        self._retried_s = now
        self._nodes_version = -1   # feed the node table even if it did not move
        self._sync_nodes()

    def node_died(self, node_id: bytes) -> None:
        self._nodes_version = self.store.nodes.version
        self.handle(P.NodeDied(node_id, self._cause("node-died")))

    def job_finished(self, job_id: bytes) -> None:
        self.handle(P.JobFinished(job_id, self._cause("job-finished")))


async def _await(fut: "asyncio.Future[Any]") -> Any:
    return await fut
