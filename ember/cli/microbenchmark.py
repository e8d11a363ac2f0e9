"""``ember microbenchmark``: Ray's microbenchmark rows plus ember's own, on ember.

Registered in the CLI group by ``ember/cli/main.py``. The same runner is reachable as
``python -m ember.benchmarks`` (which can also run the rows on Ray).
"""

from __future__ import annotations

import click


@click.command("microbenchmark")
@click.option("--rows", "rows_pattern", default=None, metavar="REGEX",
              help="Run only rows whose name matches this regular expression.")
@click.option("--scale", type=click.FloatRange(min=0.0, min_open=True), default=1.0,
              show_default=True, help="Multiplier for workload counts and timing windows.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Also write the report as JSON to this file.")
@click.option("--list", "is_list", is_flag=True, help="List the rows and their units; run nothing.")
def microbenchmark(rows_pattern: str | None, scale: float, json_path: str | None,
                   is_list: bool) -> None:
    """Run ember's microbenchmark and print a table of row, value and unit."""
    import ember
    from ember.benchmarks.runner import load_registry, run, write_json

    rows = load_registry().select(rows_pattern)
    if is_list:
        for row in rows:
            for output in row.outputs:
                click.echo(f"{output.name:<46} {output.unit}")
        return
    if not rows:
        raise click.UsageError(f"no row matches {rows_pattern!r}")
    report = run(ember, rows, scale, echo=click.echo)
    if json_path:
        write_json(report, json_path)
    if report.errors:
        raise click.exceptions.Exit(1)
