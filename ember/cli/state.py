"""``ember list``, ``ember get`` and ``ember summary``: Ray's state CLI over ``ember.util.state``."""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

import click

from ember.util import state

_LISTS: dict[str, Callable[..., list]] = {
    "tasks": state.list_tasks, "actors": state.list_actors, "nodes": state.list_nodes, "jobs": state.list_jobs,
    "objects": state.list_objects, "workers": state.list_workers, "placement-groups": state.list_placement_groups,
}
_GETS: dict[str, Callable[..., Any]] = {"tasks": state.get_task, "actors": state.get_actor, "nodes": state.get_node,
                                        "workers": state.get_worker, "placement-groups": state.get_placement_group}
_SUMMARIES: dict[str, Callable[..., dict]] = {"tasks": state.summarize_tasks, "actors": state.summarize_actors,
                                              "objects": state.summarize_objects}


def _parse_filter(text: str) -> tuple[str, str, str]:
    for op in ("!=", "="):
        key, sep, value = text.partition(op)
        if sep and key.strip():
            return key.strip(), op, value.strip()
    raise click.BadParameter(f"{text!r}: a filter is KEY=VALUE or KEY!=VALUE")


def _render(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "yaml":
        import yaml
        return yaml.safe_dump([dict(r) for r in rows], sort_keys=False)
    if not rows:
        return "(no rows)"
    keys = list(rows[0].keys())
    cells = [[str(r.get(k, "")) if not isinstance(r.get(k), (dict, list)) else json.dumps(r.get(k), default=str)
              for k in keys] for r in rows]
    widths = [min(40, max(len(k), *(len(c[i]) for c in cells))) for i, k in enumerate(keys)]
    line = lambda vals: "  ".join(v[:w].ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line([k.upper() for k in keys])] + [line(c) for c in cells])


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise click.ClickException(f"could not reach the ember cluster: {exc}") from None


@click.command("list")
@click.argument("resource", type=click.Choice(sorted(_LISTS)))
@click.option("--address", default=None, help="HOST:PORT of the control store (default: the local cluster).")
@click.option("-f", "--filter", "filters", multiple=True, help='KEY=VALUE or KEY!=VALUE, e.g. "state=ALIVE".')
@click.option("--limit", default=state.DEFAULT_LIMIT, show_default=True, help="At most this many rows (0: all).")
@click.option("--detail", is_flag=True, help="Every field of each row.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json", "yaml"]), show_default=True)
def list_cmd(resource: str, address: Optional[str], filters: tuple, limit: int, detail: bool, fmt: str) -> None:
    """List tasks, actors, nodes, jobs, objects, workers or placement groups (Ray's `ray list`)."""
    rows = _call(_LISTS[resource], address=address, filters=[_parse_filter(f) for f in filters], limit=limit,
                 detail=detail)
    click.echo(_render(rows, fmt))


@click.command("get")
@click.argument("resource", type=click.Choice(sorted(_GETS)))
@click.argument("id")
@click.option("--address", default=None, help="HOST:PORT of the control store (default: the local cluster).")
@click.option("--format", "fmt", default="yaml", type=click.Choice(["json", "yaml"]), show_default=True)
def get_cmd(resource: str, id: str, address: Optional[str], fmt: str) -> None:
    """Show one task, actor, node, worker or placement group by its id (Ray's `ray get`)."""
    row = _call(_GETS[resource], id, address=address)
    if row is None:
        raise click.ClickException(f"no {resource[:-1]} with id {id}")
    click.echo(_render([row], fmt))


@click.command("summary")
@click.argument("resource", type=click.Choice(sorted(_SUMMARIES)))
@click.option("--address", default=None, help="HOST:PORT of the control store (default: the local cluster).")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json", "yaml"]), show_default=True)
def summary_cmd(resource: str, address: Optional[str], fmt: str) -> None:
    """Counts of tasks (per function), actors (per class) in each state, or objects per call site
    (Ray's `ray summary`)."""
    cluster = _call(_SUMMARIES[resource], address=address)["cluster"]
    if resource == "objects":
        rows = [{"call_site": site, **entry} for site, entry in cluster["summary"].items()]
        click.echo(_render(rows, fmt) if fmt != "table" or rows else "(nothing yet)")
        click.echo(f"total: {cluster['total_objects']} objects, {cluster['total_size_mb']:.3f} MB")
        return
    rows = [{**{k: v for k, v in entry.items() if k != "state_counts"}, **entry["state_counts"]}
            for entry in cluster["summary"].values()]
    keys = sorted({k for r in rows for k in r})
    rows = [{k: r.get(k, "") for k in keys} for r in rows]
    click.echo(_render(rows, fmt) if fmt != "table" or rows else "(nothing yet)")
    if cluster.get("dropped_task_events"):
        click.echo(f"({cluster['dropped_task_events']} task events were dropped: the counts may be low)")
