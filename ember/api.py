"""The public functions: check arguments, then make one call into the core worker."""
from __future__ import annotations

import atexit
import inspect
import logging
import os
import threading
import uuid
from typing import Any, Optional, Sequence, Union

from ember.object_ref import ObjectRef
from ember.shells.worker import core_worker as cwmod
from ember.shells.shared import local_cluster
from ember.shells.wire import session
from ember.config import spill_root_from_config
from ember.shells.shared.shm_store import OBJECT_STORE_MIN_BYTES as OBJECT_STORE_MINIMUM_MEMORY_BYTES

log = logging.getLogger("ember")

_lock = threading.RLock()
_local_cluster: Optional[local_cluster.StartedCluster] = None
_atexit_registered = False


class EmberContext(dict):
    """What ``init()`` returns (Ray's RayContext is dict-like with these keys)."""

    def __init__(self, address: str, node_id: str, session_dir: str, namespace: str) -> None:
        super().__init__(address=address, gcs_address=address, node_id=node_id, session_dir=session_dir,
                         namespace=namespace, dashboard_url="")
        self.address_info = dict(self)

    def __enter__(self) -> "EmberContext":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


def is_initialized() -> bool:
    return cwmod._core_worker is not None


def core_worker_or_init() -> cwmod.CoreWorker:
    cw = cwmod._core_worker
    if cw is None:
        init()
        cw = cwmod._core_worker
        assert cw is not None
    return cw


def init(address: Optional[str] = None, *, num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
         resources: Optional[dict] = None, labels: Optional[dict] = None,
         object_store_memory: Optional[int] = None, local_mode: bool = False,
         ignore_reinit_error: bool = False, include_dashboard: Optional[bool] = None,
         dashboard_host: str = "127.0.0.1", dashboard_port: Optional[int] = None,
         job_config: Any = None, configure_logging: bool = True, logging_level: int = logging.INFO,
         logging_format: Optional[str] = None, logging_config: Any = None, log_to_driver: bool = True,
         namespace: Optional[str] = None, runtime_env: Optional[dict] = None,
         enable_resource_isolation: bool = False, system_reserved_cpu: Optional[float] = None,
         system_reserved_memory: Optional[int] = None, _system_config: Optional[dict] = None,
         **kwargs: Any) -> EmberContext:
    """Start a local cluster (no address), or join one ("auto" or "HOST:PORT")."""
    global _local_cluster, _atexit_registered
    with _lock:
        if is_initialized():
            if ignore_reinit_error:
                cw = cwmod.get_core_worker()
                return EmberContext(cw.gcs_address, cw.node_id.hex(), cw.session_dir, cw.namespace)
            raise RuntimeError("Maybe you called ember.init twice by accident? This error can be suppressed "
                               "by passing in 'ignore_reinit_error=True' or by calling 'ember.shutdown()' "
                               "prior to 'ember.init()'.")
        unknown = set(kwargs) - {"_node_ip_address", "_temp_dir", "_memory", "_plasma_directory",
                                 "object_spilling_directory"}
        if unknown:
            raise RuntimeError(f"Unknown keyword argument(s): {', '.join(sorted(unknown))}")
        if resources is not None:
            for name in ("CPU", "GPU"):
                if name in resources:
                    raise ValueError(f"Use the '{name.lower()}s' argument (num_{name.lower()}s) instead of "
                                     f"resources={{'{name}': ...}}")
        address = address or os.environ.get("EMBER_ADDRESS") or os.environ.get("RAY_ADDRESS")
        if address in ("local", ""):
            address = None
        ns = namespace if namespace is not None else f"anon-{uuid.uuid4().hex[:12]}"
        token: bytes
        node_address = ""
        if object_store_memory is not None and object_store_memory < OBJECT_STORE_MINIMUM_MEMORY_BYTES:
            raise ValueError(f"Attempting to cap object store memory usage at {object_store_memory} bytes, "
                             f"but the minimum allowed is {OBJECT_STORE_MINIMUM_MEMORY_BYTES} bytes.")
        spill_dir = spill_root_from_config(_system_config, kwargs.get("object_spilling_directory"))
        if address is None:
            node_args = local_cluster.node_args(num_cpus=num_cpus if num_cpus is not None else (os.cpu_count() or 1),
                                                num_gpus=num_gpus, resources=resources,
                                                object_store_memory=object_store_memory,
                                                memory=kwargs.get("_memory"), spill_dir=spill_dir)
            cluster = local_cluster.start_head(tied_to_parent=True, node_args=node_args)
            _local_cluster = cluster
            gcs_address, token, node_address = cluster.gcs_address, cluster.token, cluster.node_address
        else:
            if num_cpus is not None or num_gpus is not None or resources is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus and resources "
                                 "must not be provided.")
            if address == "auto":
                cur = session.read_current_cluster()
                if cur is None:
                    raise ConnectionError("Could not find any running ember instance. Please specify the one "
                                          "to connect to by setting `address` or start one with `ember start --head`.")
                gcs_address = cur["address"]
            else:
                gcs_address = address.split("://", 1)[-1]
            token = session.find_token(gcs_address)
        cw = cwmod.CoreWorker(mode="driver", token=token, node_address=node_address, gcs_address=gcs_address,
                              worker_id=os.urandom(16), namespace=ns, log_to_driver=log_to_driver)
        try:
            cw.start()
        except BaseException:
            cw.shutdown()
            _stop_local_cluster()
            raise
        cwmod.set_core_worker(cw)
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return EmberContext(gcs_address, cw.node_id.hex(), cw.session_dir, ns)


def _stop_local_cluster() -> None:
    global _local_cluster
    if _local_cluster is not None:
        local_cluster.stop_cluster(_local_cluster)
        _local_cluster = None


def shutdown(_exiting_interpreter: bool = False) -> None:
    with _lock:
        cw = cwmod._core_worker
        if cw is not None:
            cwmod.set_core_worker(None)
            cw.shutdown()
        _stop_local_cluster()


def _check_refs(object_refs: Any, fn: str) -> list[ObjectRef]:
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"{fn}() expected a list of ObjectRefs, got {type(object_refs).__name__}")
    for r in object_refs:
        if not isinstance(r, ObjectRef):
            raise TypeError(f"{fn}() expected a list of ObjectRefs, got a list containing {type(r).__name__}")
    return list(object_refs)


def get(object_refs: Union[ObjectRef, Sequence[ObjectRef]], *, timeout: Optional[float] = None) -> Any:
    cw = core_worker_or_init()
    if isinstance(object_refs, ObjectRef):
        return cw.get([object_refs], timeout)[0]
    if not isinstance(object_refs, (list, tuple)):
        raise ValueError(f"Invalid type of object refs, {type(object_refs)}, is given. 'object_refs' must either "
                         f"be an ObjectRef or a list of ObjectRefs.")
    refs = _check_refs(object_refs, "get")
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number or None")
    return cw.get(refs, timeout)


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
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number or None")
    return cw.wait(refs, num_returns, timeout, fetch_local)


def cancel(ray_waitable: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that creates ``ray_waitable``: a queued task is dropped, a running one is
    interrupted (KeyboardInterrupt in the task), or with ``force=True`` its worker is killed.
    ``get`` on its results then raises ``TaskCancelledError``.  Tasks the cancelled task
    submitted are not cancelled (``recursive`` is accepted for compatibility)."""
    cw = core_worker_or_init()
    if not isinstance(ray_waitable, ObjectRef):
        raise TypeError(f"ember.cancel() only supports ObjectRefs, got {type(ray_waitable).__name__}")
    if ray_waitable.owner_address != cw.address:
        raise ValueError("Only the process that submitted a task (its owner) can cancel it.")
    cw.post(cw.submitter.cancel, ray_waitable.task_id(), bool(force))


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
        from ember.actor import ActorClass
        return ActorClass(fn_or_cls, options)
    if inspect.isfunction(fn_or_cls) or inspect.isbuiltin(fn_or_cls) or callable(fn_or_cls):
        from ember.remote_function import RemoteFunction
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
        return await (await cw.gcs_conn()).request(m.GetNodes())

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
    from ember.actor import method as _method
    return _method(*args, **kwargs)


def get_actor(name: str, namespace: Optional[str] = None) -> Any:
    """The handle of the live actor called ``name`` in ``namespace`` (default: this job's)."""
    from ember.actor import ActorHandle
    if not isinstance(name, str) or not name:
        raise ValueError("Please supply a non-empty value to get_actor")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ValueError('"" is not a valid namespace. Pass None to not specify a namespace.')
    cw = core_worker_or_init()
    actor_id, meta = cw.actor_submitter.get_named(name, namespace if namespace is not None else cw.get_namespace())
    return ActorHandle(actor_id, meta)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """End an actor at once (its pending calls fail); with ``no_restart=False`` it may restart."""
    from ember.actor import ActorHandle
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"ray.kill() only supported for actors. For tasks, try ray.cancel(). Got: {type(actor)}.")
    core_worker_or_init().actor_submitter.kill(actor._ember_actor_id, bool(no_restart))
