"""The control store process (Ray's GCS): node, job and KV tables and pub/sub.

It never sits on the path of a normal task.  Run as
``python -m ember.shells.control.control_store --port P --session-dir D``; it prints
``READY <port>`` on stdout once it listens.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

from ember.config import CONFIG
from ember.logic.control.kv import KvTable
from ember.logic.control.nodes import NodeRecord, NodeTable, NodeVerdict
from ember.protocol import codec
from ember.protocol import messages as m
from ember.shells.wire import addresses
from ember.shells.wire import rpc
from ember.shells.wire import session

log = logging.getLogger("ember.gcs")


class NodeDeclaredDead(Exception):
    """Refusal sent to a daemon whose node id was declared dead (its reply's error kind): the
    daemon must exit; it may never rejoin under that id (see ember.logic.control.nodes)."""


def node_info(rec: NodeRecord) -> m.NodeInfo:
    return m.NodeInfo(rec.node_id, rec.address, rec.resources_total, rec.resources_available,
                      rec.is_alive, rec.is_head, rec.store_dir, rec.labels, rec.pending_demands,
                      rec.object_store_used_bytes, rec.object_store_capacity_bytes, rec.load or None)


class ControlStore:
    def __init__(self, token: bytes, storage: Any = None) -> None:
        from ember.shells.control.storage.durable import DurableState
        from ember.shells.control.storage.memory import MemoryStorage
        self.token = token
        self.nodes = NodeTable(CONFIG.heartbeat_timeout_s)
        self.durable = DurableState(storage if storage is not None else MemoryStorage())  # issue #11
        self.kv: KvTable = self.durable.kv
        self.jobs: dict[bytes, dict[str, Any]] = {}
        self._next_job = 1
        self.subscribers: dict[tuple[str, bytes], set[rpc.Connection]] = {}
        self.extensions: list[Any] = []  # table managers added by later layers (actors, ...)
        from ember.shells.control.actor_manager import ActorManager
        self.extensions.append(ActorManager(self))
        from ember.shells.control.state_service import StateService
        self.extensions.append(StateService(self))
        from ember.shells.control.placement_group_manager import PlacementGroupManager
        self.extensions.append(PlacementGroupManager(self))
        from ember.shells.control.recovery import HeadRecovery
        self.extensions.append(HeadRecovery(self))  # node table in storage, reconciliation (issue #11)
        # Standby heads (issue #11 §3, shells/control/head_runner.py): a head that does not lead
        # answers WhoLeads and refuses everything else, naming the leader.
        self.leading = True
        self.conns: set[rpc.Connection] = set()
        self.held_losses: list[rpc.Connection] = []  # connections lost while not serving
        self.who_leads: Any = lambda: m.HeadRole(self.leading, 1, "", "", "leading", [])
        from ember.shells.control.metrics_exporter import RequestStats
        self.request_stats = RequestStats()   # per message type: count and handling time (/metrics)

    def attach_storage(self, storage: Any) -> None:
        """Use ``storage`` (e.g. fenced by this head's epoch) for the durable tables."""
        from ember.shells.control.storage.durable import DurableState
        self.durable = DurableState(storage)
        self.kv = self.durable.kv

    def on_WhoLeads(self, conn: rpc.Connection, msg: m.WhoLeads) -> m.HeadRole:
        return self.who_leads()

    def _refuse_not_leading(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        if kind == codec.KIND_REQUEST:
            role = self.who_leads()
            leader = f"the leader is at {role.leader_address} (epoch {role.epoch})" if role.leader_address \
                else "no leader is known yet"
            conn.reply_error(request_id, "NotLeader", f"this head ({role.head_address}, {role.role}) does not "
                             f"lead: {leader}; ask WhoLeads and reconnect there")

    # --- rpc.Handler ------------------------------------------------------------------------
    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        started_s = time.perf_counter()
        self._handle_message(conn, kind, request_id, msg)
        self.request_stats.observe(type(msg).__name__, time.perf_counter() - started_s)

    def _handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        if not self.leading and not isinstance(msg, m.WhoLeads):
            self._refuse_not_leading(conn, kind, request_id, msg)
            return
        self.conns.add(conn)
        method = getattr(self, "on_" + type(msg).__name__, None)
        if method is None:
            for ext in self.extensions:
                method = getattr(ext, "on_" + type(msg).__name__, None)
                if method is not None:
                    break
        if method is None:
            if kind == codec.KIND_REQUEST:
                conn.reply_error(request_id, "ValueError", f"control store does not handle {type(msg).__name__}")
            return
        try:
            result = method(conn, msg)
        except Exception as exc:
            if not isinstance(exc, NodeDeclaredDead):  # an expected refusal, logged where it is made
                log.exception("handling %s", type(msg).__name__)
            if kind == codec.KIND_REQUEST:
                conn.reply_error(request_id, type(exc).__name__, str(exc))
            return
        if kind != codec.KIND_REQUEST:
            return
        if asyncio.iscoroutine(result):
            asyncio.ensure_future(self._reply_later(conn, request_id, result))
        else:
            conn.reply(request_id, result if result is not None else m.Ok())

    async def _reply_later(self, conn: rpc.Connection, request_id: int, coro: Any) -> None:
        try:
            result = await coro
            conn.reply(request_id, result if result is not None else m.Ok())
        except Exception as exc:
            conn.reply_error(request_id, type(exc).__name__, str(exc))

    def connection_lost(self, conn: rpc.Connection) -> None:
        self.conns.discard(conn)
        if not self.leading:  # suspended: handled if it serves again; deposed: the next leader's to handle
            if conn.state.get("node_id") is not None or conn.state.get("job_id") is not None:
                self.held_losses.append(conn)
            return
        for subs in self.subscribers.values():
            subs.discard(conn)
        node_id = conn.state.get("node_id")
        if node_id is not None and self.nodes.mark_dead(node_id):
            log.warning("node %s disconnected; marked dead", node_id.hex()[:8])
            self._node_died(node_id)
        job_id = conn.state.get("job_id")
        if job_id is not None:
            self._finish_job(job_id)

    # --- pub/sub ------------------------------------------------------------------------------
    def publish(self, channel: str, key: bytes, data: Any) -> None:
        msg = m.Published(channel, key, data)
        for k in ((channel, key), (channel, b"")):
            for conn in list(self.subscribers.get(k, ())):
                if not conn.closed:
                    conn.send(msg)

    def on_Subscribe(self, conn: rpc.Connection, msg: m.Subscribe) -> m.Ok:
        self.subscribers.setdefault((msg.channel, msg.key), set()).add(conn)
        return m.Ok()

    def on_LogLines(self, conn: rpc.Connection, msg: m.LogLines) -> None:
        self.publish("logs", msg.job_id, msg)

    # --- nodes ----------------------------------------------------------------------------------
    def on_RegisterNode(self, conn: rpc.Connection, msg: m.RegisterNode) -> m.ClusterView:
        i = msg.info
        rec = NodeRecord(i.node_id, i.address, i.resources_total, i.resources_available, i.is_head,
                         i.store_dir, i.labels, object_store_capacity_bytes=i.object_store_capacity_bytes)
        if self.nodes.register(rec, time.monotonic()) is NodeVerdict.DEAD:
            log.warning("node %s was declared dead; refusing its registration (it must exit)",
                        i.node_id.hex()[:8])
            raise NodeDeclaredDead(f"node {i.node_id.hex()} was declared dead; a node never rejoins "
                                   "under the id of a dead node: exit (a new daemon joins with a new id)")
        conn.state["node_id"] = i.node_id
        log.info("node %s registered at %s with %s", i.node_id.hex()[:8], i.address, i.resources_total)
        self.publish("nodes", b"", node_info(rec))
        self._call_hooks("nodes_changed")
        return self._view()

    def _view(self) -> m.ClusterView:
        return m.ClusterView(self.nodes.version, [node_info(r) for r in self.nodes.nodes.values()])

    def on_Heartbeat(self, conn: rpc.Connection, msg: m.Heartbeat) -> m.ClusterView:
        verdict = self.nodes.heartbeat(msg.node_id, msg.resources_available, msg.pending_demands,
                                       msg.object_store_used_bytes, time.monotonic(), msg.load)
        if verdict is NodeVerdict.DEAD:
            raise NodeDeclaredDead(f"node {msg.node_id.hex()} was declared dead (missed heartbeats); "
                                   "its actors were restarted elsewhere: exit")
        if verdict is NodeVerdict.UNKNOWN:
            raise LookupError("node is not registered here; register again")
        self._call_hooks("heartbeat_seen")  # placement groups waiting for room look again
        if msg.view_version == self.nodes.version:
            return m.ClusterView(self.nodes.version, [])
        return self._view()

    def on_GetNodes(self, conn: rpc.Connection, msg: m.GetNodes) -> m.NodeList:
        return m.NodeList([node_info(r) for r in self.nodes.nodes.values()])

    def on_DrainNode(self, conn: rpc.Connection, msg: m.DrainNode) -> m.Ok:
        if self.nodes.mark_dead(msg.node_id):
            self._node_died(msg.node_id)
        return m.Ok()

    def _node_died(self, node_id: bytes) -> None:
        rec = self.nodes.nodes[node_id]
        self.publish("nodes", b"", node_info(rec))
        self._call_hooks("node_died", node_id)

    def _call_hooks(self, name: str, *args: Any) -> None:
        for ext in self.extensions:
            hook = getattr(ext, name, None)
            if hook is not None:
                hook(*args)

    async def expire_loop(self) -> None:
        while True:
            await asyncio.sleep(CONFIG.heartbeat_interval_s)
            if not self.leading:  # stepped down: no more decisions
                continue
            for node_id in self.nodes.expire(time.monotonic()):
                log.warning("node %s missed heartbeats; marked dead", node_id.hex()[:8])
                self._node_died(node_id)

    # --- jobs -------------------------------------------------------------------------------------
    def on_RegisterJob(self, conn: rpc.Connection, msg: m.RegisterJob) -> m.JobRegistered:
        job_id = self._next_job.to_bytes(4, "little")
        self._next_job += 1
        namespace = msg.namespace
        self.jobs[job_id] = {"namespace": namespace, "driver_pid": msg.driver_pid, "is_alive": True,
                             "driver_address": msg.driver_address, "node_id": msg.node_id,
                             "entrypoint": msg.entrypoint, "start_time": time.time()}
        self.durable.job_changed(job_id, self.jobs[job_id])
        conn.state["job_id"] = job_id
        return m.JobRegistered(job_id, namespace)

    def on_RejoinJob(self, conn: rpc.Connection, msg: m.RejoinJob) -> m.Ok:
        """A driver reconnected after losing this store: bind its job to the new connection
        (a store restarted without its tables learns the job again)."""
        job = self.jobs.get(msg.job_id)
        if job is None:
            self.jobs[msg.job_id] = {"namespace": msg.namespace, "driver_pid": msg.driver_pid, "is_alive": True,
                                     "driver_address": msg.driver_address, "node_id": msg.node_id,
                                     "entrypoint": msg.entrypoint, "start_time": time.time()}
            self._next_job = max(self._next_job, int.from_bytes(msg.job_id, "little") + 1)
            self.durable.job_changed(msg.job_id, self.jobs[msg.job_id])
        self.durable.restored_jobs.discard(msg.job_id)
        conn.state["job_id"] = msg.job_id
        return m.Ok()

    def on_JobFinished(self, conn: rpc.Connection, msg: m.JobFinished) -> m.Ok:
        self._finish_job(msg.job_id)
        return m.Ok()

    def _finish_job(self, job_id: bytes) -> None:
        job = self.jobs.get(job_id)
        if job is None or not job["is_alive"]:
            return
        job["is_alive"] = False
        job["end_time"] = time.time()
        self.durable.job_changed(job_id, job)
        self.publish("jobs", b"", m.JobFinished(job_id))
        for ext in self.extensions:
            hook = getattr(ext, "job_finished", None)
            if hook is not None:
                hook(job_id)

    def on_GetJobs(self, conn: rpc.Connection, msg: m.GetJobs) -> m.JobList:
        return m.JobList([[j, v["namespace"], v["driver_pid"], v["is_alive"]] for j, v in self.jobs.items()])

    # --- kv ---------------------------------------------------------------------------------------
    def on_KvPut(self, conn: rpc.Connection, msg: m.KvPut) -> m.KvValue:
        added = self.kv.put(msg.namespace, msg.key, msg.value, msg.overwrite)
        return m.KvValue(b"1" if added else b"0")

    def on_KvGet(self, conn: rpc.Connection, msg: m.KvGet) -> m.KvValue:
        return m.KvValue(self.kv.get(msg.namespace, msg.key))

    def on_KvDel(self, conn: rpc.Connection, msg: m.KvDel) -> m.KvValue:
        return m.KvValue(b"1" if self.kv.delete(msg.namespace, msg.key) else b"0")

    def on_KvKeys(self, conn: rpc.Connection, msg: m.KvKeys) -> m.KvKeyList:
        return m.KvKeyList(self.kv.keys(msg.namespace, msg.prefix))


async def _finish_unclaimed_jobs(store: ControlStore) -> None:
    """Jobs alive in the storage whose driver did not rejoin in time ended with the old head."""
    await asyncio.sleep(CONFIG.gcs_reconnect_timeout_s)
    for job_id in list(store.durable.restored_jobs):
        log.warning("job %s did not rejoin the restarted control store; finished", job_id.hex())
        store._finish_job(job_id)
    store.durable.restored_jobs.clear()


def _announce(port: int) -> None:
    try:
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()
    except OSError:  # restarted as a standby (exec) after whoever read the first line went away
        pass


async def _main(args: argparse.Namespace) -> None:
    from ember.shells.control.head_runner import HeadRunner
    token = session.read_token(args.token_file)
    store = ControlStore(token)
    store.leading = False
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await rpc.serve(store, args.host, args.port, token)
    warning = addresses.exposure_warning(args.host)
    if warning:
        log.warning("%s", warning)
    port = server.sockets[0].getsockname()[1]
    runner = HeadRunner(store, args, f"{addresses.advertised_host(args.host)}:{port}", stop)
    try:
        await runner.wait_leading(lambda: _announce(port))
    except BaseException:
        server.close()
        runner.close()
        raise
    if not store.leading:  # stopped while waiting as a standby
        server.close()
        runner.close()
        return
    from ember.shells.control.metrics_exporter import HeadMetrics
    metrics = HeadMetrics(store, args.session_dir)   # /metrics and Prometheus' discovery file
    await metrics.start(args.host)
    if not runner.is_standby:
        _announce(port)
    try:
        async with asyncio.TaskGroup() as tg:
            expire = tg.create_task(store.expire_loop())
            unclaimed = tg.create_task(_finish_unclaimed_jobs(store))
            sd_file = tg.create_task(metrics.run())
            await stop
            sd_file.cancel()
            expire.cancel()
            unclaimed.cancel()
            server.close()
            runner.close()
    except BaseException:
        if not runner.deposed_reason:  # a deposed head's decisions fail on the fence: expected
            raise
        server.close()
        runner.close()
    finally:
        metrics.close()
    if runner.deposed_reason:
        runner.exec_as_standby()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=CONFIG.gcs_port)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--storage", default="memory://",
                        help="memory://, file:///path/state.db or redis://[:password@]host:port[/db]")
    parser.add_argument("--standby", action="store_true",
                        help="wait for the leadership lease in the storage and take it when it expires")
    parser.add_argument("--after-step-down", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    rpc.install_uvloop()
    from ember.shells.control.leadership import HeadRefused
    from ember.shells.control.storage import StorageError
    try:
        asyncio.run(_main(args))
    except (StorageError, HeadRefused) as exc:  # bad URL, unreachable, wrong password, incompatible version,
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")  # another head leads
        sys.exit(1)


if __name__ == "__main__":
    main()
