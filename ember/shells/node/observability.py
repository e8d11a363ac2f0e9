"""What a node daemon tells about itself: its Prometheus endpoint, its workers and its log files.

- Metrics: one endpoint per node daemon (``metrics_export_port``; 0 a free port, -1 none),
  collected at scrape time from the counters the daemon keeps anyway (``NodeCollector``), plus
  the user metrics its drivers and workers report about once a second (``MetricsReport``,
  folded by ``logic/metrics_table.MetricsTable``).  Its address goes to
  ``<session>/metrics/node-<id>.json`` and to the control store's KV (namespace
  ``__ember_metrics``), from which the head writes Prometheus' service-discovery file.
- ``ListNodeWorkers``: the live drivers and workers and the last exited ones (``list_workers``).
- ``ListLogFiles`` / ``ReadLogFile``: files of the session's ``logs/`` directory, by name only
  (no path, no link followed), for ``list_logs`` / ``get_log`` / ``ember logs``.
"""
from __future__ import annotations

import collections
import fnmatch
import logging
import os
import time
from typing import Any, Iterator, Optional

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ember.config import CONFIG
from ember.logic.metrics_table import MetricsTable, cumulative_buckets, histogram_count_sum
from ember.protocol import messages as m
from ember.shells.shared.metrics_http import MetricsServer, write_endpoint_file
from ember.shells.wire import addresses

log = logging.getLogger(__name__)
KV_NAMESPACE = "__ember_metrics"
_EXITED_MAX = 1000
_READ_MAX_BYTES = 4 * 1024 * 1024


class NodeObservability:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.user_metrics = MetricsTable()
        self.exited: collections.deque = collections.deque(maxlen=_EXITED_MAX)
        self.started_ms: dict[bytes, int] = {}
        self.server: Optional[MetricsServer] = None
        self.metrics_address = ""

    # --- metrics ------------------------------------------------------------------------------------
    async def start(self) -> None:
        if CONFIG.metrics_export_port < 0:
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(NodeCollector(self.daemon, self.user_metrics))
        self.server = MetricsServer(registry, self.daemon.token)
        host = self.daemon.args.host
        port = await self.server.start(host, CONFIG.metrics_export_port)
        self.metrics_address = f"{addresses.advertised_host(host)}:{port}"
        write_endpoint_file(self.daemon.session_dir, f"node-{self.daemon.node_id.hex()}",
                            {"address": self.metrics_address, "node_id": self.daemon.node_id.hex(),
                             "pid": os.getpid(), "kind": "node"})

    async def announce(self) -> None:
        """Tell the control store where this node's metrics are (it writes the discovery file)."""
        gcs = self.daemon.gcs
        if self.metrics_address and gcs is not None and not gcs.closed:
            await gcs.request(m.KvPut(KV_NAMESPACE, self.daemon.node_id.hex().encode(),
                                      self.metrics_address.encode(), True))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def on_MetricsReport(self, conn: Any, request_id: int, msg: m.MetricsReport) -> None:
        self.user_metrics.add_report(msg.metrics if isinstance(msg.metrics, list) else [])

    # --- workers --------------------------------------------------------------------------------------
    def worker_started(self, worker_id: bytes) -> None:
        self.started_ms[worker_id] = int(time.time() * 1000)

    def worker_exited(self, worker_id: bytes, pid: int, status: Any) -> None:
        row = self._worker_row(worker_id, pid)
        row["is_alive"] = False
        row["exit_type"], row["exit_detail"] = _exit_type(status)
        row["end_time_ms"] = int(time.time() * 1000)
        self.exited.append(row)
        self.started_ms.pop(worker_id, None)

    def _worker_row(self, worker_id: bytes, pid: int) -> dict[str, Any]:
        d = self.daemon
        w = d.leases.workers.get(worker_id)
        job = d.worker_jobs.get(worker_id, w.job_id if w is not None else b"")
        return {"worker_id": worker_id.hex(), "is_alive": True, "worker_type": "WORKER", "exit_type": None,
                "exit_detail": None, "node_id": d.node_id.hex(), "ip": addresses.advertised_host(d.args.host),
                "pid": pid, "job_id": job.hex() if job else None,
                "state": w.state.name if w is not None else "STARTING",
                "worker_launch_time_ms": self.started_ms.get(worker_id), "end_time_ms": None}

    def on_ListNodeWorkers(self, conn: Any, request_id: int, msg: m.ListNodeWorkers) -> None:
        d = self.daemon
        rows = [self._worker_row(wid, pid) for wid, pid in list(d.worker_pids.items())]
        for c in list(d.driver_conns):
            pid, address, _ = c.state.get("process", (0, "", "driver"))
            job = c.state.get("driver_job", b"")
            rows.append({"worker_id": None, "is_alive": True, "worker_type": "DRIVER", "exit_type": None,
                         "exit_detail": None, "node_id": d.node_id.hex(), "ip": address.rpartition(":")[0],
                         "pid": pid, "job_id": job.hex() if job else None, "state": "DRIVER",
                         "worker_launch_time_ms": None, "end_time_ms": None})
        rows.extend(dict(r) for r in self.exited)
        conn.reply(request_id, m.NodeWorkerList(d.node_id, d.address, rows))

    # --- logs -----------------------------------------------------------------------------------------
    def logs_dir(self) -> str:
        return os.path.join(self.daemon.session_dir, "logs")

    def on_ListLogFiles(self, conn: Any, request_id: int, msg: m.ListLogFiles) -> None:
        pattern = msg.glob or "*"
        files = []
        with os.scandir(self.logs_dir()) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False) and fnmatch.fnmatchcase(entry.name, pattern):
                    files.append([entry.name, entry.stat(follow_symlinks=False).st_size])
        files.sort()
        conn.reply(request_id, m.LogFileList(self.daemon.node_id, files))

    def on_ReadLogFile(self, conn: Any, request_id: int, msg: m.ReadLogFile) -> None:
        name = msg.filename
        if not name or name != os.path.basename(name) or name.startswith(".") or "\0" in name:
            raise ValueError(f"{name!r} is not the name of a file in the session's logs directory")
        max_bytes = max(1, min(int(msg.max_bytes), _READ_MAX_BYTES))
        try:
            fd = os.open(os.path.join(self.logs_dir(), name), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise FileNotFoundError(f"no log file {name!r} on node {self.daemon.node_id.hex()}") from None
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if msg.offset >= 0:
                f.seek(min(msg.offset, size))
                data = f.read(max_bytes)
                conn.reply(request_id, m.LogChunk(data, min(msg.offset, size) + len(data), size))
                return
            f.seek(max(0, size - max_bytes))
            data = f.read(size - f.tell())
        if msg.tail_lines >= 0:
            lines = data.split(b"\n")
            is_whole = data.endswith(b"\n")
            keep = lines[:-1] if is_whole else lines
            keep = keep[len(keep) - msg.tail_lines:] if msg.tail_lines else []
            data = b"\n".join(keep) + (b"\n" if keep and is_whole else b"")
        conn.reply(request_id, m.LogChunk(data, size, size))


def _exit_type(status: Any) -> tuple[str, str]:
    if isinstance(status, int) and status < 0:
        return "SYSTEM_ERROR", f"killed by signal {-status}"
    if status == 0:
        return "INTENDED_SYSTEM_EXIT", "exit code 0"
    return "USER_ERROR" if status is not None else "SYSTEM_ERROR", f"exit code {status}"


class NodeCollector:
    """The node's metrics, read from the daemon's own tables when Prometheus scrapes."""

    def __init__(self, daemon: Any, user_metrics: MetricsTable) -> None:
        self.daemon = daemon
        self.user_metrics = user_metrics
        psutil.cpu_percent(None)   # the first call only starts the measurement

    def collect(self) -> Iterator[Any]:
        d = self.daemon
        keys = ["NodeAddress", "SessionName"]
        base = [d.address, os.path.basename(d.session_dir)]
        yield from self._resources(keys, base)
        yield from self._objects(keys, base)
        yield from self._workers(keys, base)
        yield from self._host(keys, base)
        yield from user_metric_families(self.user_metrics)

    def _resources(self, keys: list[str], base: list[str]) -> Iterator[Any]:
        leases = self.daemon.leases
        used = GaugeMetricFamily("ember_resources", "Logical resources of this node (Name) that are USED or "
                                 "AVAILABLE (State)", labels=keys + ["Name", "State"])
        total = GaugeMetricFamily("ember_resources_total", "Logical resources of this node (Name)",
                                  labels=keys + ["Name"])
        for name, amount in leases.total.to_dict().items():
            free = leases.available.to_dict().get(name, 0.0)
            used.add_metric(base + [name, "USED"], max(0.0, amount - free))
            used.add_metric(base + [name, "AVAILABLE"], free)
            total.add_metric(base + [name], amount)
        yield used
        yield total

    def _objects(self, keys: list[str], base: list[str]) -> Iterator[Any]:
        o = self.daemon.objects
        mem = GaugeMetricFamily("ember_object_store_memory", "Object store bytes by Location (MMAP_SHM: in "
                                "shared memory, SPILLED: on disk)", labels=keys + ["Location"])
        mem.add_metric(base + ["MMAP_SHM"], o.used_bytes())
        mem.add_metric(base + ["SPILLED"], o.spilled_bytes())
        yield mem
        for name, doc, value in (
                ("ember_object_store_used_memory", "Object store bytes in shared memory", o.used_bytes()),
                ("ember_object_store_available_memory", "Object store bytes free",
                 max(0, o.capacity_bytes - o.used_bytes())),
                ("ember_object_store_capacity_memory", "Object store capacity in bytes", o.capacity_bytes),
                ("ember_object_store_num_local_objects", "Objects in this node's store (in memory or spilled)",
                 o.num_objects())):
            yield _gauge(name, doc, keys, base, value)
        spilled = GaugeMetricFamily("ember_spill_manager_objects", "Objects on disk only (Type=Spilled)",
                                    labels=keys + ["Type"])
        spilled.add_metric(base + ["Spilled"], o.num_spilled_objects())
        yield spilled
        moved = CounterMetricFamily("ember_spill_manager_objects_bytes", "Bytes spilled and restored since the "
                                    "node started (Type)", labels=keys + ["Type"])
        moved.add_metric(base + ["Spilled"], o.spilled_total_bytes)
        moved.add_metric(base + ["Restored"], o.restored_total_bytes)
        yield moved

    def _workers(self, keys: list[str], base: list[str]) -> Iterator[Any]:
        d = self.daemon
        counts: dict[str, int] = collections.Counter(w.state.name for w in d.leases.workers.values())
        workers = GaugeMetricFamily("ember_workers", "Worker processes of this node by State", labels=keys + ["State"])
        for state in ("STARTING", "IDLE", "LEASED"):
            workers.add_metric(base + [state], counts.get(state, 0))
        yield workers
        yield _gauge("ember_drivers", "Drivers attached to this node", keys, base, len(d.driver_conns))
        sched = GaugeMetricFamily("ember_scheduler_tasks", "Lease requests of this node by State (Queued: waiting "
                                  "for resources or a worker; Leased: granted and held)", labels=keys + ["State"])
        sched.add_metric(base + ["Queued"], len(d.leases.queue))
        sched.add_metric(base + ["Leased"], len(d.leases.leases))
        yield sched
        yield _gauge("ember_scheduler_lease_queue_length", "Lease requests waiting on this node", keys, base,
                     len(d.leases.queue) + len(d.leases.parked))

    def _host(self, keys: list[str], base: list[str]) -> Iterator[Any]:
        vm = psutil.virtual_memory()
        yield _gauge("ember_node_cpu_utilization", "CPU use of this machine in percent (since the last scrape)",
                     keys, base, psutil.cpu_percent(None))
        yield _gauge("ember_node_cpu_count", "CPUs of this machine", keys, base, psutil.cpu_count() or 0)
        yield _gauge("ember_node_mem_used", "Memory used on this machine in bytes", keys, base, vm.total - vm.available)
        yield _gauge("ember_node_mem_total", "Memory of this machine in bytes", keys, base, vm.total)


def _gauge(name: str, doc: str, keys: list[str], base: list[str], value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=keys)
    g.add_metric(base, value)
    return g


def user_metric_families(table: MetricsTable) -> Iterator[Any]:
    """``ember.util.metrics`` metrics as Prometheus families, named ``ember_<name>`` (Ray: ``ray_<name>``)."""
    for d in list(table.defs.values()):
        name, keys = "ember_" + d.name, list(d.tag_keys)
        if d.kind == "counter":
            fam: Any = CounterMetricFamily(name, d.description or d.name, labels=keys)
            for tags, value in d.values.items():
                fam.add_metric(list(tags), value)
        elif d.kind == "gauge":
            fam = GaugeMetricFamily(name, d.description or d.name, labels=keys)
            for tags, value in d.values.items():
                fam.add_metric(list(tags), value)
        else:
            fam = HistogramMetricFamily(name, d.description or d.name, labels=keys)
            for tags, data in d.values.items():
                _, total = histogram_count_sum(data)
                fam.add_metric(list(tags), cumulative_buckets(d.boundaries, data), total)
        yield fam
