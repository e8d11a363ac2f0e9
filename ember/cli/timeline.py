"""``ember timeline``: the cluster's tasks as a Chrome trace file (Ray's ``ray timeline``)."""
from __future__ import annotations

import os
import tempfile
import time
from typing import Optional

import click


@click.command("timeline")
@click.option("--address", default=None, help="HOST:PORT of the control store (default: the local cluster).")
@click.option("--output", default=None, help="Where to write the JSON (default: a file in the temp directory).")
def timeline(address: Optional[str], output: Optional[str]) -> None:
    """Write the tasks' timeline as Chrome trace events; open it in https://ui.perfetto.dev or chrome://tracing."""
    from ember.util.state.timeline import trace_of_cluster
    path = output or os.path.join(tempfile.gettempdir(), f"ember-timeline-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json")
    try:
        trace_of_cluster(path, address)
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise click.ClickException(f"could not write the timeline: {exc}") from None
    click.echo(f"Trace file written to {path}; open it in https://ui.perfetto.dev or chrome://tracing")
