"""User metrics (``ember.util.metrics``): what a process records, and what a node daemon folds.

A process records into a ``MetricsBuffer`` (any thread, under the caller's lock): counters add
increments, gauges keep the last value, histograms add to per-bucket counts and a sum.
``take()`` empties it into the wire form of ``MetricsReport``.  The node daemon folds every
report into one ``MetricsTable`` and exports it at scrape time.

Rule 1: a metric is known by its name; the first definition a node sees wins, a later report
        of the same name with another kind or other tag keys is refused (counted in ``refused``).
Rule 2: counters and histograms accumulate over every process of the node (a worker that exits
        does not take its counts with it); a gauge's value is the last one reported for its tags.
Rule 3: a histogram's buckets are its ``boundaries`` (upper bounds) and a last +Inf bucket.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Optional

KINDS = ("counter", "gauge", "histogram")
VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass
class MetricDef:
    name: str
    kind: str
    description: str
    tag_keys: tuple
    boundaries: tuple = ()
    values: dict = field(default_factory=dict)  # tag values tuple -> float, or [counts..., sum] (histogram)

    def wire_head(self) -> list:
        return [self.name, self.kind, self.description, list(self.tag_keys), list(self.boundaries)]


class MetricsBuffer:
    """One process's records since the last report (the caller holds a lock around calls)."""

    def __init__(self) -> None:
        self.defs: dict[str, MetricDef] = {}

    def record(self, name: str, kind: str, description: str, tag_keys: tuple, boundaries: tuple,
               tags: tuple, value: float) -> None:
        d = self.defs.get(name)
        if d is None:
            d = self.defs[name] = MetricDef(name, kind, description, tag_keys, boundaries)
        if kind == "counter":
            d.values[tags] = d.values.get(tags, 0.0) + value
        elif kind == "gauge":
            d.values[tags] = value
        else:
            data = d.values.get(tags)
            if data is None:
                data = d.values[tags] = [0] * (len(boundaries) + 2)
            data[bisect.bisect_left(boundaries, value)] += 1
            data[-1] += value

    def take(self) -> list:
        """The wire form of what was recorded, and an empty buffer."""
        out = [d.wire_head() + [[[list(tags), v] for tags, v in d.values.items()]] for d in self.defs.values()]
        self.defs = {}
        return out


class MetricsTable:
    """A node's user metrics, folded from its processes' reports."""

    def __init__(self) -> None:
        self.defs: dict[str, MetricDef] = {}
        self.refused = 0

    def add_report(self, entries: list) -> None:
        for entry in entries:
            try:
                name, kind, description, tag_keys, boundaries, points = entry
                self._add(str(name), str(kind), str(description), tuple(tag_keys), tuple(boundaries), points)
            except (TypeError, ValueError):
                self.refused += 1   # a malformed entry from a peer: refused, never fatal

    def _add(self, name: str, kind: str, description: str, tag_keys: tuple, boundaries: tuple,
             points: list) -> None:
        if kind not in KINDS or not VALID_NAME.match(name):
            raise ValueError(name)
        d = self.defs.get(name)
        if d is None:
            d = self.defs[name] = MetricDef(name, kind, description, tag_keys, boundaries)
        elif (d.kind, d.tag_keys, d.boundaries) != (kind, tag_keys, boundaries):
            raise ValueError(f"metric {name} redefined")
        for tags, value in points:
            tags = tuple(str(t) for t in tags)
            if len(tags) != len(tag_keys):
                raise ValueError("tags")
            if kind == "counter":
                d.values[tags] = d.values.get(tags, 0.0) + float(value)
            elif kind == "gauge":
                d.values[tags] = float(value)
            else:
                have: Optional[list] = d.values.get(tags)
                if len(value) != len(boundaries) + 2:
                    raise ValueError("buckets")
                d.values[tags] = [a + b for a, b in zip(have, value)] if have else list(value)

    def check_invariants(self) -> None:
        for d in self.defs.values():
            assert d.kind in KINDS, d
            for tags, v in d.values.items():
                assert len(tags) == len(d.tag_keys), (d.name, tags)
                if d.kind == "histogram":
                    assert len(v) == len(d.boundaries) + 2 and all(c >= 0 for c in v[:-1]), (d.name, v)


def cumulative_buckets(boundaries: tuple, data: list) -> list[tuple[str, float]]:
    """Prometheus' cumulative (le, count) pairs from per-bucket counts, +Inf last."""
    out, total = [], 0
    for bound, count in zip([*boundaries, float("inf")], data[:-1]):
        total += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
    return out


def histogram_count_sum(data: list) -> tuple[float, float]:
    return float(sum(data[:-1])), float(data[-1])


__all__ = ["MetricsBuffer", "MetricsTable", "MetricDef", "cumulative_buckets", "histogram_count_sum", "KINDS",
           "VALID_NAME"]
