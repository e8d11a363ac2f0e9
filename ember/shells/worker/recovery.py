"""Lost objects: the owner rebuilds them from lineage; borrowers report losses to the owner.

The decisions are ``ember.logic.owner.lineage.LineageTable``'s; this shell feeds it and
carries out its plans on the core worker's I/O thread.

* The submitter calls ``task_completed`` when a task ends with a return stored in a node's
  store (small inline returns live in the owner's memory and are never lost, so such tasks
  keep no lineage), and ``task_failed`` while rebuilds are going on.  Reference counting
  calls ``object_released`` when an owned object leaves scope.
* A reader whose pull of an object failed (the node daemon could not reach the copy, or the
  copy is gone) calls ``recover_blocking`` from its own thread.  The owner checks that the
  copy is really gone: a copy in its own node's store is used as the new location; else the
  control store must say the node holding the copy is dead (it is polled for up to
  ``heartbeat_timeout_s`` + 2 s).  Then a copy that another node pulled (the transfer
  port's copies) is made the primary and read there, if one is left; only then does the
  owner ask the table for a plan:
  resubmit the task that made the object (and the producers of arguments that are gone
  too), or fail the object with the error for the reason.
* A borrower sends ``ReportObjectLost`` to the owner, which answers with the object's status
  once the rebuild ended (``ObjectStatus``, as ``GetObjectStatus`` would).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, Optional

from ember import exceptions as exc
from ember.config import CONFIG
from ember.logic.owner.lineage import LineageTable, LossReason, RecoveryPlan, Unrecoverable
from ember.object_ref import ObjectRef
from ember.protocol import messages as m
from ember.shells.shared import serialization
from ember.shells.wire import rpc
from ember.shells.worker.memory_store import FAILED, READY, Entry

log = logging.getLogger("ember.recovery")

_SPEC_OVERHEAD_BYTES = 200       # a kept TaskRecord beyond its inline arguments
_DEATH_POLL_S = 0.25
_PROMOTE_TIMEOUT_S = 10.0
RECOVERIES_PER_GET_MAX = 8      # one get rebuilds (or re-reads) an object at most this often


class NodeStillAlive(Exception):
    """The node holding the copy is alive: the read failed for another reason; read again."""


class ObjectRecovery:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.table = LineageTable(CONFIG.max_lineage_bytes)
        self.active = 0                          # rebuilt tasks not finished yet
        self.dead_nodes: set[str] = set()        # node daemon addresses the control store said are dead
        self._holds: dict[bytes, list[ObjectRef]] = {}   # rebuilt task -> its recreated returns
        self._warned_eviction = False
        self.is_following = False                # subscribed to the control store's "nodes" channel
        cw.handlers[m.ReportObjectLost] = self._on_report_object_lost

    # --- node deaths (drivers follow the control store's "nodes" channel) ------------------------
    async def follow_node_deaths(self, conn: rpc.Connection) -> None:
        """Subscribe to node changes (a driver at connect, a worker once it leases on another
        node; both again after every reconnection to the control store)."""
        self.is_following = True
        self.cw.published_hooks["nodes"] = self._on_node_published
        await conn.request(m.Subscribe("nodes", b""))

    def follow_node_deaths_soon(self) -> None:
        """A worker leased on another node for the first time (I/O thread): follow node deaths
        from now on, so its tasks there are retried when that node dies or is cut off."""
        if not self.is_following:
            self.is_following = True
            self.cw.spawn(self._follow_in_background())

    async def _follow_in_background(self) -> None:
        try:
            await self.follow_node_deaths(await self.cw.gcs_conn())
        except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError) as err:
            self.is_following = False
            log.info("could not follow node deaths: %s", err)
            return
        self.cw.head.reconnected_hooks.append(self.follow_node_deaths)

    def _on_node_published(self, msg: m.Published) -> None:
        info = msg.data
        if isinstance(info, m.NodeInfo) and not info.is_alive and info.address not in self.dead_nodes:
            self.dead_nodes.add(info.address)
            self.cw.submitter.node_died(info.address)

    def node_is_dead(self, address: str) -> bool:
        return address in self.dead_nodes

    # --- from the submitter and reference counting (I/O thread) -------------------------------
    def task_completed(self, rec: Any, stored: list[bytes]) -> None:
        """A task ended; ``stored``: its returns kept in a node's store that the owner holds."""
        table = self.table
        if table.is_rebuilding(rec.task_id):
            self.active -= 1
            self._holds.pop(rec.task_id, None)
            retries_left = -1 if rec.max_retries < 0 else max(0, rec.max_retries - rec.attempt)
            table.task_finished(rec.task_id, rec, 0, retries_left, (), (), ())
            return
        if not stored or rec.num_returns < 0:
            return
        me = self.cw.address
        size = _SPEC_OVERHEAD_BYTES
        args: list[bytes] = []
        for arg in rec.args:
            if arg[0] == 0:
                size += len(arg[1])
            elif arg[2] == me:
                args.append(arg[1])
        retries_left = -1 if rec.max_retries < 0 else max(0, rec.max_retries - rec.attempt)
        table.task_finished(rec.task_id, rec, size, retries_left, tuple(rec.return_ids), tuple(stored),
                            tuple(args))
        if table.evicted_tasks_total and not self._warned_eviction:
            self._warned_eviction = True
            log.warning("The lineage kept to rebuild lost objects exceeds max_lineage_bytes=%d "
                        "(EMBER_MAX_LINEAGE_BYTES): the oldest is evicted, and objects it made cannot be "
                        "rebuilt if lost (ObjectReconstructionFailedLineageEvictedError).", table.max_bytes)

    def task_failed(self, rec: Any) -> None:
        if self.table.is_rebuilding(rec.task_id):
            self.active -= 1
            self._holds.pop(rec.task_id, None)
            self.table.task_failed(rec.task_id)

    def object_released(self, object_id: bytes) -> None:
        self.table.object_released(object_id)

    # --- readers (their own thread) ------------------------------------------------------------
    def after_failed_read(self, ref: ObjectRef, e: Entry, error: exc.ObjectLostError,
                          deadline: Optional[float]) -> Entry:
        """``get`` could not read ``ref`` where ``e`` says it is (a reader's thread): wait for it to
        be rebuilt or relocated, lending this task's CPU meanwhile; its new entry."""
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        blocked = self.cw._notify_blocked()
        try:
            return self.recover_blocking(ref, e, error, left)
        except concurrent.futures.TimeoutError:
            raise exc.GetTimeoutError(f"Get timed out: object {ref.hex()} was being rebuilt after its node "
                                      "died") from None
        finally:
            if blocked:
                self.cw._notify_unblocked()

    def recover_blocking(self, ref: ObjectRef, e: Entry, error: exc.ObjectLostError,
                         timeout_s: Optional[float]) -> Entry:
        """The read of ``ref`` at ``e.node_address`` failed with ``error``: rebuild or relocate it
        (owner) or ask the owner to (borrower); returns the object's entry once it is done."""
        if e.is_owned:
            coro = self._recover_owned_and_wait(ref._id, e.node_address, error.detail)
        else:
            coro = self._report_to_owner(ref, e.node_address, error.detail)
        return self.cw.run_sync(coro, timeout_s)

    async def _recover_owned_and_wait(self, object_id: bytes, lost_address: str, detail: str) -> Entry:
        try:
            await self.recover_owned(object_id, lost_address, detail)
        except NodeStillAlive:
            await asyncio.sleep(_DEATH_POLL_S)
        return await self._wait_done(object_id)

    async def _wait_done(self, object_id: bytes) -> Entry:
        store = self.cw.store
        fut = asyncio.get_running_loop().create_future()
        loop = self.cw.loop

        def done() -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

        if store.add_waiter(object_id, done):
            await fut
        e = store.get(object_id)
        if e is None:
            err = exc.ReferenceCountingAssertionError(object_id.hex(), self.cw.address, "")
            e = Entry(True)
            e.state, e.error = FAILED, err
        return e

    async def _report_to_owner(self, ref: ObjectRef, lost_address: str, detail: str) -> Entry:
        oid = ref._id
        e = Entry(False)
        try:
            conn = await self.cw.peers.get(ref._owner)
            st = await conn.request(m.ReportObjectLost(oid, lost_address, detail))
        except (OSError, rpc.ConnectionLost, TimeoutError) as err:
            e.state, e.error = FAILED, exc.OwnerDiedError(ref.hex(), ref._owner, detail=str(err))
        except rpc.RpcError as err:
            e.state, e.error = FAILED, exc.ObjectLostError(ref.hex(), ref._owner, detail=err.message)
        else:
            if st.status == "ready":
                e.state, e.data, e.node_id, e.node_address, e.size = (
                    READY, st.data, st.node_id, st.node_address, st.size_bytes)
            else:
                e.state, e.error = FAILED, serialization.deserialize(st.data)
        self.cw.store.replace(oid, e)
        return e

    def _on_report_object_lost(self, conn: rpc.Connection, request_id: int, msg: m.ReportObjectLost) -> None:
        self.cw.spawn(self._answer_report(conn, request_id, msg))

    async def _answer_report(self, conn: rpc.Connection, request_id: int, msg: m.ReportObjectLost) -> None:
        e = await self._recover_owned_and_wait(msg.object_id, msg.node_address, msg.detail)
        if e.state == READY:
            conn.reply(request_id, m.ObjectStatus("ready", e.data, e.node_id, e.node_address, e.size))
        else:
            data = serialization.serialize(e.error).to_bytes()
            conn.reply(request_id, m.ObjectStatus("failed", data, None, "", 0))

    # --- the owner's decision (I/O thread) -------------------------------------------------------
    async def recover_owned(self, object_id: bytes, lost_address: str, detail: str) -> None:
        """Make the owned object readable again, or fail it; returns once its entry is PENDING
        (rebuilding), READY elsewhere or FAILED.  Raises NodeStillAlive when its node lives."""
        store = self.cw.store
        e = store.get(object_id)
        if e is None or e.state != READY or e.data is not None or e.node_address != lost_address:
            return  # freed, already rebuilding or rebuilt, failed, or inline
        if lost_address != self.cw.node_address and self.cw.shm is not None and self.cw.shm.contains(object_id):
            e.node_id, e.node_address = self.cw.node_id, self.cw.node_address   # a copy here survives
            return
        if not await self._wait_node_dead(lost_address):
            raise NodeStillAlive(lost_address)
        e = store.get(object_id)
        if e is None or e.state != READY or e.node_address != lost_address:
            return  # changed while we asked the control store
        if await self._promote_copy(object_id, lost_address):
            return
        plan = self.table.plan_recovery(object_id, self._is_available)
        self._carry_out(object_id, plan, detail)

    async def _promote_copy(self, object_id: bytes, lost_address: str) -> bool:
        """A node that pulled the object may still hold a copy: make the first one found the
        primary and read it there, without running the task again (True when found).  The
        nodes are asked in turn, so that at most one copy becomes the primary."""
        try:
            conn = await self.cw.gcs_conn()
            nodes = [n for n in (await conn.request(m.GetNodes())).nodes
                     if n.is_alive and n.address != lost_address and n.address not in self.dead_nodes]
        except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError):
            return False
        for node in nodes:
            try:
                peer = await self.cw.peers.get(node.address)
                await peer.request(m.PromoteObjectCopy(object_id, self.cw.address), _PROMOTE_TIMEOUT_S)
            except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError):
                continue
            e = self.cw.store.get(object_id)
            if e is not None and e.state == READY and e.node_address == lost_address:
                e.node_id, e.node_address = node.node_id, node.address
                log.info("object %s lost with its node: its copy on %s is now the primary",
                         object_id.hex()[:16], node.address)
            return True
        return False

    def _is_available(self, object_id: bytes) -> bool:
        e = self.cw.store.get(object_id)
        if e is None:
            return False
        if e.state != READY or e.data is not None:
            return True   # being made, failed (the error travels on), or inline
        return e.node_address not in self.dead_nodes

    def _carry_out(self, object_id: bytes, plan: RecoveryPlan, detail: str) -> None:
        store = self.cw.store
        if plan.failure is not None:
            store.reset_pending(object_id)
            store.complete(object_id, error=self._error_for(object_id, plan.failure, detail))
            return
        if plan.is_pending:
            return
        recs = [r.spec for r in plan.resubmits]
        for r, rec in zip(plan.resubmits, recs):
            for oid in rec.return_ids:
                if oid in r.recreated:
                    store.add_pending(oid, True)
                elif not self._is_available(oid) or oid == object_id:
                    store.reset_pending(oid)
        for rec in recs:
            log.warning("rebuilding %s (task %s, attempt %d): its result %s was lost with its node",
                        rec.name, rec.task_id.hex(), rec.attempt + 1, object_id.hex())
            rec.attempt += 1
            rec.pending_deps = 0
            rec.arg_refs = [ObjectRef(arg[1], arg[2]) for arg in rec.args if arg[0] == 1]
            self.active += 1
        for r, rec in zip(plan.resubmits, recs):
            if r.recreated:   # held until the rebuild ends; consumers hold them as arguments too
                self._holds[rec.task_id] = [ObjectRef(oid, self.cw.address) for oid in r.recreated]
            self.cw.submitter.resubmit(rec)

    def _error_for(self, object_id: bytes, failure: Unrecoverable, detail: str) -> exc.ObjectLostError:
        site = self.cw.call_sites.get(object_id, "") if self.cw.call_sites is not None else ""
        return loss_error(object_id, failure, detail, self.cw.address, site, self.table.max_bytes)

    async def _wait_node_dead(self, address: str) -> bool:
        """True once the control store says the node daemon at ``address`` is dead (or never
        knew it); False when it stays alive for ``heartbeat_timeout_s`` + 2 s."""
        if address in self.dead_nodes:
            return True
        deadline = time.monotonic() + CONFIG.heartbeat_timeout_s + 2.0
        while True:
            conn = await self.cw.gcs_conn()
            nodes = (await conn.request(m.GetNodes())).nodes
            known = set()
            for n in nodes:
                known.add(n.address)
                if not n.is_alive:
                    self.dead_nodes.add(n.address)
            if address in self.dead_nodes or address not in known:
                self.dead_nodes.add(address)
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(_DEATH_POLL_S)


def loss_error(object_id: bytes, failure: Unrecoverable, detail: str, owner: str, site: str,
               max_lineage_bytes: int) -> exc.ObjectLostError:
    """The error a reader of ``object_id`` gets when it cannot be rebuilt (Ray's classes)."""
    hex_id = object_id.hex()
    why = f"{detail}. " if detail else ""
    if failure.object_id != object_id:
        why += f"Its task's argument {failure.object_id.hex()} is lost too and cannot be rebuilt. "
    reason = failure.reason
    if reason is LossReason.NO_LINEAGE:
        if failure.object_id[-4:] == b"\x00\x00\x00\x00":   # index 0: made by put(), not returned by a task
            return exc.ObjectLostError(hex_id, owner, site, detail=why + "Objects made by ember.put() cannot be rebuilt.")
        return exc.ObjectReconstructionFailedError(hex_id, owner, site, detail=why + "No lineage is kept for it.")
    if reason is LossReason.NOT_RETRYABLE:
        return exc.ObjectReconstructionFailedMaxAttemptsExceededError(
            hex_id, owner, site, detail=why + "Its task was submitted with max_retries=0.")
    if reason is LossReason.MAX_ATTEMPTS_EXCEEDED:
        return exc.ObjectReconstructionFailedMaxAttemptsExceededError(
            hex_id, owner, site, detail=why + "Its task used up its max_retries.")
    return exc.ObjectReconstructionFailedLineageEvictedError(
        hex_id, owner, site, detail=why + f"max_lineage_bytes={max_lineage_bytes} (EMBER_MAX_LINEAGE_BYTES).")
