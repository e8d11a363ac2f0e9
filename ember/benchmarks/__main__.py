"""``python -m ember.benchmarks``: ember's microbenchmark (also runs Ray's rows on Ray).

    python -m ember.benchmarks                      # every row, full scale, on ember
    python -m ember.benchmarks --rows 'actor' --scale 0.1 --json out.json
    python -m ember.benchmarks --list
    python -m ember.benchmarks --runtime ray        # needs ray importable

Exit status 1 when a row raised an error (skipped rows are not errors).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .runner import load_registry, run, write_json


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ember.benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime", default="ember", help="module to benchmark: ember or ray")
    p.add_argument("--rows", default=None, help="regex: run rows whose name matches")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplier for workload counts and timing windows (default 1)")
    p.add_argument("--json", dest="json_path", default=None, help="write the report here")
    p.add_argument("--list", action="store_true", help="list rows and units, run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    registry = load_registry()
    rows = registry.select(args.rows)
    if args.list:
        for row_ in rows:
            for output in row_.outputs:
                print(f"{output.name:<46} {output.unit}")
        return 0
    if args.scale <= 0:
        print("--scale must be positive", file=sys.stderr)
        return 2
    if not rows:
        print(f"no row matches {args.rows!r}", file=sys.stderr)
        return 2
    rt = importlib.import_module(args.runtime)
    report = run(rt, rows, args.scale, echo=lambda line: print(line, flush=True))
    if args.json_path:
        write_json(report, args.json_path)
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
