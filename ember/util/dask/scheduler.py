"""The Dask scheduler function: every node of the graph becomes one ember task.

``ember_dask_get(dsk, keys)`` converts the graph to Dask's task spec
(``dask._task_spec.convert_legacy_graph``), walks it in ``dask.order`` order (a topological
order that keeps memory low) and submits each ``Task`` at once as an ember task whose
arguments are the ``ObjectRef``s of the tasks it depends on.  ember resolves those refs
before the task runs, so the graph's results never pass through the driver: they travel as
ember objects, and arrays over 100 KiB are read zero-copy from the node's shared-memory store.
Literal data (``DataNode``) is ``put`` once; an ``Alias`` reuses its target's ref.  Only the
requested keys are fetched at the end.  Ray's scheduler options ``ray_remote_args`` (the
tasks' options) and ``ray_persist`` (return ``ObjectRef``s instead of values) are honoured.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

__all__ = ["ember_dask_get", "ray_dask_get", "enable_dask_on_ember", "enable_dask_on_ray",
           "disable_dask_on_ember", "disable_dask_on_ray"]


def _run_node(node: Any, dep_keys: list, *dep_values: Any) -> Any:
    return node(dict(zip(dep_keys, dep_values)))


def _submit_graph(graph: dict, remote_args: dict) -> dict:
    """{key: ObjectRef} for every node of ``graph`` (already in task-spec form)."""
    from dask._task_spec import Alias, DataNode
    from dask.order import order

    from ember import api
    task = api.remote(_run_node).options(**{"num_cpus": 1, **remote_args})
    priorities = order(graph)
    refs: dict = {}
    for key in sorted(graph, key=priorities.__getitem__):
        node = graph[key]
        if isinstance(node, Alias) and node.target in refs:
            refs[key] = refs[node.target]
        elif isinstance(node, DataNode):
            refs[key] = api.put(node({}))
        else:
            deps = list(node.dependencies)
            refs[key] = task.remote(node, deps, *[refs[d] for d in deps])
    return refs


def _pack(keys: Any, values: dict) -> Any:
    """The result in the shape of ``keys`` (nested lists of keys; a tuple is a key)."""
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def ember_dask_get(dsk: Any, keys: Any, ray_remote_args: Optional[dict] = None, ray_persist: bool = False,
                   **kwargs: Any) -> Any:
    """A Dask scheduler (``dask.compute(x, scheduler=ember_dask_get)``) that runs the graph on ember."""
    from dask._task_spec import convert_legacy_graph
    from dask.core import flatten

    from ember import api
    if not api.is_initialized():
        api.init()
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    graph = convert_legacy_graph(dict(dsk))
    refs = _submit_graph(graph, dict(ray_remote_args or {}))
    wanted = list(flatten(keys)) if isinstance(keys, list) else [keys]
    if ray_persist:
        values = {k: refs[k] for k in wanted}
    else:
        values = dict(zip(wanted, api.get([refs[k] for k in wanted])))
    return _pack(keys, values)


ray_dask_get = ember_dask_get


def enable_dask_on_ember(shuffle: Optional[str] = "tasks", use_shuffle_optimization: Optional[bool] = True) -> Any:
    """Make ember Dask's default scheduler (and task-based shuffles, which run on any
    scheduler).  Returns ``dask.config.set(...)``: use it as a context manager to undo.
    ``use_shuffle_optimization`` is accepted for Ray's signature (ember has no shuffle
    optimization: shuffles run as ordinary tasks)."""
    import dask
    settings: dict[str, Any] = {"scheduler": ember_dask_get}
    if shuffle is not None:
        settings["dataframe.shuffle.method"] = shuffle
    return dask.config.set(settings)


def disable_dask_on_ember() -> Any:
    """Give Dask its own default scheduler back."""
    import dask
    return dask.config.set({"scheduler": None, "dataframe.shuffle.method": None})


enable_dask_on_ray = enable_dask_on_ember
disable_dask_on_ray = disable_dask_on_ember
