"""The head's Prometheus endpoint and Prometheus' service-discovery file.

The control store serves ``/metrics`` on ``metrics_head_port`` (0: a free port, -1: none),
written to ``<session>/metrics/head.json``: tasks by state and function (folded from the task
events it keeps anyway), actors by state and class, nodes, jobs and placement groups by state,
and its own request counts and handling times per message type (``RequestStats``: a dict
update per control message; the control store is never on a task's path).

``<session>/prom_metrics_service_discovery.json`` (Ray's file and format, for Prometheus'
``file_sd_configs``) lists the head's endpoint and every live node's, which node daemons put
in the KV namespace ``__ember_metrics``; it is rewritten when that list changes (checked every
second, written only on change).
"""
from __future__ import annotations

import asyncio
import bisect
import collections
import json
import os
from typing import Any, Iterator, Optional

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ember.config import CONFIG
from ember.shells.shared.metrics_http import MetricsServer, write_endpoint_file
from ember.shells.wire import addresses

KV_NAMESPACE = "__ember_metrics"   # the node daemons' side: shells/node/observability.py
SD_FILE = "prom_metrics_service_discovery.json"
_LATENCY_BOUNDS_S = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)


class RequestStats:
    """Per message type: how many the control store handled and how long each took (seconds)."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list] = {}   # name -> [bucket counts..., sum]

    def observe(self, kind: str, seconds: float) -> None:
        data = self.by_kind.get(kind)
        if data is None:
            data = self.by_kind[kind] = [0] * (len(_LATENCY_BOUNDS_S) + 2)
        data[bisect.bisect_left(_LATENCY_BOUNDS_S, seconds)] += 1
        data[-1] += seconds


class HeadMetrics:
    def __init__(self, store: Any, session_dir: str) -> None:
        self.store = store
        self.session_dir = session_dir
        self.server: Optional[MetricsServer] = None
        self.address = ""
        self._sd_written: Optional[str] = None

    async def start(self, host: str) -> None:
        if CONFIG.metrics_head_port < 0:
            return
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HeadCollector(self.store))
        self.server = MetricsServer(registry, self.store.token)
        port = await self.server.start(host, CONFIG.metrics_head_port)
        self.address = f"{addresses.advertised_host(host)}:{port}"
        write_endpoint_file(self.session_dir, "head", {"address": self.address, "pid": os.getpid(),
                                                       "kind": "head"})
        self.write_discovery_file()

    def targets(self) -> list[str]:
        alive = {n.node_id.hex() for n in self.store.nodes.nodes.values() if n.is_alive}
        nodes = []
        for key in self.store.kv.keys(KV_NAMESPACE, b""):
            if key.decode(errors="replace") in alive:
                value = self.store.kv.get(KV_NAMESPACE, key)
                if value:
                    nodes.append(value.decode())
        return ([self.address] if self.address else []) + sorted(set(nodes))

    def write_discovery_file(self) -> None:
        text = json.dumps([{"labels": {"job": "ember"}, "targets": self.targets()}])
        if text == self._sd_written:
            return
        path = os.path.join(self.session_dir, SD_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)   # Prometheus never reads half a file
        self._sd_written = text

    async def run(self) -> None:
        while self.server is not None:
            await asyncio.sleep(1.0)
            try:
                self.write_discovery_file()
            except OSError:
                pass   # the session directory went away (shutdown); nothing to tell

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def _extension(store: Any, module_suffix: str) -> Any:
    for ext in store.extensions:
        if type(ext).__module__.endswith(module_suffix):
            return ext
    return None


class HeadCollector:
    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        yield from self._tasks()
        yield from self._actors()
        yield from self._cluster()
        yield from self._requests()
        yield from self._autoscaler()

    def _tasks(self) -> Iterator[Any]:
        state = _extension(self.store, "state_service")
        tasks = GaugeMetricFamily("ember_tasks", "Tasks (one per attempt) in the control store's window by State "
                                  "and function Name", labels=["State", "Name"])
        dropped = CounterMetricFamily("ember_task_events_dropped", "Task events dropped (buffers or the window full)")
        if state is not None:
            state._fold()
            for name, entry in state.tasks.summarize().items():
                for st, count in entry["state_counts"].items():
                    tasks.add_metric([st, name], count)
            dropped.add_metric([], state.tasks.total_dropped())
        yield tasks
        yield dropped

    def _actors(self) -> Iterator[Any]:
        manager = _extension(self.store, "actor_manager")
        counts: collections.Counter = collections.Counter()
        if manager is not None:
            for plain in manager.table.snapshot()["actors"]:
                counts[(plain["state"], plain["class_name"])] += 1
        actors = GaugeMetricFamily("ember_actors", "Actors by State and class Name", labels=["State", "Name"])
        for (st, name), count in sorted(counts.items()):
            actors.add_metric([st, name], count)
        yield actors

    def _cluster(self) -> Iterator[Any]:
        nodes = GaugeMetricFamily("ember_cluster_nodes", "Nodes by State", labels=["State"])
        recs = list(self.store.nodes.nodes.values())
        nodes.add_metric(["ALIVE"], sum(1 for r in recs if r.is_alive))
        nodes.add_metric(["DEAD"], sum(1 for r in recs if not r.is_alive))
        yield nodes
        jobs = GaugeMetricFamily("ember_jobs", "Jobs (drivers) by State", labels=["State"])
        jobs.add_metric(["RUNNING"], sum(1 for j in self.store.jobs.values() if j["is_alive"]))
        jobs.add_metric(["FINISHED"], sum(1 for j in self.store.jobs.values() if not j["is_alive"]))
        yield jobs
        pgs = _extension(self.store, "placement_group_manager")
        groups = GaugeMetricFamily("ember_placement_groups", "Placement groups by State", labels=["State"])
        if pgs is not None:
            counts = collections.Counter(pgs.info(pg_id).state for pg_id in list(pgs.table.groups))
            for st, count in sorted(counts.items()):
                groups.add_metric([st], count)
        yield groups

    def _requests(self) -> Iterator[Any]:
        stats: Optional[RequestStats] = getattr(self.store, "request_stats", None)
        hist = HistogramMetricFamily("ember_gcs_request_duration_seconds", "Time the control store took to handle "
                                     "each message, by message type (Method); _count gives the request rate",
                                     labels=["Method"])
        if stats is not None:
            for kind, data in sorted(stats.by_kind.items()):
                buckets, total = [], 0
                for bound, count in zip([*_LATENCY_BOUNDS_S, float("inf")], data[:-1]):
                    total += count
                    buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
                hist.add_metric([kind], buckets, data[-1])
        yield hist

    def _autoscaler(self) -> Iterator[Any]:
        """Spend and nodes from the status record the autoscaler keeps in KV (docs/autoscaler.md)."""
        try:
            raw = self.store.kv.get("autoscaler", b"status")
            st = json.loads(raw) if raw else None
        except (ValueError, TypeError):
            st = None
        if not st:
            return
        cluster = str(st.get("cluster_name", ""))
        budget = st.get("budget") or {}
        for name, doc, value in (
                ("ember_autoscaler_cost_per_hour", "What the running worker nodes cost per hour (prepaid: 0)",
                 st.get("rate_per_hour")),
                ("ember_autoscaler_spent", "Spent so far in the current budget period", st.get("spent")),
                ("ember_autoscaler_forecast", "Spent + rate x hours left in the budget period", st.get("forecast")),
                ("ember_autoscaler_max_cost_per_hour", "The budget's cap on the running rate",
                 budget.get("max_cost_per_hour")),
                ("ember_autoscaler_budget_total", "The budget's total for its period", budget.get("total"))):
            if value is not None:
                g = GaugeMetricFamily(name, doc, labels=["Cluster"])
                g.add_metric([cluster], float(value))
                yield g
        nodes = GaugeMetricFamily("ember_autoscaler_nodes", "Nodes by node type and state (idle, busy, launching)",
                                  labels=["Cluster", "NodeType", "State"])
        for node_type, states in sorted((st.get("nodes_by_type") or {}).items()):
            for state, count in sorted(states.items()):
                nodes.add_metric([cluster, node_type, state], count)
        yield nodes
        waiting = GaugeMetricFamily("ember_autoscaler_waiting_shapes", "Resource shapes waiting (infeasible, over "
                                    "budget, at max_workers...)", labels=["Cluster"])
        waiting.add_metric([cluster], len(st.get("waiting") or []))
        yield waiting
