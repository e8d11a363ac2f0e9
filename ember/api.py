"""The public functions: check arguments, then make one call into the core worker."""
from __future__ import annotations

import inspect
from typing import Any, Optional, Sequence, Union

from ember.actor import ActorClass, ActorHandle
from ember.actor import method as _method
from ember.lifecycle import EmberContext, core_worker_or_init, init, is_initialized, shutdown  # noqa: F401
from ember.object_ref import ObjectRef
from ember.remote_function import RemoteFunction
from ember.shells.worker.generators import ObjectRefGenerator


def _check_refs(object_refs: Any, fn: str) -> list[ObjectRef]:
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"{fn}() expected a list of ObjectRefs, got {type(object_refs).__name__}")
    for r in object_refs:
        if not isinstance(r, ObjectRef):
            raise TypeError(f"{fn}() expected a list of ObjectRefs, got a list containing {type(r).__name__}")
    return list(object_refs)


def get(object_refs: Union[ObjectRef, Sequence[ObjectRef]], *, timeout: Optional[float] = None) -> Any:
    cw = core_worker_or_init()
    timeout = _get_timeout(timeout)
    if isinstance(object_refs, ObjectRef):
        return cw.get([object_refs], timeout)[0]
    if not isinstance(object_refs, (list, tuple)):
        raise ValueError(f"Invalid type of object refs, {type(object_refs)}, is given. 'object_refs' must either "
                         f"be an ObjectRef or a list of ObjectRefs.")
    refs = _check_refs(object_refs, "get")
    return cw.get(refs, timeout)


def _check_timeout(timeout: Optional[float]) -> None:
    """Ray's rule for ``wait`` (and here for ``get``): a negative timeout is an error."""
    if timeout is not None and timeout < 0:
        raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")


def _get_timeout(timeout: Optional[float]) -> Optional[float]:
    """``get``'s timeout, the same for one ref and a list: as in Ray, -1 means no timeout (like
    None); any other negative value is a ValueError (Ray would block forever on it)."""
    if timeout == -1:
        return None
    _check_timeout(timeout)
    return timeout


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    return core_worker_or_init().put(value)


def wait(ray_waitables: Sequence[ObjectRef], *, num_returns: int = 1, timeout: Optional[float] = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    cw = core_worker_or_init()
    if isinstance(ray_waitables, ObjectRef):
        raise TypeError("wait() expected a list of ObjectRefs, got a single ObjectRef")
    refs = _check_refs(ray_waitables, "wait")
    if len(set(refs)) != len(refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if num_returns <= 0:
        raise ValueError("Invalid number of objects to return %d." % num_returns)
    if num_returns > len(refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided to ember.wait.")
    _check_timeout(timeout)
    return cw.wait(refs, num_returns, timeout, fetch_local)


def cancel(ray_waitable: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that creates ``ray_waitable``: a queued task is dropped, a running one is
    interrupted (KeyboardInterrupt in the task), or with ``force=True`` its worker is killed.
    With ``recursive`` (the default) the tasks it submitted are cancelled too.  An actor call is
    dropped if it has not started; a running async actor method is cancelled (asyncio), a running
    sync one is not interrupted.  ``get`` on its results then raises ``TaskCancelledError``.
    Cancelling a finished task does nothing."""
    cw = core_worker_or_init()
    if isinstance(ray_waitable, ObjectRefGenerator):   # cancelling a generator stops its producer
        ray_waitable = ray_waitable.completed()
    if not isinstance(ray_waitable, ObjectRef):
        raise TypeError(f"ember.cancel() only supports ObjectRefs, got {type(ray_waitable).__name__}")
    if ray_waitable.owner_address != cw.address:
        raise ValueError("Only the process that submitted a task (its owner) can cancel it.")
    cw.post(cw.submitter.cancel_any, ray_waitable.task_id(), bool(force), bool(recursive))


def remote(*args: Any, **kwargs: Any) -> Any:
    """``@remote`` on a function (a task) or a class (an actor), with or without options."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("The @ember.remote decorator must be applied either with no arguments and no "
                        "parentheses, for example '@ember.remote', or it must be applied using some of the "
                        "arguments, for example '@ember.remote(num_returns=2)'.")
    return lambda fn_or_cls: _make_remote(fn_or_cls, kwargs)


def _make_remote(fn_or_cls: Any, options: dict[str, Any]) -> Any:
    if inspect.isclass(fn_or_cls):
        return ActorClass(fn_or_cls, options)
    if inspect.isfunction(fn_or_cls) or inspect.isbuiltin(fn_or_cls) or callable(fn_or_cls):
        return RemoteFunction(fn_or_cls, options)
    raise TypeError("The @ember.remote decorator must be applied to either a function or a class.")


def get_gpu_ids() -> list:
    cw = core_worker_or_init()
    task = getattr(cw.context, "task", None)
    if task is not None:
        return list(task.gpu_ids)
    actor_gpus = getattr(cw, "actor_gpu_ids", None)
    return list(actor_gpus or [])


def nodes() -> list[dict[str, Any]]:
    from ember.protocol import messages as m
    cw = core_worker_or_init()

    async def _get() -> Any:
        return await cw.head.request(m.GetNodes())  # sent again if the head fails over under it

    out = []
    for n in cw.run_sync(_get()).nodes:
        host, _, port = n.address.rpartition(":")
        out.append({"NodeID": n.node_id.hex(), "Alive": n.is_alive, "NodeManagerAddress": host,
                    "NodeManagerPort": int(port), "NodeManagerHostname": host, "Resources": n.resources_total,
                    "alive": n.is_alive, "Labels": n.labels, "IsHead": n.is_head,
                    "ObjectStoreSocketName": n.store_dir, "AvailableResources": n.resources_available})
    return out


def cluster_resources() -> dict[str, float]:
    total: dict[str, float] = {}
    for n in nodes():
        if n["Alive"]:
            for k, v in n["Resources"].items():
                total[k] = total.get(k, 0.0) + v
    return total


def available_resources() -> dict[str, float]:
    total: dict[str, float] = {}
    for n in nodes():
        if n["Alive"]:
            for k, v in n["AvailableResources"].items():
                if v > 0:
                    total[k] = total.get(k, 0.0) + v
    return total


# --- actors ---------------------------------------------------------------------------------------------
def method(*args: Any, **kwargs: Any) -> Any:
    """``@ember.method(num_returns=N)`` on an actor method."""
    return _method(*args, **kwargs)


def get_actor(name: str, namespace: Optional[str] = None) -> Any:
    """The handle of the live actor called ``name`` in ``namespace`` (default: this job's)."""
    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')
    cw = core_worker_or_init()
    actor_id, meta = cw.actor_submitter.get_named(name, namespace if namespace is not None else cw.get_namespace())
    return ActorHandle(actor_id, meta)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """End an actor at once (its pending calls fail); with ``no_restart=False`` it may restart."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"ray.kill() only supported for actors. For tasks, try ray.cancel(). Got: {type(actor)}.")
    core_worker_or_init().actor_submitter.kill(actor._ember_actor_id, bool(no_restart))
