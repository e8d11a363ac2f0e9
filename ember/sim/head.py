"""A simulated control store: ember's ``NodeTable``, ``ActorTable`` and ``PgTable`` behind a model shell.

What ``shells/control/control_store.py``, ``actor_manager.py`` and ``placement_group_manager.py``
do with these tables, this does with the network model: registrations and heartbeats answered
with the view when its version moved, silent nodes expired every heartbeat period, a reset
connection from a node marking it dead at once (as ``connection_lost`` does), actors leased a
dedicated worker through the node daemons (following spillback) and created there, bundles
prepared, committed and cancelled by messages to the nodes.

Leadership (the standby head is not on main yet, so the simulator models the rule the design
gives, minimally): the storage holds a lease ``(epoch, holder, expires_s)``; the active head
renews it every ``lease_ttl_s / 3``; every state-changing decision is first written to the
storage under the head's epoch (compare-and-set on the epoch), and a head whose write is refused
has been deposed: it stops answering.  A standby takes the lease once it expired, with epoch + 1,
restores the actor table from the persisted records (``ActorTable.restore`` + ``TableRestored``)
and the node table from re-registrations.  The placement-group table is carried over as if it
were persisted (on main it is not: a restarted head forgets placement groups).
"""
from __future__ import annotations

from typing import Any, Optional

from ember.logic.control import actors as A
from ember.logic.control import placement_groups as P
from ember.logic.control.nodes import NodeRecord, NodeTable, NodeVerdict
from ember.logic.resources import ResourceSet
from ember.logic.node.leases import NodeView
from ember.sim.world import InvariantBroken


class Storage:
    """The storage behind the heads: a leader lease with an epoch, and epoch-fenced writes."""

    def __init__(self) -> None:
        self.epoch = 0
        self.holder = ""
        self.expires_s = 0.0
        self.actors: dict[bytes, Optional[dict]] = {}
        self.nodes: dict[bytes, tuple[str, dict, bool]] = {}   # node id -> (endpoint, total, is_alive)
        self.writers: dict[int, set[str]] = {}
        self.refused = 0
        self.writes = 0

    def acquire(self, name: str, now: float, ttl_s: float) -> Optional[int]:
        if self.holder and now < self.expires_s:
            return None
        self.epoch += 1
        self.holder, self.expires_s = name, now + ttl_s
        return self.epoch

    def renew(self, name: str, epoch: int, now: float, ttl_s: float) -> bool:
        if self.epoch != epoch or self.holder != name:
            self.refused += 1
            return False
        self.expires_s = now + ttl_s
        return True

    def write(self, name: str, epoch: int) -> bool:
        """Compare-and-set on the epoch: only the lease holder of the current epoch writes."""
        if self.epoch != epoch or self.holder != name:
            self.refused += 1
            return False
        self.writes += 1
        who = self.writers.setdefault(epoch, set())
        who.add(name)
        if len(who) > 1:
            raise InvariantBroken(f"two heads wrote under epoch {epoch}: {sorted(who)}")
        return True


class SimHead:
    def __init__(self, cluster: Any, index: int, storage: Storage, pgs: Optional[P.PgTable]) -> None:
        self.c = cluster
        self.name = f"h{index}"
        self.storage = storage
        self.epoch = 0
        self.active = False
        self.nodes = NodeTable(cluster.cfg.heartbeat_timeout_s)
        self.actors = A.ActorTable(is_init_error_restartable=True, dead_actors_max=10**9, log_entries_max=1)
        self.pgs = pgs if pgs is not None else P.PgTable(log_entries_max=1)
        self.by_name: dict[str, bytes] = {}         # node endpoint -> node id
        self.name_of: dict[bytes, str] = {}
        self.actor_worker: dict[bytes, tuple[str, bytes, bytes]] = {}  # worker id -> (node ep, lease id, actor id)
        self._view: Optional[list] = None
        self._view_version = -1
        self._view_at = -1.0
        self._pg_version = -1
        self._pg_sync_at = -1.0
        self._pg_sync_after = 0.0    # a successor waits for the nodes to re-register first
        self._causes = 0
        self.kills = 0
        self.pending_cancels: dict[bytes, list] = {}
        self.asking: dict[tuple[bytes, int], str] = {}   # actor lease requests waiting at a node
        self._restored_workers: dict[bytes, tuple[bytes, bytes]] = {}

    # --- leadership ---------------------------------------------------------------------------
    def try_lead(self) -> None:
        if self.active or self.name in self.c.net.down:
            return
        epoch = self.storage.acquire(self.name, self.c.w.now, self.c.cfg.lease_ttl_s)
        if epoch is None:
            self.c.w.after(self.c.cfg.lease_ttl_s / 3, self.try_lead)
            return
        self.epoch, self.active = epoch, True
        if epoch > 1:  # nodes not back within a heartbeat timeout are dead to the placement-group table
            self._pg_sync_after = self.c.w.now + self.c.cfg.heartbeat_timeout_s
            self.c.w.at(self._pg_sync_after, self._sync_pgs)
        self.c.w.note(f"{self.name} leads with epoch {epoch}")
        for node_id, (node, total, alive) in sorted(self.storage.nodes.items()):
            # The node table is restored too: a node that went silent during the takeover is
            # expired a heartbeat timeout from now instead of being forgotten (its owners would
            # wait on it for ever).  On main the node table is not persisted.
            rec = NodeRecord(node_id, node, dict(total), dict(total), False, "", {})
            self.nodes.register(rec, self.c.w.now)
            if not alive:
                self.nodes.mark_dead(node_id)
            self.by_name[node] = node_id
            self.name_of[node_id] = node
        records = [r for r in self.storage.actors.values() if r is not None]
        if records:
            self.actors.restore({"format": A.SNAPSHOT_FORMAT, "actors": records})
            self._restored_workers = {}
            for rec in self.actors._records.values():
                if rec.worker_id is not None and rec.state is not A.ActorState.DEAD:
                    self._restored_workers[rec.worker_id] = (rec.node_id, rec.actor_id)
            self._run_actor(self.actors.handle(A.TableRestored(cause_id="restored"), self.c.w.now))
            self.c.w.after(self.c.cfg.heartbeat_s * 2, self._recreate_restored)
        self.c.new_leader(self)
        self.c.w.after(self.c.cfg.lease_ttl_s / 3, self._renew)
        self.c.w.after(self.c.cfg.heartbeat_s, self._expire)

    def _renew(self) -> None:
        if not self.active or self.name in self.c.net.down:
            return
        if not self.storage.renew(self.name, self.epoch, self.c.w.now, self.c.cfg.lease_ttl_s):
            self._deposed()
            return
        self.c.w.after(self.c.cfg.lease_ttl_s / 3, self._renew)

    def _write(self) -> bool:
        if self.storage.write(self.name, self.epoch):
            return True
        self._deposed()
        return False

    def _deposed(self) -> None:
        if self.active:
            self.active = False
            self.c.w.note(f"{self.name} (epoch {self.epoch}) was deposed: a write was refused")

    def resume(self) -> None:
        """A paused head runs again: it expires the nodes it did not hear from (and is fenced)."""
        self.c.net.down.discard(self.name)
        if self.active:
            self._expire(once=True)   # what its timers owed: nodes look silent (its writes are fenced)
            self._renew()

    # --- nodes ----------------------------------------------------------------------------------
    def _reply_view(self, node: str, fn: Any, verdict: NodeVerdict, version_seen: int) -> None:
        view = None
        if verdict is not NodeVerdict.DEAD and version_seen != self.nodes.version:
            view = self.view()
        entries = len(view) if view else 0
        self.c.view_entries_sent += entries
        self.c.net.send(self.name, node, "ClusterView", fn, verdict, self.nodes.version, view, size=100 + 160 * entries)

    def view(self) -> list:
        now = self.c.w.now
        if self._view is None or (self._view_version != self.nodes.version
                                  and now - self._view_at >= self.c.cfg.view_snapshot_s):
            self._view = [NodeView(r.node_id, self.name_of.get(r.node_id, ""), ResourceSet(r.resources_total),
                                   ResourceSet({k: max(0.0, v) for k, v in r.resources_available.items()}),
                                   r.is_alive, {}, *(_load(r.load)))
                          for r in self.nodes.nodes.values()]
            self._view_version, self._view_at = self.nodes.version, now
            self.c.view_builds += 1
        return self._view

    def register_node(self, node: str, node_id: bytes, total: dict, available: dict, node_type: str) -> None:
        if not self.active:
            return
        rec = NodeRecord(node_id, node, dict(total), dict(available), False, "", {})
        verdict = self.nodes.register(rec, self.c.w.now)
        if verdict is NodeVerdict.ACCEPTED:
            if not self._write():
                return
            self.by_name[node] = node_id
            self.name_of[node_id] = node
            self.storage.nodes[node_id] = (node, dict(total), True)
            self.c.node_types[node_id] = node_type
            self._run_pg(self.pending_cancels.pop(node_id, []))
            self._sync_pgs()
        self._reply_view(node, self.c.endpoint(node).registered_reply, verdict, -1)

    def heartbeat(self, node: str, node_id: bytes, available: dict, demands: list, load: list, version: int,
                  objects: int) -> None:
        if not self.active:
            return
        verdict = self.nodes.heartbeat(node_id, available, demands, objects, self.c.w.now, load)
        if verdict is NodeVerdict.ALIVE and self.pgs.has_waiting():
            self.c.pg_syncs_wanted += 1
            self._sync_pgs()
        self._reply_view(node, self.c.endpoint(node).heartbeat_reply, verdict, version)

    def _expire(self, once: bool = False) -> None:
        if not self.active or self.name in self.c.net.down:
            return
        for node_id in self.nodes.expire(self.c.w.now):
            self._node_died(node_id, "missed heartbeats")
            if not self.active:
                return
        if not once:
            self.c.w.after(self.c.cfg.heartbeat_s, self._expire)

    def link_reset(self, peer: str) -> None:
        if not self.active:
            return
        for (actor_id, incarnation), node in sorted(self.asking.items()):
            if node == peer:  # the lease request failed with the connection: ask again (actor_manager does)
                del self.asking[(actor_id, incarnation)]
                self.c.w.after(0.5, self._lease_for_actor, actor_id, incarnation, "", 0)
        node_id = self.by_name.get(peer)
        if node_id is not None and self.nodes.mark_dead(node_id):
            self._node_died(node_id, "its connection broke")

    def drain(self, node_id: bytes) -> None:
        if self.active and self.nodes.mark_dead(node_id):
            self._node_died(node_id, "drained")

    def _node_died(self, node_id: bytes, why: str) -> None:
        if not self._write():
            return
        node = self.name_of.get(node_id, "")
        if node_id in self.storage.nodes:
            self.storage.nodes[node_id] = (node, self.storage.nodes[node_id][1], False)
        self.c.w.note(f"{self.name}: node {node} dead ({why})")
        self.c.node_declared_dead(node, node_id)
        for worker_id in sorted(w for w, v in self.actor_worker.items() if v[0] == node):
            del self.actor_worker[worker_id]
        self._run_actor(self.actors.handle(A.NodeDied(node_id=node_id, cause_id=self._cause()), self.c.w.now))
        self._run_pg(self.pgs.handle(P.NodeDied(node_id, self._cause())))
        self._pg_version = self.nodes.version

    def _cause(self) -> str:
        self._causes += 1
        return str(self._causes)

    def task_events(self, count: int) -> None:
        pass

    # --- actors -----------------------------------------------------------------------------------------
    def register_actor(self, owner: str, spec: A.ActorSpec) -> None:
        if not self.active:
            return
        if spec.actor_id in self.actors._records:
            return   # a retried registration (the table would answer it as a duplicate)
        self._run_actor(self.actors.handle(A.ActorRegistered(spec=spec, request_id=0, cause_id=self._cause()),
                                           self.c.w.now))

    def kill_actor(self, actor_id: bytes, no_restart: bool) -> None:
        if self.active:
            self._run_actor(self.actors.handle(A.ActorKilled(actor_id=actor_id, no_restart=no_restart,
                                                             cause_id=self._cause()), self.c.w.now))

    def _run_actor(self, effects: list) -> None:
        for eff in effects:
            t = type(eff)
            if t is A.Persist:
                if not self._write():
                    return
                self.storage.actors[eff.actor_id] = eff.record
            elif t is A.ScheduleActor:
                self._lease_for_actor(eff.actor_id, eff.incarnation, self.c.owner_node_of_actor(eff.actor_id), 0)
            elif t is A.KillActorWorker:
                info = self.actor_worker.pop(eff.worker_id, None)
                if info is not None:
                    node, lease_id, _ = info
                    self.c.net.send(self.name, node, "ReturnLease", self.c.endpoint(node).return_lease, lease_id, True)
                elif eff.worker_id in self._restored_workers:  # its lease died with the old head
                    node_id, _ = self._restored_workers.pop(eff.worker_id)
                    node = self.name_of.get(node_id) or self.c.name_of_node_id(node_id)
                    if node:
                        self.c.net.send(self.name, node, "KillWorkerProcess", self.c.endpoint(node).kill_worker_process,
                                        eff.worker_id)
            elif t is A.PublishActor:
                self.c.actor_published(self, eff)
        self.c.touch_actors()

    def _recreate_restored(self) -> None:
        """Actors whose ``__init__`` was under way at the takeover: the old head's CreateActor
        reply is lost, so ask their worker again (creation is idempotent on the worker).
        The shell on main does not do this: such an actor stays PENDING_CREATION."""
        if not self.active:
            return
        for worker_id, (node_id, actor_id) in sorted(self._restored_workers.items()):
            rec = self.actors._records.get(actor_id)
            if rec is None or rec.worker_id != worker_id or rec.state not in (A.ActorState.PENDING_CREATION,
                                                                               A.ActorState.RESTARTING):
                continue
            node = self.name_of.get(node_id) or self.c.name_of_node_id(node_id)
            if node:
                self.c.net.send(self.name, node, "CreateActor", self.c.endpoint(node).create_actor, self.name,
                                actor_id, rec.incarnation, worker_id, False)

    def _wants_worker(self, actor_id: bytes, incarnation: int) -> bool:
        rec = self.actors._records.get(actor_id)
        return (rec is not None and rec.incarnation == incarnation and rec.worker_id is None
                and rec.state in (A.ActorState.PENDING_CREATION, A.ActorState.RESTARTING))

    def _lease_for_actor(self, actor_id: bytes, incarnation: int, node: str, hops: int) -> None:
        if not self.active or not self._wants_worker(actor_id, incarnation):
            return
        if node in self.c.net.down or node not in self.by_name or self.nodes.is_dead(self.by_name[node]):
            node = self.c.some_live_node(self)
            if node is None:
                self.c.w.after(1.0, self._lease_for_actor, actor_id, incarnation, "", 0)
                return
        rec = self.actors._records[actor_id]
        token = ("actor", actor_id, incarnation, node)
        self.asking[(actor_id, incarnation)] = node
        self.c.net.send(self.name, node, "RequestLease", self.c.endpoint(node).request_lease, self.name, token,
                        rec.spec.job_id, dict(rec.spec.resources), list(rec.spec.scheduling_strategy or ["DEFAULT"]),
                        hops > 0, True,
                        dict(rec.spec.placement_resources or rec.spec.resources), 0.0, hops, None)

    def lease_granted(self, token: Any, node: str, lease_id: bytes, worker_id: bytes, for_actor: bool) -> None:
        _, actor_id, incarnation, _ = token
        if not self.active:
            return
        self.asking.pop((actor_id, incarnation), None)
        if not self._wants_worker(actor_id, incarnation):
            self.c.net.send(self.name, node, "ReturnLease", self.c.endpoint(node).return_lease, lease_id, True)
            return
        self.actor_worker[worker_id] = (node, lease_id, actor_id)
        self._run_actor(self.actors.handle(A.ActorPlaced(actor_id=actor_id, node_id=self.by_name[node],
                                                         worker_address=node + "/w", worker_id=worker_id,
                                                         cause_id=self._cause()), self.c.w.now))
        rec = self.actors._records.get(actor_id)
        if rec is not None and rec.worker_id == worker_id:
            fails = self.c.w.rng.random() < self.c.cfg.actor_init_failure
            self.c.net.send(self.name, node, "CreateActor", self.c.endpoint(node).create_actor, self.name, actor_id,
                            incarnation, worker_id, fails)

    def lease_spilled(self, token: Any, address: str) -> None:
        _, actor_id, incarnation, _ = token
        self.asking.pop((actor_id, incarnation), None)
        self._lease_for_actor(actor_id, incarnation, address, 1)

    def lease_infeasible(self, token: Any, message: str) -> None:
        _, actor_id, incarnation, _ = token
        self.asking.pop((actor_id, incarnation), None)
        self.c.w.after(self.c.cfg.infeasible_retry_s, self._lease_for_actor, actor_id, incarnation, "", 0)

    def lease_failed(self, token: Any, message: str) -> None:
        _, actor_id, incarnation, _ = token
        self.asking.pop((actor_id, incarnation), None)
        self._run_actor(self.actors.handle(A.ActorUnschedulable(actor_id=actor_id, incarnation=incarnation,
                                                                message=message, cause_id=self._cause()),
                                           self.c.w.now))

    def actor_init_done(self, actor_id: bytes, worker_id: bytes, failed: bool) -> None:
        if not self.active:
            return
        if failed:
            ev: Any = A.ActorCreationFailed(actor_id=actor_id, worker_id=worker_id, message="__init__ raised",
                                            cause_id=self._cause())
        else:
            ev = A.ActorCreated(actor_id=actor_id, worker_id=worker_id, cause_id=self._cause())
        self._run_actor(self.actors.handle(ev, self.c.w.now))

    def worker_exited(self, node_id: bytes, worker_id: bytes, actor_id: bytes, reason: str) -> None:
        if not self.active:
            return
        self.actor_worker.pop(worker_id, None)
        self._restored_workers.pop(worker_id, None)
        self._run_actor(self.actors.handle(A.ActorWorkerDied(actor_id=actor_id, worker_id=worker_id,
                                                             exit_detail=reason, cause_id=self._cause()),
                                           self.c.w.now))

    # --- placement groups ------------------------------------------------------------------------------
    def _sync_pgs(self) -> None:
        if self.nodes.version == self._pg_version:
            return
        now = self.c.w.now
        if now < self._pg_sync_after or now - self._pg_sync_at < self.c.cfg.view_snapshot_s or not self.active:
            return
        self._pg_sync_at = now
        self._pg_version = self.nodes.version
        totals = {r.node_id: {k: v for k, v in r.resources_total.items() if "_group_" not in k}
                  for r in self.nodes.nodes.values() if r.is_alive}
        self.c.pg_syncs += 1
        self._run_pg(self.pgs.handle(P.NodesChanged(totals, self._cause())))

    def create_pg(self, owner: str, spec: P.PgSpec) -> None:
        if not self.active or spec.pg_id in self.pgs.groups:
            return   # a retried request
        self._sync_pgs()
        self._run_pg(self.pgs.handle(P.PgCreated(spec, self._cause())))

    def remove_pg(self, pg_id: bytes) -> None:
        if self.active:
            self._run_pg(self.pgs.handle(P.PgRemoveRequested(pg_id, self._cause())))

    def _run_pg(self, effects: list) -> None:
        for eff in effects:
            t = type(eff)
            if t is P.PrepareBundles:
                node = self.name_of.get(eff.node_id, "")
                if node in self.c.net.down or not node:
                    self.c.w.after(0.0, self.bundles_prepared, eff.pg_id, eff.attempt, eff.node_id, False,
                                   "node unreachable", tuple(i for i, _ in eff.bundles))
                    continue
                self.c.net.send(self.name, node, "PrepareBundles", self.c.endpoint(node).prepare_bundles, self.name,
                                eff.pg_id, eff.attempt, eff.bundles, eff.commit)
            elif t is P.CommitBundles:
                node = self.name_of.get(eff.node_id, "")
                self.c.net.send(self.name, node, "CommitBundles", self.c.endpoint(node).commit_bundles, self.name,
                                eff.pg_id, eff.attempt, eff.indices)
            elif t is P.CancelBundles:
                node = self.name_of.get(eff.node_id, "")
                if not node:  # not re-registered with this head yet: cancel once it is (else it leaks)
                    self.pending_cancels.setdefault(eff.node_id, []).append(eff)
                elif node not in self.c.net.down:
                    self.c.net.send(self.name, node, "CancelBundles", self.c.endpoint(node).cancel_bundles, eff.pg_id,
                                    eff.indices, eff.is_removed)
            elif t is P.PgChanged:
                self.c.pg_changed(self, eff.pg_id, eff.state)
        self.c.touch_pgs()

    def bundles_prepared(self, pg_id: bytes, attempt: int, node_id: bytes, ok: bool, message: str,
                         indices: tuple) -> None:
        if self.active:
            self._run_pg(self.pgs.handle(P.BundlesPrepared(pg_id, attempt, node_id, ok, message, self._cause(),
                                                           indices)))

    def bundles_committed(self, pg_id: bytes, attempt: int, node_id: bytes) -> None:
        if self.active:
            self._run_pg(self.pgs.handle(P.BundlesCommitted(pg_id, attempt, node_id, self._cause())))

    def check(self) -> None:
        self.actors.check_invariants()
        self.pgs.check_invariants()


def _load(load: Optional[list]) -> tuple[int, float]:
    if not load or len(load) < 2:
        return 0, 0.0
    return int(load[0]), float(load[1])
