"""The overview's charts: cluster figures over the last hour, sampled on the head.

``History`` is plain data (no clock, no I/O): the sampler gives it ``now`` and the figures;
it keeps at most ``capacity`` samples (an hour at the default period) and drops older ones.
``sample_figures`` turns the nodes' rows into the figures charted.
"""
from __future__ import annotations

import collections
from typing import Any, Iterable

SERIES = ("cpu_used", "cpu_total", "gpu_used", "gpu_total", "memory_used_bytes", "memory_total_bytes",
          "object_store_used_bytes", "object_store_capacity_bytes", "host_cpu_percent", "alive_nodes")


class History:
    def __init__(self, period_s: float = 10.0, window_s: float = 3600.0) -> None:
        if period_s <= 0 or window_s < period_s:
            raise ValueError(f"period_s must be > 0 and <= window_s, got {period_s}, {window_s}")
        self.period_s = period_s
        self.window_s = window_s
        self._samples: collections.deque = collections.deque(maxlen=int(window_s // period_s) + 1)

    def add(self, now_s: float, figures: dict[str, float]) -> None:
        if self._samples and now_s < self._samples[-1][0]:
            raise ValueError(f"samples go forward in time: {now_s} after {self._samples[-1][0]}")
        self._samples.append((now_s, {k: float(figures.get(k, 0.0)) for k in SERIES}))
        while self._samples and self._samples[0][0] < now_s - self.window_s:
            self._samples.popleft()

    def __len__(self) -> int:
        return len(self._samples)

    def to_json(self) -> dict[str, Any]:
        """Column form: {"t": [seconds on the head's monotonic clock...], "<series>": [values...]}."""
        out: dict[str, Any] = {"period_s": self.period_s, "window_s": self.window_s,
                               "t": [round(t, 1) for t, _ in self._samples]}
        for name in SERIES:
            out[name] = [f[name] for _, f in self._samples]
        return out


def _used(node: dict, name: str) -> tuple[float, float]:
    total = float(node["resources_total"].get(name, 0.0))
    free = max(0.0, float(node["resources_available"].get(name, 0.0)))
    return max(0.0, total - free), total


def sample_figures(nodes: Iterable[dict]) -> dict[str, float]:
    """Cluster-wide sums over the live nodes (rows of ClusterSource.nodes_with_stats)."""
    figures = {k: 0.0 for k in SERIES}
    cpu_weighted = cpus = 0.0
    for node in nodes:
        if node["state"] != "ALIVE":
            continue
        figures["alive_nodes"] += 1
        for res, key in (("CPU", "cpu"), ("GPU", "gpu")):
            used, total = _used(node, res)
            figures[f"{key}_used"] += used
            figures[f"{key}_total"] += total
        used, total = _used(node, "memory")
        figures["memory_used_bytes"] += used
        figures["memory_total_bytes"] += total
        figures["object_store_used_bytes"] += node["object_store_used_bytes"]
        figures["object_store_capacity_bytes"] += node["object_store_capacity_bytes"]
        host = node.get("host")
        if host:
            cpu_weighted += host["cpu_percent"] * host["cpu_count"]
            cpus += host["cpu_count"]
    figures["host_cpu_percent"] = cpu_weighted / cpus if cpus else 0.0
    return figures
