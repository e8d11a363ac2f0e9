"""Compare ember with Ray, row by row, on this machine.

Every row of ``python -m ember.benchmarks`` runs in a fresh process per runtime: ember
in this interpreter, Ray in the interpreter of ``benchmarks/.ray-venv`` (made by
``benchmarks/install_ray.sh``). Runs alternate between the runtimes and repeat
(``--repeat``, default 5) because a small shared machine is noisy; the table shows
medians. The machine's own limits (memcpy, first-touch shared memory, socket round
trips) are measured in the same run and printed above the table.

    bash benchmarks/install_ray.sh
    python benchmarks/compare_ray.py --quick            # one run per row, about 5 minutes
    python benchmarks/compare_ray.py --json out.json    # full: long (see docs/performance.md)
    python benchmarks/compare_ray.py --rows 'actor' --repeat 3
    python benchmarks/compare_ray.py --runtimes ray     # Ray's column only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import machine_limits  # noqa: E402
from ember.benchmarks.bootstrap import command as bootstrap_command  # noqa: E402
from ember.benchmarks.footprint import kill_tree  # noqa: E402
from ember.benchmarks.registry import Row  # noqa: E402
from ember.benchmarks.runner import format_value, load_registry  # noqa: E402

DEFAULT_RAY_PYTHON = os.path.join(HERE, ".ray-venv", "bin", "python")
RUNTIMES = ("ember", "ray")
FULL = {"repeat": 5, "scale": 1.0, "row_timeout_s": 300.0}
QUICK = {"repeat": 1, "scale": 0.1, "row_timeout_s": 180.0}
RATIO_NOTE = (
    "ember/Ray > 1 means ember is better: for rates it is ember/Ray, for times, "
    "latencies, memory and process counts it is Ray/ember."
)


@dataclass(slots=True)
class RowRun:
    """One row run once on one runtime in a fresh process."""

    repeat: int
    runtime: str
    row: str
    wall_s: float
    returncode: int | None
    values: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    error: str | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"repeat {QUICK['repeat']}, scale {QUICK['scale']}, 256 MiB memcpy")
    p.add_argument("--repeat", type=int, default=None, help="runs per row and runtime (default 5)")
    p.add_argument("--scale", type=float, default=None, help="workload scale (default 1, quick 0.1)")
    p.add_argument("--rows", default=None, help="regex on row names")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma list: ember,ray")
    p.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON, help="interpreter that has ray")
    p.add_argument("--row-timeout", type=float, default=None, help="seconds per row run")
    p.add_argument("--no-limits", action="store_true", help="skip the machine-limit measurements")
    p.add_argument("--json", dest="json_path", default=None, help="save everything here")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--from-json", dest="from_json", default=None,
                   help="print the tables of a saved --json run; run nothing")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.repeat = args.repeat if args.repeat is not None else int(preset["repeat"])
    args.scale = args.scale if args.scale is not None else float(preset["scale"])
    args.row_timeout = args.row_timeout if args.row_timeout is not None else preset["row_timeout_s"]
    args.runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = set(args.runtimes) - set(RUNTIMES)
    if unknown or not args.runtimes or args.repeat < 1 or args.scale <= 0:
        p.error(f"bad --runtimes/--repeat/--scale ({sorted(unknown)})")
    return args


def runtime_problem(runtime: str, ray_python: str) -> str | None:
    """Why ``runtime`` cannot run here, or None."""
    if runtime == "ray":
        if not os.access(ray_python, os.X_OK):
            return f"{ray_python} not found: run benchmarks/install_ray.sh"
        return None
    import ember

    if not hasattr(ember, "init"):
        return "ember.init does not exist yet"
    return None


def child_command(runtime: str, row: Row, scale: float, json_path: str, ray_python: str) -> list[str]:
    argv = ["--runtime", runtime, "--rows", f"^{row.name}$", "--scale", repr(scale),
            "--json", json_path]
    if runtime == "ember":
        return [sys.executable, "-m", "ember.benchmarks", *argv]
    return bootstrap_command(ray_python, "__main__", argv)


def run_row_once(runtime: str, row: Row, repeat: int, args: argparse.Namespace) -> RowRun:
    with tempfile.TemporaryDirectory(prefix="ember-compare-") as folder:
        json_path = os.path.join(folder, "report.json")
        cmd = child_command(runtime, row, args.scale, json_path, args.ray_python)
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=folder)
        try:
            stdout, stderr = child.communicate(timeout=args.row_timeout)
        except subprocess.TimeoutExpired:
            kill_tree(child.pid)
            child.communicate()
            return RowRun(repeat, runtime, row.name, time.perf_counter() - start, None,
                          error=f"timed out after {args.row_timeout:.0f} s")
        wall_s = time.perf_counter() - start
        run = RowRun(repeat, runtime, row.name, wall_s, child.returncode)
        if not os.path.exists(json_path):
            run.error = f"exit {child.returncode}, no report: {(stderr or stdout)[-1500:]}"
            return run
        with open(json_path, encoding="utf-8") as f:
            report = json.load(f)
    run.values = {r["name"]: float(r["value"]) for r in report["results"]}
    run.skipped = report["skipped"].get(row.name)
    error = report["errors"].get(row.name)
    run.error = error.splitlines()[0] if error else None
    return run


def run_all(rows: list[Row], runtimes: list[str], args: argparse.Namespace) -> list[RowRun]:
    runs: list[RowRun] = []
    total = args.repeat * len(rows) * len(runtimes)
    for repeat in range(args.repeat):
        for index, row in enumerate(rows):
            order = runtimes if (repeat + index) % 2 == 0 else list(reversed(runtimes))
            for runtime in order:
                run = run_row_once(runtime, row, repeat, args)
                runs.append(run)
                status = run.error or run.skipped or ", ".join(
                    f"{k}={format_value(v)}" for k, v in run.values.items())
                print(f"[{len(runs)}/{total}] repeat {repeat + 1} {runtime:<5} {row.name}: "
                      f"{status} ({run.wall_s:.1f} s)", file=sys.stderr, flush=True)
    return runs


@dataclass(slots=True)
class SummaryLine:
    output: str
    unit: str
    is_higher_better: bool
    medians: dict[str, float | None]
    counts: dict[str, int]
    notes: dict[str, str]
    ember_over_ray: float | None


def summarize(rows: list[Row], runtimes: list[str], runs: list[RowRun]) -> list[SummaryLine]:
    lines = []
    for row in rows:
        for output in row.outputs:
            medians: dict[str, float | None] = {}
            counts: dict[str, int] = {}
            notes: dict[str, str] = {}
            for runtime in runtimes:
                mine = [r for r in runs if r.row == row.name and r.runtime == runtime]
                values = [r.values[output.name] for r in mine if output.name in r.values]
                medians[runtime] = statistics.median(values) if values else None
                counts[runtime] = len(values)
                problems = [r.skipped and f"skipped: {r.skipped}" or r.error for r in mine
                            if r.skipped or r.error]
                if problems:
                    notes[runtime] = f"{len(problems)}x {problems[0]}"
            lines.append(SummaryLine(output.name, output.unit, output.is_higher_better,
                                     medians, counts, notes,
                                     _ratio(medians, output.is_higher_better)))
    return lines


def _ratio(medians: dict[str, float | None], is_higher_better: bool) -> float | None:
    ember, ray = medians.get("ember"), medians.get("ray")
    if not ember or not ray:
        return None
    return ember / ray if is_higher_better else ray / ember


def print_limits(limits: dict[str, float]) -> None:
    print("Machine limits measured in this run:")
    for name, value in limits.items():
        print(f"  {name:<26} {value:>10.2f}  {machine_limits.UNITS[name]}")
    print()


def print_table(lines: list[SummaryLine], runtimes: list[str], args: argparse.Namespace) -> None:
    print(f"ember vs Ray: median of {args.repeat} run(s) per row and runtime, each in a fresh "
          f"process, scale {args.scale:g}.")
    print(RATIO_NOTE)
    head = f"{'row':<46} {'unit':<19} {'ember':>12} {'Ray':>12} {'ember/Ray':>10}"
    print(head)
    print("-" * len(head))
    for line in lines:
        cells = [_counted_cell(line, r, args.repeat) if r in runtimes else "-" for r in RUNTIMES]
        ratio = f"{line.ember_over_ray:.2f}" if line.ember_over_ray is not None else "-"
        print(f"{line.output:<46} {line.unit:<19} {cells[0]:>12} {cells[1]:>12} {ratio:>10}")
    notes = [(line.output, rt, note) for line in lines for rt, note in line.notes.items()]
    if notes:
        print("\nnotes:")
        for output, runtime, note in notes:
            print(f"  {output} [{runtime}]: {note[:300]}")


def print_markdown(lines: list[SummaryLine], limits: dict[str, float], config: dict[str, Any]) -> None:
    print(f"Median of {config['repeat']} run(s) per row and runtime, each in a fresh process, "
          f"scale {config['scale']:g}. {RATIO_NOTE}\n")
    print("| row | unit | ember | Ray | ember/Ray |")
    print("| --- | --- | ---: | ---: | ---: |")
    for line in lines:
        ratio = f"{line.ember_over_ray:.2f}" if line.ember_over_ray is not None else "-"
        ember, ray = (_counted_cell(line, r, int(config["repeat"])) for r in RUNTIMES)
        print(f"| {line.output} | {line.unit} | {ember} | {ray} | {ratio} |")
    notes = [(line.output, rt, note) for line in lines for rt, note in line.notes.items()]
    for output, runtime, note in notes:
        print(f"\n- {output} [{runtime}]: {note.splitlines()[0][:200]}", end="")
    if notes:
        print()
    if limits:
        print("\n| machine limit | value | unit |")
        print("| --- | ---: | --- |")
        for name, value in limits.items():
            print(f"| {name} | {value:.2f} | {machine_limits.UNITS[name]} |")


def render_saved(path: str) -> int:
    """Print the Markdown tables of a run saved with --json."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    lines = [SummaryLine(**line) for line in data["summary"]]
    print_markdown(lines, data["machine_limits"], data["config"])
    return 0


def _counted_cell(line: SummaryLine, runtime: str, repeat: int) -> str:
    """The median, marked with how many runs it has when some runs failed."""
    count = line.counts.get(runtime, 0)
    cell = _cell(line.medians.get(runtime))
    return f"{cell} ({count}/{repeat})" if 0 < count < repeat else cell


def _cell(value: float | None) -> str:
    return "n/a" if value is None else format_value(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return render_saved(args.from_json)
    rows = load_registry().select(args.rows)
    if not rows:
        print(f"no row matches {args.rows!r}", file=sys.stderr)
        return 2
    runtimes, skipped_runtimes = [], {}
    for runtime in args.runtimes:
        problem = runtime_problem(runtime, args.ray_python)
        if problem:
            skipped_runtimes[runtime] = problem
            print(f"not running {runtime}: {problem}", file=sys.stderr)
        else:
            runtimes.append(runtime)
    if not runtimes:
        return 2
    started = time.time()
    limits = {} if args.no_limits else machine_limits.measure(args.quick)
    runs = run_all(rows, runtimes, args)
    lines = summarize(rows, runtimes, runs)
    config = {"repeat": args.repeat, "scale": args.scale, "quick": args.quick,
              "rows": args.rows, "runtimes": runtimes,
              "skipped_runtimes": skipped_runtimes, "started_unix_s": started,
              "elapsed_s": time.time() - started, "ray_python": args.ray_python,
              "cpu_count": os.cpu_count()}
    print()
    if args.markdown:
        print_markdown(lines, limits, config)
    else:
        if limits:
            print_limits(limits)
        print_table(lines, runtimes, args)
    if args.json_path:
        data: dict[str, Any] = {
            "config": config,
            "ratio_note": RATIO_NOTE,
            "machine_limits": limits,
            "summary": [asdict(line) for line in lines],
            "runs": [asdict(run) for run in runs],
        }
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
