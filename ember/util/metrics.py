"""Ray's ``ray.util.metrics``: Counter, Gauge and Histogram, usable in drivers, tasks and actors.

A record is a dict update in this process; about once a second the process sends what changed to
its node daemon, whose Prometheus endpoint exports the metric as ``ember_<name>`` (Ray exports
``ray_<name>``) with the tag keys as labels.  A Counter is exported as a Prometheus counter
(``ember_<name>_total``).  Outside a connected process (no ``ember.init()``, not in a task)
records are dropped.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence, Union

from ember.logic.metrics_table import VALID_NAME
from ember.shells.worker import core_worker, user_metrics

Number = Union[int, float]


class Metric:
    """The parent class of the custom metrics."""

    _kind = ""

    def __init__(self, name: str, description: str = "", tag_keys: Optional[Sequence[str]] = None) -> None:
        if not isinstance(name, str) or len(name) == 0:
            raise ValueError("Empty name is not allowed. Please provide a metric name.")
        self._discard = not VALID_NAME.match(name)
        if self._discard:
            warnings.warn(f"Invalid metric name: {name}. Metric will be discarded and data will not be collected "
                          "or published. Metric names can only contain letters, numbers, _, and :. Metric names "
                          "cannot start with numbers.", UserWarning, stacklevel=2)
        if tag_keys is None:
            tag_keys = ()
        if not isinstance(tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(tag_keys)}")
        for key in tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")
        self._name = name
        self._description = description
        self._tag_keys = tag_keys
        self._default_tags: dict[str, str] = {}
        self._boundaries: tuple = ()
        self._default_values: Optional[tuple] = () if not tag_keys else None  # tags=None, all keys defaulted

    def set_default_tags(self, default_tags: dict[str, str]) -> "Metric":
        """Tags used when a record does not give them; keys must be among ``tag_keys``."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)}.")
        self._default_tags = dict(default_tags)
        is_complete = all(k in self._default_tags for k in self._tag_keys)
        self._default_values = tuple(self._default_tags[k] for k in self._tag_keys) if is_complete else None
        return self

    def _tag_values(self, tags: Optional[dict[str, str]]) -> tuple:
        merged = dict(self._default_tags)
        for key, value in (tags or {}).items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value)}.")
            merged[key] = value
        missing = [k for k in self._tag_keys if k not in merged]
        if missing:
            raise ValueError(f"Missing value for tag key(s): {','.join(missing)}.")
        return tuple(merged[k] for k in self._tag_keys)

    def _record(self, value: Number, tags: Optional[dict[str, str]] = None) -> None:
        if value.__class__ is not float and value.__class__ is not int:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"value must be int or float, got {type(value)}.")
        values = self._default_values if tags is None and self._default_values is not None else \
            self._tag_values(tags)
        cw = core_worker._core_worker
        if self._discard or cw is None or cw.is_shutdown:
            return
        um = cw.__dict__.get("user_metrics") or user_metrics.of(cw)
        um.record(self._name, self._kind, self._description, self._tag_keys, self._boundaries, values, float(value))

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self._name, "description": self._description, "tag_keys": self._tag_keys,
                "default_tags": self._default_tags}


class Counter(Metric):
    """A cumulative metric that only goes up (a Prometheus counter)."""

    _kind = "counter"

    def inc(self, value: Number = 1.0, tags: Optional[dict[str, str]] = None) -> None:
        if value.__class__ is not float and value.__class__ is not int and (
                not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise TypeError(f"value must be int or float, got {type(value)}.")
        if value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        self._record(value, tags)


class Gauge(Metric):
    """The last value set, per tag set (a Prometheus gauge)."""

    _kind = "gauge"

    def set(self, value: Optional[Number], tags: Optional[dict[str, str]] = None) -> None:
        if value is None:
            return
        self._record(value, tags)


class Histogram(Metric):
    """The distribution of observed values over ``boundaries`` (a Prometheus histogram)."""

    _kind = "histogram"

    def __init__(self, name: str, description: str = "", boundaries: Optional[list[float]] = None,
                 tag_keys: Optional[Sequence[str]] = None) -> None:
        super().__init__(name, description, tag_keys)
        if boundaries is None or len(boundaries) == 0:
            raise ValueError("boundaries argument should be provided when using the Histogram class. "
                             "e.g., Histogram(\"name\", boundaries=[1.0, 2.0])")
        for b in boundaries:
            if not isinstance(b, (int, float)) or b <= 0:
                raise ValueError(f"Invalid `boundaries` argument at index {list(boundaries).index(b)}, "
                                 f"{boundaries}. Use positive values for the arguments.")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"boundaries must be sorted in ascending order, got {boundaries}")
        self._boundaries = tuple(float(b) for b in boundaries)

    def observe(self, value: Number, tags: Optional[dict[str, str]] = None) -> None:
        self._record(value, tags)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": list(self._boundaries)}


__all__ = ["Counter", "Gauge", "Histogram", "Metric"]
