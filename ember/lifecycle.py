"""Joining and leaving a cluster: init, shutdown, and the core worker of this process.

``init()`` decides which cluster to join (or starts a private one) and starts the driver's
core worker; everything else in the public layer reaches the core worker through
``core_worker_or_init()``, which starts a cluster on first use as Ray's auto-init does.
"""
from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import uuid
from typing import Any, Optional

from ember.config import spill_root_from_config
from ember.shells.shared import local_cluster
from ember.shells.shared.shm_store import OBJECT_STORE_MIN_BYTES as OBJECT_STORE_MINIMUM_MEMORY_BYTES
from ember.shells.wire import session
from ember.shells.worker import core_worker as cwmod

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
        if labels is not None and (not isinstance(labels, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) for k, v in labels.items())):
            raise ValueError(f"labels must be a dict of non-empty string keys to string values, got {labels!r}")
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
                                                memory=kwargs.get("_memory"), spill_dir=spill_dir, labels=labels)
            cluster = local_cluster.start_head(tied_to_parent=True, node_args=node_args)
            _local_cluster = cluster
            gcs_address, token, node_address = cluster.gcs_address, cluster.token, cluster.node_address
        else:
            if num_cpus is not None or num_gpus is not None or resources is not None or labels is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus, resources and labels "
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
                              worker_id=os.urandom(16), namespace=ns, log_to_driver=log_to_driver,
                              host=_driver_host(gcs_address, kwargs.get("_node_ip_address")))
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


def _driver_host(gcs_address: str, node_ip_address: Optional[str]) -> str:
    """The address the driver listens on: workers on other hosts must reach it (Ray's node IP).

    ``_node_ip_address``; loopback for a head on loopback; else $EMBER_NODE_IP_ADDRESS, else this
    machine's address on the route to the head."""
    if node_ip_address:
        return node_ip_address
    head_host = gcs_address.rpartition(":")[0].strip("[]")
    if head_host in ("", "127.0.0.1", "localhost", "::1"):
        return "127.0.0.1"
    if os.environ.get("EMBER_NODE_IP_ADDRESS"):
        return os.environ["EMBER_NODE_IP_ADDRESS"]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((head_host, 9))  # no packet is sent: this only asks for the route
            return str(sock.getsockname()[0])
    except OSError:
        return "127.0.0.1"


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
