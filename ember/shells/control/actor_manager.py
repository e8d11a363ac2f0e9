"""The control store's actor extension: the shell around ``ActorTable``.

Turns messages into ``ActorTable`` events and carries out its effects:

- ``ScheduleActor``: ask a node daemon for a dedicated worker (``RequestLease`` with
  ``for_actor=True``, following spillback), record the placement, then send the worker
  ``CreateActor`` and feed back ``ActorCreated`` / ``ActorCreationFailed``.
- ``KillActorWorker``: return the worker's lease as dead (the node daemon kills it).
- ``PublishActor``: publish an ``ActorInfo`` on channel "actors", key actor id.
- ``Persist``: write the record through the control store's storage (docs/head.md).

Worker deaths arrive as ``WorkerExited`` from node daemons; they restart the actor the
worker hosted and end the non-detached actors it owned.  The table decides everything.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

from ember.config import CONFIG
from ember.logic.control import actors as A
from ember.protocol.actor_spec import decode_creation_spec
from ember.protocol import messages as m
from ember.shells.shared.task_set import TaskSet
from ember.shells.wire import rpc

log = logging.getLogger("ember.gcs.actors")

_UNKNOWN_ACTOR_MESSAGE = ("The actor is unknown to the control store: it was never registered, or its "
                          "record was dropped long after it died.")


class _Lease:
    __slots__ = ("node_id", "conn", "lease_id")

    def __init__(self, node_id: bytes, conn: rpc.Connection, lease_id: bytes) -> None:
        self.node_id = node_id
        self.conn = conn
        self.lease_id = lease_id


class ActorManager:
    """Appended to ``ControlStore.extensions``; ``on_<Message>`` methods get messages."""

    def __init__(self, store: Any) -> None:
        self.store = store
        # Issue #3: an actor whose __init__ raises is restarted up to max_restarts (Ray itself
        # marks it dead at once; ActorTable(is_init_error_restartable=False) gives that).
        self.table = A.ActorTable(is_init_error_restartable=True)
        self.peers = rpc.Peers(store.token, store, "node")
        self.leases: dict[bytes, _Lease] = {}             # worker id -> its actor lease
        self.actor_of_worker: dict[bytes, bytes] = {}     # worker id -> actor id placed there
        self.versions: dict[bytes, int] = {}              # actor id -> last published version
        self.last_failure: dict[bytes, str] = {}          # actor id -> why its last incarnation ended
        self._specs: dict[bytes, m.ActorCreationSpec] = {}
        self._tasks = TaskSet(log, "actor scheduling")
        self._causes = 0
        self.restored_workers: dict[bytes, bytes] = {}    # worker id -> node id, actors restored from storage

    # --- the brain --------------------------------------------------------------------------
    def _cause(self, what: str) -> str:
        self._causes += 1
        return f"{what}-{self._causes}"

    def handle(self, event: Any) -> list[Any]:
        effects = self.table.handle(event, time.monotonic())
        for eff in effects:
            if isinstance(eff, A.ScheduleActor):
                self._spawn(self._schedule(eff))
            elif isinstance(eff, A.KillActorWorker):
                self._kill_worker(eff.worker_id)
            elif isinstance(eff, A.PublishActor):
                self._publish(eff)
            elif isinstance(eff, A.Persist):
                self.store.durable.actor_persisted(eff.actor_id, eff.record)
        return effects

    def restore_from(self, durable: Any) -> None:
        """Issue #11: load the actor table a previous control store persisted."""
        records = [rec for _, rec in durable.load_table("actors")]
        if not records:
            return
        self.table.restore({"format": A.SNAPSHOT_FORMAT, "actors": records})
        # Callers drop ActorInfo whose version is not above the last they saw: versions lived
        # in the old process, so start the restored ones above any it can have reached.
        base = int(time.time() * 1000)
        for rec in self.table.list_actors({}):
            self.versions[rec.actor_id] = base
            if rec.worker_id is not None and rec.state is not A.ActorState.DEAD:
                self.actor_of_worker[rec.worker_id] = rec.actor_id
                if rec.node_id is not None:
                    self.restored_workers[rec.worker_id] = rec.node_id
        self.handle(A.TableRestored(cause_id=self._cause("restored")))
        log.info("restored %d actors", len(records))

    def _spawn(self, coro: Any) -> None:
        self._tasks.spawn(coro)

    def _creation_spec(self, actor_id: bytes, data: bytes) -> m.ActorCreationSpec:
        spec = self._specs.get(actor_id)
        if spec is None:
            spec = self._specs[actor_id] = decode_creation_spec(data)
        return spec

    # --- effects ----------------------------------------------------------------------------------
    def _kill_worker(self, worker_id: bytes) -> None:
        lease = self.leases.pop(worker_id, None)
        if lease is not None and not lease.conn.closed:
            lease.conn.send(m.ReturnLease(lease.lease_id, True))
        elif worker_id in self.restored_workers:  # its lease died with the old control store
            self._spawn(self._kill_restored_worker(worker_id, self.restored_workers.pop(worker_id)))

    async def _kill_restored_worker(self, worker_id: bytes, node_id: bytes) -> None:
        rec = self.store.nodes.nodes.get(node_id)
        if rec is not None and rec.is_alive:
            conn = await self.peers.get(rec.address)
            await conn.request(m.KillWorkerProcess(worker_id, True))

    def _info(self, actor_id: bytes) -> m.ActorInfo:
        rec = self.table.get(actor_id)
        version = self.versions.get(actor_id, 0)
        if rec is None:
            return m.ActorInfo(actor_id, version, "DEAD", "", 0, "UNKNOWN", _UNKNOWN_ACTOR_MESSAGE, None)
        address = (rec.worker_address or "") if rec.state is A.ActorState.ALIVE else ""
        return self._info_of(actor_id, version, rec.state, address, rec.incarnation, rec.death)

    def _info_of(self, actor_id: bytes, version: int, state: A.ActorState, address: str, incarnation: int,
                 death: Optional[A.DeathCause]) -> m.ActorInfo:
        if death is not None:
            return m.ActorInfo(actor_id, version, state.name, "", incarnation, death.kind.name, death.message,
                               death.error_bytes)
        return m.ActorInfo(actor_id, version, state.name, address, incarnation, "",
                           self.last_failure.get(actor_id, ""), None)

    def _publish(self, eff: A.PublishActor) -> None:
        version = self.versions.get(eff.actor_id, 0) + 1
        self.versions[eff.actor_id] = version
        info = self._info_of(eff.actor_id, version, eff.state, eff.address or "", eff.incarnation, eff.death)
        self.store.publish("actors", eff.actor_id, info)
        if eff.state is A.ActorState.DEAD:  # final: nothing more to tell subscribers
            self._specs.pop(eff.actor_id, None)
            self.last_failure.pop(eff.actor_id, None)
            self.store.subscribers.pop(("actors", eff.actor_id), None)

    def _subscribe(self, conn: rpc.Connection, actor_id: bytes) -> None:
        self.store.subscribers.setdefault(("actors", actor_id), set()).add(conn)

    # --- placing an actor ----------------------------------------------------------------------------
    def _wants_worker(self, actor_id: bytes, incarnation: int) -> bool:
        rec = self.table.get(actor_id)
        return (rec is not None and rec.incarnation == incarnation and rec.worker_id is None
                and rec.state in (A.ActorState.PENDING_CREATION, A.ActorState.RESTARTING))

    def _node_address(self, preferred: str) -> Optional[str]:
        alive = [r for r in self.store.nodes.nodes.values() if r.is_alive]
        for rec in alive:
            if rec.address == preferred:
                return preferred
        if not alive:
            return None
        best = max(alive, key=lambda r: (r.resources_available.get("CPU", 0.0), r.address))
        return best.address

    def _is_group_removed(self, pg_id: bytes) -> bool:
        pgs = next((e for e in self.store.extensions if hasattr(e, "is_removed")), None)
        return pgs is not None and pgs.is_removed(pg_id)

    async def _lease_worker(self, eff: A.ScheduleActor, spec: m.ActorCreationSpec,
                            strategy: list) -> Optional[tuple[m.LeaseGranted, rpc.Connection]]:
        """A granted lease for the actor, or None once the actor no longer wants one."""
        address = self._node_address(spec.owner_node_address)
        is_spillback, warned = False, False
        while self._wants_worker(eff.actor_id, eff.incarnation):
            if strategy[0] == "PLACEMENT_GROUP" and self._is_group_removed(strategy[1]):
                self.kill_actors_in_group(strategy[1])
                return None
            if address is None:
                await asyncio.sleep(CONFIG.infeasible_retry_s)
                address = self._node_address(spec.owner_node_address)
                continue
            req = m.RequestLease(spec.job_id, dict(eff.resources), strategy, is_spillback, True, spec.class_name,
                                 dict(eff.placement_resources), spec.handle_meta.get("runtime_env"))
            try:
                conn = await self.peers.get(address)
                reply = await conn.request(req)
            except rpc.RpcError as e:
                if e.kind == "RuntimeEnvSetupError":
                    self._runtime_env_failed(eff.actor_id, e.message)
                    return None
                if e.kind != "Unschedulable":
                    log.warning("lease for actor %s on %s failed: %s; retrying", eff.actor_id.hex()[:12], address, e)
                    await asyncio.sleep(0.5)
                    address, is_spillback = self._node_address(spec.owner_node_address), False
                    continue
                self.handle(A.ActorUnschedulable(actor_id=eff.actor_id, incarnation=eff.incarnation,
                                                 message=e.message, cause_id=self._cause("unschedulable")))
                return None
            except (OSError, rpc.ConnectionLost, TimeoutError) as e:
                log.warning("lease for actor %s on %s failed: %s; retrying", eff.actor_id.hex()[:12], address, e)
                await asyncio.sleep(0.5)
                address, is_spillback = self._node_address(spec.owner_node_address), False
                continue
            if isinstance(reply, m.LeaseGranted):
                return reply, conn
            if isinstance(reply, m.LeaseSpillback):
                if self.store.nodes.is_dead(reply.node_id):  # the daemon's view is older than ours
                    await asyncio.sleep(CONFIG.heartbeat_interval_s)
                    address, is_spillback = self._node_address(spec.owner_node_address), False
                    continue
                address, is_spillback = reply.address, True
                continue
            if not warned:
                warned = True
                log.warning("actor %s (%s) cannot be placed now: %s", eff.actor_id.hex()[:12], spec.class_name,
                            getattr(reply, "message", reply))
            await asyncio.sleep(CONFIG.infeasible_retry_s)
            address, is_spillback = self._node_address(spec.owner_node_address), False
        return None

    def _runtime_env_failed(self, actor_id: bytes, message: str) -> None:
        from ember.exceptions import RuntimeEnvSetupError
        from ember.shells.shared import serialization
        error = serialization.serialize(RuntimeEnvSetupError(message)).to_bytes()
        self.handle(A.ActorSetupFailed(actor_id=actor_id, message=f"runtime env setup failed: {message}",
                                       error_bytes=error, cause_id=self._cause("runtime-env-failed")))

    async def _schedule(self, eff: A.ScheduleActor) -> None:
        rec = self.table.get(eff.actor_id)
        if rec is None:
            return
        spec = self._creation_spec(eff.actor_id, eff.creation_spec)
        strategy = list(eff.scheduling_strategy) if eff.scheduling_strategy else ["DEFAULT"]
        leased = await self._lease_worker(eff, spec, strategy)
        if leased is None:
            return
        granted, node_conn = leased
        self.leases[granted.worker_id] = _Lease(granted.node_id, node_conn, granted.lease_id)
        self.actor_of_worker[granted.worker_id] = eff.actor_id
        self.handle(A.ActorPlaced(actor_id=eff.actor_id, node_id=granted.node_id,
                                  worker_address=granted.worker_address, worker_id=granted.worker_id,
                                  cause_id=self._cause("placed")))
        rec = self.table.get(eff.actor_id)
        if rec is None or rec.worker_id != granted.worker_id:
            return  # not wanted after all: the table ordered the worker killed
        try:
            wconn = await self.peers.get(granted.worker_address)
            reply = await wconn.request(m.CreateActor(eff.actor_id, eff.incarnation, eff.creation_spec,
                                                      granted.gpu_ids))
        except (OSError, rpc.ConnectionLost, TimeoutError):
            return  # the worker died: its WorkerExited report moves the actor on
        except rpc.RpcError as e:
            reply = m.ActorCreationReply(None, f"The worker could not create the actor: {e.message}")
        if reply.error is None and not reply.message:
            self.handle(A.ActorCreated(actor_id=eff.actor_id, worker_id=granted.worker_id,
                                       cause_id=self._cause("created")))
        else:
            self.handle(A.ActorCreationFailed(actor_id=eff.actor_id, worker_id=granted.worker_id,
                                              message=reply.message, error_bytes=reply.error,
                                              cause_id=self._cause("init-failed")))

    # --- messages ----------------------------------------------------------------------------------------
    def on_RegisterActor(self, conn: rpc.Connection, msg: m.RegisterActor) -> m.ActorRegistration:
        spec = A.ActorSpec(actor_id=msg.actor_id, job_id=msg.job_id, owner_address=msg.owner_address,
                           owner_worker_id=msg.owner_worker_id, class_name=msg.class_name,
                           creation_spec=msg.creation_spec, name=msg.name, namespace=msg.namespace,
                           is_detached=msg.is_detached, resources=dict(msg.resources),
                           scheduling_strategy=list(msg.strategy), max_restarts=msg.max_restarts,
                           placement_resources=dict(msg.placement_resources))
        self._subscribe(conn, msg.actor_id)
        effects = self.handle(A.ActorRegistered(spec=spec, request_id=0, get_if_exists=msg.get_if_exists,
                                                cause_id=self._cause("register")))
        for eff in effects:
            if isinstance(eff, A.ReplyError):
                raise ValueError(eff.message)
            if isinstance(eff, A.Reply):
                if eff.is_existing:
                    self._subscribe(conn, eff.actor_id)
                return m.ActorRegistration(eff.actor_id, eff.is_existing, self._handle_meta(eff.actor_id))
        raise RuntimeError("the actor table gave no reply to a registration")

    def _handle_meta(self, actor_id: bytes) -> dict:
        rec = self.table.get(actor_id)
        if rec is None:
            return {}
        return self._creation_spec(actor_id, rec.spec.creation_spec).handle_meta

    def on_GetActorInfo(self, conn: rpc.Connection, msg: m.GetActorInfo) -> m.ActorInfo:
        info = self._info(msg.actor_id)
        if msg.subscribe and info.state != "DEAD":
            self._subscribe(conn, msg.actor_id)
        return info

    def on_GetNamedActor(self, conn: rpc.Connection, msg: m.GetNamedActor) -> m.NamedActor:
        actor_id = self.table.lookup_named(msg.name, msg.namespace)
        if actor_id is None:
            raise ValueError(f"Failed to look up actor with name '{msg.name}'. This could because 1. You "
                             f"are trying to look up a named actor you didn't create. 2. The named actor died. "
                             f"3. You did not use a namespace matching the namespace of the actor.")
        return m.NamedActor(actor_id, self._handle_meta(actor_id))

    def on_ListNamedActors(self, conn: rpc.Connection, msg: m.ListNamedActors) -> m.NamedActorList:
        found = self.table.list_named(None if msg.all_namespaces else msg.namespace)
        return m.NamedActorList([[ns, name] for ns, name in found])

    def on_KillActor(self, conn: rpc.Connection, msg: m.KillActor) -> m.Ok:
        self.handle(A.ActorKilled(actor_id=msg.actor_id, no_restart=msg.no_restart, cause_id=self._cause("kill")))
        return m.Ok()

    def on_ActorHandlesReleased(self, conn: rpc.Connection, msg: m.ActorHandlesReleased) -> m.Ok:
        self.handle(A.ActorOutOfScope(actor_id=msg.actor_id, cause_id=self._cause("out-of-scope")))
        return m.Ok()

    def on_ActorExitReport(self, conn: rpc.Connection, msg: m.ActorExitReport) -> m.Ok:
        self.handle(A.ActorExited(actor_id=msg.actor_id, worker_id=msg.worker_id, cause_id=self._cause("exit")))
        return m.Ok()

    def on_WorkerExited(self, conn: rpc.Connection, msg: m.WorkerExited) -> None:
        self.leases.pop(msg.worker_id, None)
        actor_id = self.actor_of_worker.pop(msg.worker_id, None)
        if actor_id is not None:
            rec = self.table.get(actor_id)
            if rec is not None and rec.worker_id == msg.worker_id:
                self.last_failure[actor_id] = f"The actor's worker process died ({msg.exit_detail})."
            self.handle(A.ActorWorkerDied(actor_id=actor_id, worker_id=msg.worker_id, exit_detail=msg.exit_detail,
                                          cause_id=self._cause("worker-died")))
        self.handle(A.OwnerDied(owner_worker_id=msg.worker_id, cause_id=self._cause("owner-died")))

    # --- hooks the control store calls ------------------------------------------------------------------------
    def node_died(self, node_id: bytes) -> None:
        rec = self.store.nodes.nodes.get(node_id)
        conn = self.peers.get_nowait(rec.address) if rec is not None else None
        if conn is not None:  # a paused node never answers: fail the lease requests waiting on it
            conn.abort()
        for worker_id, lease in list(self.leases.items()):
            if lease.node_id == node_id:
                del self.leases[worker_id]
        for rec in self.table.list_actors({"node_id": node_id}):
            self.last_failure[rec.actor_id] = f"The actor's node {node_id.hex()} died."
        self.handle(A.NodeDied(node_id=node_id, cause_id=self._cause("node-died")))

    def kill_actors_in_group(self, pg_id: bytes) -> None:
        """A placement group was removed: its actors die without restart (Ray's behaviour)."""
        for rec in self.table.list_actors():
            strategy = rec.spec.scheduling_strategy
            if rec.state is not A.ActorState.DEAD and strategy and strategy[0] == "PLACEMENT_GROUP" \
                    and strategy[1] == pg_id:
                self.handle(A.ActorKilled(actor_id=rec.actor_id, no_restart=True, cause_id=self._cause("pg-removed"),
                                          message="The placement group corresponding to this Actor has been removed."))

    def job_finished(self, job_id: bytes) -> None:
        self.handle(A.JobFinished(job_id=job_id, cause_id=self._cause("job-finished")))
