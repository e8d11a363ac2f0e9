"""Smoke test of the benchmark rows on ember, plus tests of the harness's own pieces.

The smoke test runs every row at a tiny scale in a subprocess and checks the report's
shape (every output present, finite numbers, the registry's units). It is skipped until
ember's core exists (``ember.init``). Speed itself is never asserted here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ember
from ember.benchmarks.registry import Registry, Row, Output, RowSkipped, results_of, scaled, scaled_bytes
from ember.benchmarks.runner import Report, load_registry, run
from ember.benchmarks.timing import measure_rate, percentile

REPO = Path(__file__).resolve().parents[1]
SMOKE_SCALE = 0.01
# Rows allowed to be skipped (with a reason) rather than measured.
MAY_SKIP = {"placement_group_create_removal"}

needs_core = pytest.mark.skipif(
    not hasattr(ember, "init"), reason="ember.init does not exist yet (core runtime not landed)"
)


ROW_NAMES = [r.name for r in load_registry().rows]


@pytest.fixture(scope="module")
def ember_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One run of every row on ember at a tiny scale: (the JSON report, stdout)."""
    folder = tmp_path_factory.mktemp("bench")
    out = folder / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "ember.benchmarks", "--scale", str(SMOKE_SCALE), "--json", str(out)],
        capture_output=True, text=True, timeout=540, cwd=folder,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@needs_core
@pytest.mark.timeout(600)
def test_ember_report_shape(ember_run: tuple[dict[str, Any], str]) -> None:
    report, _ = ember_run
    assert report["runtime"] == "ember"
    assert report["scale"] == SMOKE_SCALE
    assert set(report["skipped"]) <= MAY_SKIP, report["skipped"]
    assert set(report["errors"]) | set(report["skipped"]) | set(report["row_seconds"]) == set(ROW_NAMES)


@needs_core
@pytest.mark.timeout(600)
@pytest.mark.parametrize("row_name", ROW_NAMES)
def test_row_runs_on_ember_at_tiny_scale(ember_run: tuple[dict[str, Any], str], row_name: str) -> None:
    report, stdout = ember_run
    if row_name in report["skipped"] and row_name in MAY_SKIP:
        pytest.skip(f"{row_name}: {report['skipped'][row_name]}")
    assert row_name not in report["errors"], report["errors"].get(row_name)
    row = next(r for r in load_registry().rows if r.name == row_name)
    got = {r["name"]: r for r in report["results"] if r["row"] == row_name}
    assert set(got) == {o.name for o in row.outputs}
    for output in row.outputs:
        value = got[output.name]["value"]
        assert got[output.name]["unit"] == output.unit
        assert isinstance(value, float) and math.isfinite(value) and value >= 0
        assert output.name in stdout  # the table names every output
    if row_name == "idle_footprint":
        assert got["idle_footprint_processes"]["value"] >= 1
        assert got["idle_footprint_pss"]["value"] > 0


def test_registry_has_ray_rows_and_ember_rows_with_units() -> None:
    names = load_registry().output_names()
    for name in ["single_client_get_calls", "multi_client_put_gigabytes",
                 "single_client_wait_1k_refs", "n_n_async_actor_calls_async",
                 "placement_group_create_removal", "cold_start", "cold_start_init",
                 "idle_footprint_pss", "idle_footprint_processes", "task_roundtrip_latency_p99",
                 "10k_noop_tasks", "chain_1000_dependent_tasks", "100_actors_pss_per_actor",
                 "array_100mib_task_return"]:
        assert name in names
    assert len(names) == len(set(names))
    units = {o.name: o for r in load_registry().rows for o in r.outputs}
    assert units["single_client_tasks_async"].is_higher_better
    assert not units["cold_start"].is_higher_better
    assert not units["idle_footprint_pss"].is_higher_better


def test_select_matches_row_and_output_names() -> None:
    registry = load_registry()
    assert [r.name for r in registry.select("^cold_start$")] == ["cold_start"]
    assert [r.name for r in registry.select("p99")] == ["task_roundtrip_latency"]
    assert len(registry.select(None)) == len(registry.rows)


def test_results_of_checks_names() -> None:
    two = Row("r", (Output("a", "s", False), Output("b", "MiB", False)), lambda rt, s: 0.0)
    assert [x.value for x in results_of(two, {"a": 1, "b": 2.5})] == [1.0, 2.5]
    with pytest.raises(ValueError):
        results_of(two, {"a": 1})
    with pytest.raises(TypeError):
        results_of(two, 3.0)


def test_scaling_rules() -> None:
    assert scaled(1000, 0.01) == 10
    assert scaled(5, 0.01) == 1
    assert scaled_bytes(100 * 2**20, 0.1) == 100 * 2**20
    assert scaled_bytes(100 * 2**20, 0.01) == 10 * 2**20
    assert scaled_bytes(100, 0.001) == 64 * 1024


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_measure_rate_counts_operations() -> None:
    calls = []
    rate = measure_rate(lambda: calls.append(1), 10, scale=0.01)
    assert len(calls) >= 4  # one warm-up call and at least one per window
    assert rate > 0


class _FakeRuntime:
    """A stand-in runtime module for the runner's bookkeeping (no tasks run)."""

    __name__ = "fake"
    __version__ = "0"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def init(self, **kwargs: object) -> None:
        self.calls.append("init")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_runner_records_values_skips_and_errors() -> None:
    registry = Registry()

    def broken(rt: object, scale: float) -> float:
        raise ZeroDivisionError("boom")

    def skipping(rt: object, scale: float) -> float:
        raise RowSkipped("no placement groups")

    registry.add(Row("ok", (Output("ok", "calls/s", True),), lambda rt, s: 5.0))
    registry.add(Row("broken", (Output("broken", "s", False),), broken))
    registry.add(Row("skip", (Output("skip", "s", False),), skipping))
    registry.add(Row("fresh", (Output("fresh", "s", False),), lambda rt, s: 1.0, needs_runtime=False))
    fake = _FakeRuntime()
    lines: list[str] = []
    report: Report = run(fake, registry.rows, 1.0, echo=lines.append)
    assert fake.calls == ["init", "shutdown"]
    assert [(r.name, r.value) for r in report.results] == [("fresh", 1.0), ("ok", 5.0)]
    assert "ZeroDivisionError" in report.errors["broken"]
    assert report.skipped == {"skip": "no placement groups"}
    assert any(line.startswith("ok") and "calls/s" in line for line in lines)
    assert json.loads(json.dumps(report.to_json()))["results"][0]["name"] == "fresh"


def test_compare_ratio_means_ember_better_above_one() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import compare_ray
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert compare_ray._ratio({"ember": 200.0, "ray": 100.0}, True) == 2.0
    assert compare_ray._ratio({"ember": 0.5, "ray": 1.0}, False) == 2.0
    assert compare_ray._ratio({"ember": None, "ray": 1.0}, False) is None
    row = load_registry().select("^cold_start$")[0]
    runs = [compare_ray.RowRun(i, rt, "cold_start", 1.0, 0,
                               values={"cold_start": v, "cold_start_init": v / 2})
            for i, (rt, v) in enumerate([("ember", 1.0), ("ray", 4.0), ("ember", 3.0), ("ray", 6.0)])]
    lines = compare_ray.summarize([row], ["ember", "ray"], runs)
    assert lines[0].medians == {"ember": 2.0, "ray": 5.0}
    assert lines[0].ember_over_ray == 2.5


def test_compare_renders_saved_run_as_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import compare_ray
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from dataclasses import asdict

    row = load_registry().select("^idle_footprint$")[0]
    runs = [compare_ray.RowRun(0, "ray", "idle_footprint", 1.0, 0,
                               values={"idle_footprint_pss": 400.0, "idle_footprint_processes": 9.0}),
            compare_ray.RowRun(0, "ember", "idle_footprint", 1.0, 1, error="boom")]
    lines = compare_ray.summarize([row], ["ember", "ray"], runs)
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"config": {"repeat": 1, "scale": 0.1},
                                 "machine_limits": {"memcpy_gb_s": 12.5},
                                 "summary": [asdict(line) for line in lines]}))
    assert compare_ray.main(["--from-json", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "| idle_footprint_pss | MiB | n/a | 400 | - |" in out
    assert "idle_footprint_pss [ember]: 1x boom" in out
    assert "| memcpy_gb_s | 12.50 | GB/s |" in out


@pytest.mark.timeout(60)
def test_machine_limits_small() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import machine_limits
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert machine_limits.memcpy_gb_s(1 << 20, repeats=2) > 0
    assert machine_limits.shm_first_touch_gb_s(1 << 20, repeats=1) > 0
    assert machine_limits.unix_socket_rtt_us(50) > 0
    assert machine_limits.tcp_loopback_rtt_us(50) > 0
    assert machine_limits.asyncio_tcp_rtt_us(50) > 0


def test_cli_command_lists_rows() -> None:
    from click.testing import CliRunner

    from ember.cli.microbenchmark import microbenchmark

    listed = CliRunner().invoke(microbenchmark, ["--list", "--rows", "^1_1_actor"])
    assert listed.exit_code == 0
    assert listed.output.split() == [
        "1_1_actor_calls_sync", "calls/s", "1_1_actor_calls_async", "calls/s",
        "1_1_actor_calls_concurrent", "calls/s",
    ]
    assert CliRunner().invoke(microbenchmark, ["--rows", "no-such-row"]).exit_code == 2
