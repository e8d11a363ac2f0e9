"""The node daemon (Ray's raylet): leases, worker pool, object store, log streaming.

Run as ``python -m ember.shells.node.node_daemon --gcs-address A --token-file F ...``; it
prints ``READY <port>`` once it listens and has registered with the control store.
The scheduling decisions live in ``ember.logic.node.leases.LeaseManager``; this module
only moves messages, processes and bytes.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, Optional

import psutil

from ember.config import CONFIG
from ember.logic.node import leases as L
from ember.logic.node.head_watch import RESTORED_NODE_GRACE_S, HeadWatch
from ember.logic.placement import POLICIES, PlacementParams
from ember.logic.resources import ResourceSet
from ember.protocol import codec
from ember.protocol import messages as m
from ember.shells.wire import addresses
from ember.shells.wire import rpc
from ember.shells.wire import session
from ember.shells.wire.leader import NoLeader, connect_leader
from ember.shells.wire.rpc import install_uvloop
from ember.shells.node.log_monitor import LogMonitor
from ember.shells.node.object_service import ObjectService
from ember.shells.node.runtime_env.agent import RuntimeEnvAgent
from ember.shells.shared.shm_store import ShmStore, node_store_directory

log = logging.getLogger("ember.node")


class NodeDaemon:
    def __init__(self, args: argparse.Namespace, token: bytes) -> None:
        self.args = args
        self.token = token
        self.node_id = os.urandom(16)
        self.session_dir = args.session_dir
        resources = {"CPU": float(args.num_cpus), **({"GPU": float(args.num_gpus)} if args.num_gpus else {})}
        resources.update(json.loads(args.resources or "{}"))
        # Ray's default for the schedulable "memory" resource: most of what is available now.
        resources["memory"] = float(args.memory or int(psutil.virtual_memory().available * 0.7))
        self.resources_total = {k: float(v) for k, v in resources.items() if v}
        self.labels = {str(k): str(v) for k, v in json.loads(args.labels or "{}").items()}
        self.leases = L.LeaseManager(self.node_id, self.resources_total, max_starting=CONFIG.max_workers_starting,
                                     labels=self.labels, params=placement_params(),
                                     warn_workers_at=CONFIG.worker_warning_threshold)
        store_dir = node_store_directory(os.path.basename(self.session_dir), self.node_id.hex(),
                                         CONFIG.shm_dir)
        self.store = ShmStore(store_dir)
        self.objects = ObjectService(self, args.object_store_memory, args.spill_dir)
        from ember.shells.node.bundle_service import BundleService
        self.bundles = BundleService(self)
        self.address = ""
        self.gcs: Optional[rpc.Connection] = None
        self.peers = rpc.Peers(token, self, "node")
        self.worker_conns: dict[bytes, rpc.Connection] = {}
        self.driver_conns: set[rpc.Connection] = set()
        self.worker_pids: dict[bytes, int] = {}
        self.worker_jobs: dict[bytes, bytes] = {}
        self.pid_workers: dict[int, bytes] = {}
        self.zygote: Optional[asyncio.subprocess.Process] = None
        self.logs = LogMonitor(self)
        self.runtime_envs = RuntimeEnvAgent(self)
        from ember.shells.node.observability import NodeObservability
        self.observability = NodeObservability(self)  # metrics endpoint, list_workers, log files
        self.view_version = -1
        self.dead_addresses: set[str] = set()  # node daemons declared dead: never pulled from again
        self.view_wanted = asyncio.Event()  # heartbeat now and ask for the whole view
        self.stopping = asyncio.Event()
        self.exit_reason = ""  # set when the daemon must exit with an error (declared dead, head lost)
        self._reconnect_task: Optional[asyncio.Task] = None
        self.leader_address = ""
        self.known_heads: list[str] = []  # standby heads the leader named
        self._heads_learned_at = 0.0
        self.head_watch = HeadWatch(CONFIG.heartbeat_timeout_s, CONFIG.gcs_reconnect_timeout_s,
                                    CONFIG.heartbeat_interval_s, time.monotonic())
        self._heartbeat_seq = 0

    # --- effects ----------------------------------------------------------------------------
    def run_effects(self, effects: list[Any]) -> None:
        for eff in effects:
            if isinstance(eff, L.GrantLease):
                conn, request_id = eff.req_id
                conn.reply(request_id, m.LeaseGranted(eff.lease_id, eff.worker_id, eff.worker_address,
                                                      self.node_id, eff.gpu_ids, eff.resources))
            elif isinstance(eff, L.SpillLease):
                conn, request_id = eff.req_id
                conn.reply(request_id, m.LeaseSpillback(eff.node_id, eff.address))
            elif isinstance(eff, L.RejectInfeasible):
                conn, request_id = eff.req_id
                conn.reply(request_id, m.LeaseInfeasible(eff.message))
            elif isinstance(eff, L.RejectUnschedulable):
                conn, request_id = eff.req_id
                conn.reply_error(request_id, "Unschedulable", eff.message)
            elif isinstance(eff, L.RefreshView):
                self.view_wanted.set()
            elif isinstance(eff, L.StartWorker):
                if eff.warn_count:
                    self._warn_many_workers(eff)
                if eff.env_key:
                    self.runtime_envs.start_worker(eff.worker_id, eff.job_id, eff.env_key)
                else:
                    self.fork_worker_process(eff.worker_id, eff.job_id)
            elif isinstance(eff, L.FailLease):
                conn, request_id = eff.req_id
                conn.reply_error(request_id, eff.error_type, eff.message)
            elif isinstance(eff, L.KillWorker):
                self._kill_worker(eff.worker_id, eff.reason)

    def _warn_many_workers(self, eff: L.StartWorker) -> None:
        """Ray's warning, sent to the job that needed the worker (printed by its driver) and logged here."""
        avail = psutil.virtual_memory().available / 2**30
        line = (f"WARNING: {eff.warn_count} worker processes have been started on node {self.node_id.hex()[:8]} "
                f"({self.address}; {avail:.1f} GiB of memory available). This could be a result of using a large "
                "number of actors, or of tasks blocked in ember.get() calls (each blocked level of nested tasks "
                f"holds a worker). Next warning at {self.leases.warn_workers_at} workers "
                "(EMBER_WORKER_WARNING_THRESHOLD sets the first).")
        log.warning("%s", line)
        if self.gcs is not None and not self.gcs.closed:
            self.gcs.send(m.LogLines(eff.job_id, os.getpid(), self.node_id, True, [line]))

    def fork_worker_process(self, worker_id: bytes, job_id: bytes, runtime_env: Optional[dict] = None) -> None:
        assert self.zygote is not None and self.zygote.stdin is not None
        log_base = os.path.join(self.session_dir, "logs", f"worker-{worker_id.hex()}")
        args = {"node_address": self.address, "token_file": self.args.token_file, "worker_id": worker_id.hex(),
                "job_id": job_id.hex(), "node_id": self.node_id.hex(), "host": self.args.host,
                "session_dir": self.session_dir, "store_dir": self.store.directory,
                "gcs_address": self.head_addresses()}
        cmd = {"op": "fork", "worker_id": worker_id.hex(), "log_base": log_base, "args": args,
               "env": {"EMBER_NODE_IP_ADDRESS": addresses.advertised_host(self.args.host)},
               "runtime_env": runtime_env}
        self.zygote.stdin.write((json.dumps(cmd) + "\n").encode())
        self.worker_jobs[worker_id] = job_id
        self.logs.add(worker_id, job_id, log_base)

    def _kill_worker(self, worker_id: bytes, reason: str) -> None:
        log.info("killing worker %s: %s", worker_id.hex()[-8:], reason)
        pid = self.worker_pids.get(worker_id)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # --- rpc.Handler ----------------------------------------------------------------------------
    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        name = "on_" + type(msg).__name__
        method = (getattr(self, name, None) or getattr(self.objects, name, None) or getattr(self.bundles, name, None)
                  or getattr(self.observability, name, None))
        if method is None:
            if kind == codec.KIND_REQUEST:
                conn.reply_error(request_id, "ValueError", f"node daemon does not handle {type(msg).__name__}")
            return
        try:
            method(conn, request_id, msg)
        except Exception as exc:
            log.exception("handling %s", type(msg).__name__)
            if kind == codec.KIND_REQUEST:
                conn.reply_error(request_id, type(exc).__name__, str(exc))

    def connection_lost(self, conn: rpc.Connection) -> None:
        self.peers.forget(conn)
        self.objects.connection_lost(conn)
        if conn is self.gcs and not self.stopping.is_set() and self._reconnect_task is None:
            log.error("lost the connection to the control store at %s; reconnecting for up to %.0f s "
                      "(gcs_reconnect_timeout_s), then exiting", self.args.gcs_address,
                      CONFIG.gcs_reconnect_timeout_s)
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_gcs())
        worker_id = conn.state.get("worker_id")
        self.driver_conns.discard(conn)
        if worker_id is not None and self.worker_conns.get(worker_id) is conn:
            del self.worker_conns[worker_id]
            self.run_effects(self.leases.on_worker_died(worker_id))
        self.run_effects(self.leases.on_client_disconnected(conn))

    # --- workers and drivers ----------------------------------------------------------------------
    def on_RegisterWorker(self, conn: rpc.Connection, request_id: int, msg: m.RegisterWorker) -> None:
        reply = m.WorkerRegistered(self.node_id, self.store.directory, self.head_addresses(),
                                   self.session_dir, self.resources_total)
        conn.state["process"] = (msg.pid, msg.address, "driver" if msg.is_driver else "worker")
        if msg.is_driver:
            conn.state["driver_job"] = msg.job_id
            self.driver_conns.add(conn)
            conn.reply(request_id, reply)
            prestart = int(self.leases.total.get("CPU")) if msg.prestart_workers else 0
            self.run_effects(self.leases.on_job_started(msg.job_id, prestart))
            return
        conn.state["worker_id"] = msg.worker_id
        self.worker_conns[msg.worker_id] = conn
        self.worker_pids[msg.worker_id] = msg.pid
        self.pid_workers[msg.pid] = msg.worker_id
        self.logs.set_pid(msg.worker_id, msg.pid)
        conn.reply(request_id, reply)
        self.run_effects(self.leases.on_worker_registered(msg.worker_id, msg.address, time.monotonic()))

    def on_RequestLease(self, conn: rpc.Connection, request_id: int, msg: m.RequestLease) -> None:
        if self.stopping.is_set():
            conn.reply_error(request_id, "NodeExiting", f"the node daemon at {self.address} is exiting"
                             + (f" ({self.exit_reason})" if self.exit_reason else ""))
            return
        try:
            resources = ResourceSet(msg.resources)
            placement = None if msg.placement_resources is None else ResourceSet(msg.placement_resources)
        except ValueError as exc:
            conn.reply_error(request_id, "ValueError", str(exc))
            return
        if self.bundles.refuses(msg.strategy):
            from ember.shells.node.bundle_service import REMOVED_KIND, removed_message
            conn.reply_error(request_id, REMOVED_KIND, removed_message(msg.strategy[1]))
            return
        req = L.LeaseRequest((conn, request_id), conn, msg.job_id, resources, msg.strategy,
                             msg.is_spillback, msg.for_actor, msg.description, placement,
                             self.runtime_envs.remember(msg.runtime_env),
                             dict(msg.arg_bytes or {}), msg.task_s, spill_hops=msg.spill_hops)
        self.run_effects(self.leases.on_lease_requested(req, time.monotonic()))

    def on_ReturnLease(self, conn: rpc.Connection, request_id: int, msg: m.ReturnLease) -> None:
        self.run_effects(self.leases.on_lease_returned(msg.lease_id, msg.is_worker_dead, time.monotonic()))

    def on_WorkerBlocked(self, conn: rpc.Connection, request_id: int, msg: m.WorkerBlocked) -> None:
        w = self.leases.workers.get(msg.worker_id)
        if w is not None and w.lease_id is not None:
            self.run_effects(self.leases.on_worker_blocked(w.lease_id))

    def on_WorkerUnblocked(self, conn: rpc.Connection, request_id: int, msg: m.WorkerUnblocked) -> None:
        w = self.leases.workers.get(msg.worker_id)
        if w is not None and w.lease_id is not None:
            self.run_effects(self.leases.on_worker_unblocked(w.lease_id))

    def on_KillWorkerProcess(self, conn: rpc.Connection, request_id: int, msg: m.KillWorkerProcess) -> None:
        self._kill_worker(msg.worker_id, "asked to")
        conn.reply(request_id, m.Ok())

    def on_NodeStats(self, conn: rpc.Connection, request_id: int, msg: m.NodeStats) -> None:
        conn.reply(request_id, m.NodeStatsReply(self.node_id, len(self.worker_conns), len(self.leases.queue),
                                                self.objects.used_bytes(), self.objects.num_objects(),
                                                self.objects.capacity_bytes, self.objects.spilled_bytes(),
                                                self.objects.num_spilled_objects()))

    def on_GetHostStats(self, conn: rpc.Connection, request_id: int, msg: m.GetHostStats) -> None:
        from ember.shells.node.host_stats import host_stats  # the dashboard's nodes page
        conn.reply(request_id, host_stats(self.node_id, self.worker_pids if msg.include_workers else {},
                                          self.worker_jobs))

    def on_Published(self, conn: rpc.Connection, request_id: int, msg: m.Published) -> None:
        if msg.channel == "jobs" and isinstance(msg.data, m.JobFinished):
            self.run_effects(self.leases.on_job_finished(msg.data.job_id))
            self.logs.job_finished(msg.data.job_id)
        elif msg.channel == "placement_groups":
            if isinstance(msg.data, m.ClusterView):
                self._apply_view(msg.data)
            elif isinstance(msg.data, m.PlacementGroupRemoved):
                self.bundles.on_removed(msg.data)

    # --- zygote -------------------------------------------------------------------------------------
    async def start_zygote(self) -> None:
        from ember.shells.shared import processes
        err = open(os.path.join(self.session_dir, "logs", f"zygote-{self.node_id.hex()[:8]}.err"), "ab")
        self.zygote = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ember.shells.node.zygote", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=err, preexec_fn=processes.die_with_parent)
        err.close()
        # Not waiting for its "ready" line: fork requests queue in the pipe while it warms up.

    async def zygote_loop(self) -> None:
        assert self.zygote is not None and self.zygote.stdout is not None
        while True:
            line = await self.zygote.stdout.readline()
            if not line:
                if not self.stopping.is_set():
                    log.error("zygote exited")
                    self.stopping.set()
                return
            ev = json.loads(line)
            if ev["op"] == "forked":
                wid = bytes.fromhex(ev["worker_id"])
                self.observability.worker_started(wid)
                self.worker_pids[wid] = ev["pid"]
                self.pid_workers[ev["pid"]] = wid
                self.logs.set_pid(wid, ev["pid"])
            elif ev["op"] == "exited":
                wid = self.pid_workers.pop(ev["pid"], None)
                if wid is not None:
                    self.observability.worker_exited(wid, ev["pid"], ev.get("status"))
                    self._tell_gcs_worker_exited(wid, ev.get("status"))
                    self.worker_pids.pop(wid, None)
                    self.worker_jobs.pop(wid, None)
                    self.logs.worker_exited(wid)
                    if wid not in self.worker_conns:  # died before registering, or already handled
                        self.run_effects(self.leases.on_worker_died(wid))

    def _tell_gcs_worker_exited(self, worker_id: bytes, status: Any) -> None:
        """The control store restarts actors and ends actors owned by dead workers."""
        if isinstance(status, int) and status < 0:
            try:
                detail = f"killed by signal {-status} ({signal.Signals(-status).name})"
            except ValueError:
                detail = f"killed by signal {-status}"
        else:
            detail = f"exit code {status}"
        if self.gcs is not None and not self.gcs.closed:
            self.gcs.send(m.WorkerExited(worker_id, self.node_id, detail))

    # --- control store ----------------------------------------------------------------------------------
    def node_info(self) -> m.NodeInfo:
        return m.NodeInfo(self.node_id, self.address, self.leases.total.to_dict(), self.leases.available.to_dict(),
                          True, self.args.head, self.store.directory, self.labels, [], self.objects.used_bytes(),
                          self.objects.capacity_bytes)

    async def connect_gcs(self, wait_s: float = 0.0, seen: Optional[dict] = None) -> None:
        """Register with the control store; with ``wait_s``, keep trying while it is starting."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.gcs, self.leader_address = await connect_leader(  # several heads: the leader (issue #11)
                    self.args.gcs_address, self.token, self, "node", CONFIG.connect_timeout_s, self.leader_address,
                    self.known_heads, seen)
                break
            except (ConnectionRefusedError, NoLeader):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)
        await self._register()
        await self.observability.announce()
        await self.gcs.request(m.Subscribe("jobs", b""))
        await self.gcs.request(m.Subscribe("placement_groups", b""))

    async def _register(self) -> None:
        assert self.gcs is not None
        sent_s = time.monotonic()
        try:
            view = await self.gcs.request(m.RegisterNode(self.node_info()))
            self.run_watch_effects(self.head_watch.answered(sent_s, time.monotonic()))
        except rpc.RpcError as e:
            if e.kind == "NodeDeclaredDead":
                self.exit_declared_dead(e.message)
            raise
        self._apply_view(view)
        # a head restored from storage learns which actor workers died while no head listened
        self.gcs.send(m.NodeWorkers(self.node_id, sorted(set(self.worker_pids) | set(self.worker_conns))))

    def exit_declared_dead(self, message: str) -> None:
        """The control store declared this node dead (e.g. it was paused past the heartbeat
        timeout): its actors already run elsewhere, so it exits with its workers (Ray's raylet
        does the same) and never rejoins under this id."""
        if self.stopping.is_set():
            return
        log.error("the control store declared this node dead: %s; exiting and killing this node's workers",
                  message)
        self.exit_reason = "declared dead by the control store"
        self.stopping.set()

    async def _reconnect_gcs(self) -> None:
        """Reconnect with backoff for ``gcs_reconnect_timeout_s`` (a head restarted at the same
        address finds this node again); past that, exit as Ray's raylet does."""
        deadline = time.monotonic() + CONFIG.gcs_reconnect_timeout_s
        delay_s = 0.1
        try:
            while not self.stopping.is_set() and time.monotonic() < deadline:
                sent_s, seen, old = time.monotonic(), {}, self.leader_address
                try:
                    await self.connect_gcs(seen=seen)
                    log.info("reconnected to the control store at %s", self.leader_address)
                    return
                except rpc.RpcError as e:
                    if e.kind == "NodeDeclaredDead":
                        return
                    if self.gcs is not None:  # connected but refused for now: drop it, try again
                        self.gcs.close()
                except (OSError, rpc.ConnectionLost, TimeoutError):
                    self.heads_probed(sent_s, seen, old)
                await asyncio.sleep(min(delay_s, max(0.0, deadline - time.monotonic())))
                delay_s = min(delay_s * 2, 0.5)
            if not self.stopping.is_set():
                log.error("the control store at %s stayed unreachable for %.0f s (gcs_reconnect_timeout_s); "
                          "exiting", self.args.gcs_address, CONFIG.gcs_reconnect_timeout_s)
                self.exit_reason = "control store unreachable"
                self.stopping.set()
        finally:
            self._reconnect_task = None

    def heads_probed(self, sent_s: float, seen: dict, current: str) -> None:
        """What a probe of every head says for self-fencing (logic/node/head_watch.py, Rules 3, 5)."""
        now, roles = time.monotonic(), list(seen.values())
        leaders = [a for a, r in seen.items() if isinstance(r, m.HeadRole) and r.is_leader and a != current]
        if leaders:
            grace_s = max(CONFIG.heartbeat_timeout_s, RESTORED_NODE_GRACE_S)
            self.head_watch.heads_probed(sent_s, now, seen[leaders[0]].led_s, grace_s)
        elif roles and all(r == "refused" for r in roles):  # every head's machine answered: none runs
            self.head_watch.head_refused(now)
        elif roles and all(r == "refused" or (isinstance(r, m.HeadRole) and not r.is_leader
                                              and r.role != "suspended") for r in roles):  # may resume
            self.head_watch.heads_probed(sent_s, now, None, 0.0)
        else:
            self.head_watch.head_unreachable(now)

    def _apply_view(self, view: m.ClusterView) -> None:
        if not view.nodes:
            return
        self.view_version = view.version
        nodes = [L.NodeView(n.node_id, n.address, ResourceSet(n.resources_total),
                            ResourceSet({k: max(0.0, v) for k, v in n.resources_available.items()}), n.is_alive,
                            dict(n.labels or {}), *(_load_fields(n.load)))
                 for n in view.nodes]
        self.run_effects(self.leases.on_cluster_view(nodes))
        for n in view.nodes:  # a partitioned node's connections hang: pulls from it would wait forever
            if not n.is_alive and n.node_id != self.node_id:
                if n.address not in self.dead_addresses:
                    self.objects.pulls.node_died(n.address)  # in-flight transfers from it would stall
                self.dead_addresses.add(n.address)
                conn = self.peers.get_nowait(n.address)
                if conn is not None:
                    log.info("aborting the connection to node %s at %s: declared dead", n.node_id.hex()[:8], n.address)
                    conn.abort()

    async def heartbeat_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                async with asyncio.timeout(CONFIG.heartbeat_interval_s):
                    await self.view_wanted.wait()
            except TimeoutError:
                pass
            is_forced = self.view_wanted.is_set()
            self.view_wanted.clear()
            if self.gcs is None or self.gcs.closed:
                continue
            hb = m.Heartbeat(self.node_id, self.leases.available.to_dict(), self.leases.pending_demands(),
                             self.objects.used_bytes(), -1 if is_forced else self.view_version,
                             self.leases.load_report())
            self._heartbeat_seq += 1
            seq = self._heartbeat_seq
            self.head_watch.heartbeat_sent(seq, time.monotonic())
            try:
                # unanswered for a lease TTL: is another head leading? (a cut-off head never closes)
                # half the heartbeat timeout: found before self-fencing (Rule 5)
                view = await self.gcs.request(hb, timeout_s=min(CONFIG.heartbeat_timeout_s / 2, CONFIG.head_lease_ttl_s))
                self.run_watch_effects(self.head_watch.heartbeat_acked(seq, time.monotonic()))
                self._apply_view(view)
                await self._learn_heads()
            except rpc.RpcError as e:
                if e.kind == "NodeDeclaredDead":
                    self.exit_declared_dead(e.message)
                    return
                if e.kind == "NotLeader":  # suspended or deposed: the heartbeat was not recorded
                    await self._follow_leader()
                    continue
                self.run_watch_effects(self.head_watch.heartbeat_acked(seq, time.monotonic()))
                try:  # unknown to this control store: register again
                    await self._register()
                except (rpc.RpcError, rpc.ConnectionLost, TimeoutError, OSError):
                    pass
            except TimeoutError:
                await self._follow_leader()
            except rpc.ConnectionLost:
                pass

    def head_addresses(self) -> str:
        """Every head address known (given, and standbys the leader named), for workers."""
        from ember.shells.wire.leader import split_addresses
        given = split_addresses(self.args.gcs_address)
        return ",".join(given + [a for a in self.known_heads if a not in given])

    async def _learn_heads(self) -> None:
        """Every few seconds: the standbys the leader knows (a standby started after this node)."""
        now = time.monotonic()
        if self.gcs is None or self.gcs.closed or now - self._heads_learned_at < 5.0:
            return
        self._heads_learned_at = now
        try:
            role = await self.gcs.request(m.WhoLeads(), timeout_s=CONFIG.head_lease_ttl_s)
        except (rpc.RpcError, rpc.ConnectionLost, TimeoutError, OSError):
            return
        for address, _ in role.standbys:
            if address not in self.known_heads:
                self.known_heads.append(str(address))

    async def _follow_leader(self) -> None:
        """The head stopped answering: probe the other heads every quarter heartbeat until it
        answers again or another head leads (then drop this connection: the reconnect loop finds
        the leader and registers there).  The answers count for self-fencing (Rule 5)."""
        from ember.shells.wire.leader import leads_elsewhere
        conn, acked_s = self.gcs, self.head_watch.acked_sent_s
        if len(self.head_addresses().split(",")) < 2:  # one head: nobody else can lead
            return
        while (conn is self.gcs and conn is not None and not conn.closed and not self.stopping.is_set()
               and self.head_watch.acked_sent_s == acked_s and not self.head_watch.is_lost):
            sent_s, seen, current = time.monotonic(), {}, self.leader_address
            found = await leads_elsewhere(conn, self.args.gcs_address, self.token, current, self.known_heads,
                                          CONFIG.heartbeat_interval_s * 2, seen)
            self.heads_probed(sent_s, seen, current)
            if found:
                log.warning("the control store at %s stopped answering and another head leads now; following it",
                            current)
                conn.abort()  # a cut-off peer never drains what close() would flush
                return
            if isinstance(seen.get(current), m.HeadRole):  # it answers: back to heartbeats
                return
            await asyncio.sleep(CONFIG.heartbeat_interval_s / 2)

    async def head_watch_loop(self) -> None:
        """Self-fencing and a silent head (logic/node/head_watch.py), checked twice a heartbeat."""
        while not self.stopping.is_set():
            await asyncio.sleep(CONFIG.heartbeat_interval_s / 2)
            self.run_watch_effects(self.head_watch.tick(time.monotonic()))

    def run_watch_effects(self, effects: list[Any]) -> None:
        for eff in effects:
            name = type(eff).__name__
            if name == "Fence":
                fenced = [l.worker_id for l in self.leases.leases.values() if l.for_actor]
                log.warning("no answer from the control store for %.1f s (heartbeat_timeout_s=%g): it may declare "
                            "this node dead and restart its actors elsewhere, so this node stops its %d actor "
                            "worker(s) itself (self-fencing)", eff.silent_s, CONFIG.heartbeat_timeout_s, len(fenced))
                for worker_id in fenced:
                    self._kill_worker(worker_id, "self-fencing: cut off from the control store")
            elif name == "Unfenced":
                log.info("the control store answers again after %.1f s of silence", eff.silent_s)
            elif name == "HeadLost" and self.gcs is not None and not self.gcs.closed and not self.stopping.is_set():
                log.error("the control store at %s stayed silent for %.0f s (gcs_reconnect_timeout_s): it counts as "
                          "lost; exiting", self.args.gcs_address, eff.silent_s)
                self.exit_reason = "control store silent"
                self.stopping.set()

    async def shutdown(self) -> None:
        self.stopping.set()
        if self.zygote is not None and self.zygote.stdin is not None:
            self.zygote.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await self.zygote.wait()
            except TimeoutError:
                self.zygote.kill()
        self.logs.flush_all()
        self.store.remove_dir()
        self.objects.close()


def placement_params() -> PlacementParams:
    if CONFIG.scheduling_policy not in POLICIES:
        raise ValueError(f"EMBER_SCHEDULING_POLICY must be one of {POLICIES}, got {CONFIG.scheduling_policy!r}")
    return PlacementParams(policy=CONFIG.scheduling_policy, bandwidth_bytes_per_s=CONFIG.scheduler_bandwidth_bytes_per_s,
                           keep_margin_s=CONFIG.scheduler_keep_margin_s,
                           spread_threshold=CONFIG.scheduler_spread_threshold)


def _load_fields(load: Optional[list]) -> tuple[int, float]:
    """[queued, mean task s] from a heartbeat (absent before the node's first one)."""
    if not load or len(load) < 2:
        return 0, 0.0
    return int(load[0]), float(load[1])


async def _main(args: argparse.Namespace) -> None:
    token = session.read_token(args.token_file)
    daemon = NodeDaemon(args, token)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stopping.set)
    daemon.objects.start()  # sweeps stale store/spill directories of dead daemons first
    daemon.store.create_dir()
    server = await rpc.serve(daemon, args.host, args.port, token)
    port = server.sockets[0].getsockname()[1]
    daemon.address = f"{addresses.advertised_host(args.host)}:{port}"
    daemon.leases.address = daemon.address
    daemon.objects.start_transfer(args.host, token)
    warning = addresses.exposure_warning(args.host)
    if warning:
        log.warning("%s", warning)
    await daemon.observability.start()
    await daemon.start_zygote()
    await daemon.connect_gcs(wait_s=CONFIG.connect_timeout_s)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(daemon.heartbeat_loop()), tg.create_task(daemon.zygote_loop()),
                     tg.create_task(daemon.head_watch_loop()),
                     tg.create_task(daemon.logs.run())]
            await daemon.stopping.wait()
            server.close()
            daemon.observability.close()
            await daemon.shutdown()
            for t in tasks:
                t.cancel()
            if daemon._reconnect_task is not None:
                daemon._reconnect_task.cancel()
    finally:
        daemon.store.remove_dir()
    if daemon.exit_reason:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--num-cpus", type=float, default=os.cpu_count() or 1)
    parser.add_argument("--num-gpus", type=float, default=None, help="default: the NVIDIA GPUs detected")
    parser.add_argument("--memory", type=float, default=0)
    parser.add_argument("--resources", default="{}")
    parser.add_argument("--labels", default="{}", help='node labels as JSON, e.g. \'{"zone": "a"}\'')
    parser.add_argument("--object-store-memory", type=int, default=0)
    parser.add_argument("--spill-dir", default="", help="where spilled objects go (default <session>/spill)")
    parser.add_argument("--head", action="store_true")
    args = parser.parse_args()
    if args.num_gpus is None:
        from ember.shells.node.gpu_detect import detect_num_gpus
        args.num_gpus = detect_num_gpus()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    install_uvloop()
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
