"""Run selected rows against one runtime module and report a table or JSON.

Rows that need no runtime (fresh-process rows) run first, then the runtime is
initialized once, as Ray's microbenchmark does (``INIT_KWARGS``), every other row runs
on it in registration order, and it is shut down. A row that raises ``RowSkipped`` is
listed as skipped with its reason; a row that raises anything else is listed as an
error and the run goes on.
"""

from __future__ import annotations

import gc
import importlib
import json
import platform
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .registry import REGISTRY, Registry, Result, Row, RowSkipped, results_of

INIT_KWARGS: dict[str, Any] = {"address": "local", "num_cpus": 2, "resources": {"custom": 100}}
# Importing a module registers its rows; this order is the order of the table:
# Ray's rows in the order of `ray microbenchmark`, then ember's own.
ROW_MODULES = (
    "rows_objects",
    "rows_tasks",
    "rows_actors",
    "rows_async_actors",
    "rows_generators",
    "rows_ember",
    "rows_process",
    "rows_transfer",
)
Echo = Callable[[str], None]

_NAME_WIDTH = 46
_VALUE_WIDTH = 14


def load_registry() -> Registry:
    """The registry with every row module imported (importing registers the rows)."""
    for module in ROW_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return REGISTRY


@dataclass(slots=True)
class Report:
    runtime: str
    runtime_version: str
    scale: float
    results: list[Result] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    row_seconds: dict[str, float] = field(default_factory=dict)
    python: str = platform.python_version()
    machine: str = platform.machine()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["results"] = [asdict(r) for r in self.results]
        return data


def run(rt: Any, rows: list[Row], scale: float, echo: Echo = print) -> Report:
    """Run ``rows`` against runtime module ``rt`` at ``scale``; echo lines as they finish."""
    report = Report(rt.__name__, str(getattr(rt, "__version__", "?")), scale)
    echo(header_line())
    for row_ in [r for r in rows if not r.needs_runtime]:
        _run_row(rt, row_, scale, report, echo)
    shared = [r for r in rows if r.needs_runtime]
    if not shared:
        return report
    try:
        rt.init(**INIT_KWARGS)
    except Exception as exc:  # the runtime itself is broken: every shared row fails
        message = f"init failed: {exc!r}"
        for row_ in shared:
            report.errors[row_.name] = message
            echo(_line(row_.name, "ERROR", message))
        return report
    try:
        for row_ in shared:
            _run_row(rt, row_, scale, report, echo)
    finally:
        rt.shutdown()
    return report


def _run_row(rt: Any, row_: Row, scale: float, report: Report, echo: Echo) -> None:
    start = time.perf_counter()
    try:
        value = row_.fn(rt, scale)
        results = results_of(row_, value)
    except RowSkipped as exc:
        report.skipped[row_.name] = str(exc)
        echo(_line(row_.name, "skipped", str(exc)))
        return
    except Exception as exc:
        report.errors[row_.name] = f"{exc!r}\n{traceback.format_exc(limit=6)}"
        echo(_line(row_.name, "ERROR", repr(exc)[:200]))
        return
    finally:
        report.row_seconds[row_.name] = time.perf_counter() - start
        gc.collect()
    report.results.extend(results)
    for result in results:
        echo(_line(result.name, format_value(result.value), result.unit))


def header_line() -> str:
    return _line("row", "value", "unit") + "\n" + "-" * (_NAME_WIDTH + _VALUE_WIDTH + 12)


def _line(name: str, value: str, unit: str) -> str:
    return f"{name:<{_NAME_WIDTH}} {value:>{_VALUE_WIDTH}}  {unit}"


def format_value(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def write_json(report: Report, path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
