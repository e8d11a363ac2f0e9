"""The registry of benchmark rows.

A *row* is one workload. It produces one or more *outputs* (most rows produce one,
named like the row; a few, such as ``cold_start``, produce several). Every row is a
function ``fn(rt, scale)`` where ``rt`` is the runtime module (``ember`` or ``ray``,
they share one API) and ``scale`` multiplies the counts of the workload (1.0 is the
full size, the smoke test uses 0.01). It returns the value of its single output, or a
``{output name: value}`` dict when it has several.

Nothing here imports ember: the package is also loaded (by path, under another name)
into Ray's virtual environment by ``benchmarks/compare_ray.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Union

RowValue = Union[float, Mapping[str, float]]
RowFn = Callable[[Any, float], RowValue]


class RowSkipped(Exception):
    """Raised by a row whose runtime lacks what the row needs; the message says why."""


@dataclass(frozen=True, slots=True)
class Output:
    """One measured quantity: its name, unit, and which direction is better."""

    name: str
    unit: str
    is_higher_better: bool


@dataclass(frozen=True, slots=True)
class Row:
    """A workload: what it measures, and whether it needs the shared runtime."""

    name: str
    outputs: tuple[Output, ...]
    fn: RowFn
    needs_runtime: bool = True
    note: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    """One value of one output."""

    row: str
    name: str
    value: float
    unit: str
    is_higher_better: bool


@dataclass(slots=True)
class Registry:
    """Rows in registration order; names are unique."""

    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        names = {r.name for r in self.rows}
        if row.name in names:
            raise ValueError(f"benchmark row {row.name!r} registered twice")
        self.rows.append(row)

    def select(self, pattern: str | None) -> list[Row]:
        """Rows whose name, or one of whose output names, matches ``pattern`` (re.search)."""
        if not pattern:
            return list(self.rows)
        regex = re.compile(pattern)
        return [
            r
            for r in self.rows
            if regex.search(r.name) or any(regex.search(o.name) for o in r.outputs)
        ]

    def output_names(self) -> list[str]:
        return [o.name for r in self.rows for o in r.outputs]


REGISTRY = Registry()

# Units whose larger values are better; every other unit (s, us, MiB, processes) is a cost.
_RATE_SUFFIX = "/s"


def _is_rate(unit: str) -> bool:
    return unit.endswith(_RATE_SUFFIX)


def row(
    name: str,
    unit: str,
    *,
    needs_runtime: bool = True,
    note: str = "",
) -> Callable[[RowFn], RowFn]:
    """Register a single-output row named ``name``; the function returns a float."""
    return rows_with_outputs(name, [(name, unit)], needs_runtime=needs_runtime, note=note)


def rows_with_outputs(
    name: str,
    outputs: Iterable[tuple[str, str]],
    *,
    needs_runtime: bool = True,
    note: str = "",
) -> Callable[[RowFn], RowFn]:
    """Register a row with several outputs ``(output name, unit)``; it returns a dict."""
    outs = tuple(Output(n, u, _is_rate(u)) for n, u in outputs)

    def register(fn: RowFn) -> RowFn:
        REGISTRY.add(Row(name, outs, fn, needs_runtime, note))
        return fn

    return register


def results_of(row_: Row, value: RowValue) -> list[Result]:
    """Turn what a row function returned into Results, checking names and numbers."""
    if isinstance(value, Mapping):
        values = dict(value)
    elif len(row_.outputs) == 1:
        values = {row_.outputs[0].name: value}
    else:
        raise TypeError(f"row {row_.name} has several outputs but returned {value!r}")
    expected = {o.name for o in row_.outputs}
    if set(values) != expected:
        raise ValueError(f"row {row_.name} returned {sorted(values)}, expected {sorted(expected)}")
    return [
        Result(row_.name, o.name, float(values[o.name]), o.unit, o.is_higher_better)
        for o in row_.outputs
    ]


def scaled(count: int, scale: float) -> int:
    """A workload count multiplied by ``scale``, never below 1."""
    return max(1, int(round(count * scale)))


def scaled_bytes(size_bytes: int, scale: float) -> int:
    """Data sizes keep their full value down to scale 0.1 (so that a quick run still
    measures 100 MiB copies); below that (smoke tests) they shrink, never under 64 KiB."""
    if scale >= 0.1:
        return size_bytes
    return max(64 * 1024, int(size_bytes * scale * 10))
