"""Joining and leaving a cluster: init, shutdown, and the core worker of this process.

``init()`` decides which cluster to join (or starts a private one) and starts the driver's
core worker; everything else in the public layer reaches the core worker through
``core_worker_or_init()``, which starts a cluster on first use as Ray's auto-init does.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from typing import Any, Optional

from ember import runtime_env as runtime_env_mod
from ember.config import CONFIG, spill_root_from_config
from ember.shells.shared import local_cluster
from ember.shells.shared.shm_store import OBJECT_STORE_MIN_BYTES as OBJECT_STORE_MINIMUM_MEMORY_BYTES
from ember.shells.wire import addresses, session
from ember.shells.worker import core_worker as cwmod
from ember.logic.discovery import NotFound, StartLocal
from ember.shells.wire import discovery, rpc

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
    if cw.tunnel is not None and cw.tunnel.error is not None:
        raise cw.tunnel.error  # a remote client whose session ended (docs/client.md)
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
    """Join a cluster or start a private one, by Ray's rules (``ember/logic/discovery.py``).

    No address: ``EMBER_ADDRESS``/``RAY_ADDRESS``, else the cluster of ``ember start --head`` if it
    runs, else a new private cluster. ``"auto"``: the same, else the one running cluster of this
    user on this machine, else ``ConnectionError``. ``"local"``: always a new private cluster.
    """
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
        ns = namespace if namespace is not None else f"anon-{uuid.uuid4().hex[:12]}"
        client_cw = _start_remote_client(address, ns, log_to_driver, num_cpus, num_gpus, resources, labels)
        if client_cw is not None:
            return _finish_init(client_cw, runtime_env, "")
        decision = discovery.resolve(address)
        if isinstance(decision, NotFound):
            raise ConnectionError(decision.message)
        token: bytes
        node_address = ""
        dashboard_url = ""
        driver_host = "127.0.0.1"
        if object_store_memory is not None and object_store_memory < OBJECT_STORE_MINIMUM_MEMORY_BYTES:
            raise ValueError(f"Attempting to cap object store memory usage at {object_store_memory} bytes, "
                             f"but the minimum allowed is {OBJECT_STORE_MINIMUM_MEMORY_BYTES} bytes.")
        spill_dir = spill_root_from_config(_system_config, kwargs.get("object_spilling_directory"))
        if isinstance(decision, StartLocal):
            discovery.prune_dead_sessions()
            node_args = local_cluster.node_args(num_cpus=num_cpus if num_cpus is not None else (os.cpu_count() or 1),
                                                num_gpus=num_gpus, resources=resources,
                                                object_store_memory=object_store_memory,
                                                memory=kwargs.get("_memory"), spill_dir=spill_dir, labels=labels)
            node_ip = kwargs.get("_node_ip_address")
            if node_ip:
                addresses.check_listen_host(node_ip)
                driver_host = node_ip
            cluster = local_cluster.start_head(host=node_ip or "127.0.0.1", tied_to_parent=True,
                                               node_args=node_args)
            _local_cluster = cluster
            gcs_address, token, node_address = cluster.gcs_address, cluster.token, cluster.node_address
            if include_dashboard:
                try:
                    dashboard_url = local_cluster.start_job_server(
                        cluster, host=dashboard_host, port=_dashboard_port(dashboard_host, dashboard_port),
                        tied_to_parent=True)
                except BaseException:
                    _stop_local_cluster()
                    raise
        else:
            if num_cpus is not None or num_gpus is not None or resources is not None or labels is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus, resources and labels "
                                 "must not be provided.")
            gcs_address = decision.address
            log.info("Connecting to existing ember cluster at address: %s (%s)", gcs_address, decision.reason)
            token = session.find_token(gcs_address)
            driver_host = _driver_host(gcs_address, kwargs.get("_node_ip_address"))
        cw = cwmod.CoreWorker(mode="driver", token=token, node_address=node_address, gcs_address=gcs_address,
                              worker_id=os.urandom(16), namespace=ns, log_to_driver=log_to_driver,
                              host=driver_host)
        try:
            cw.start()
        except BaseException as error:
            cw.shutdown()
            _stop_local_cluster()
            if isinstance(error, rpc.TokenRefused):
                raise ConnectionError(_token_refused_message(gcs_address)) from error
            if isinstance(error, TimeoutError):
                raise TimeoutError(f"The ember cluster at {gcs_address} did not answer within "
                                   f"{CONFIG.connect_timeout_s:g} s (EMBER_CONNECT_TIMEOUT_S): its control store "
                                   f"or node daemon is hung or overloaded.") from error
            raise
        return _finish_init(cw, runtime_env, dashboard_url)


def _finish_init(cw: cwmod.CoreWorker, runtime_env: Optional[dict], dashboard_url: str) -> EmberContext:
    global _atexit_registered
    cwmod.set_core_worker(cw)
    if runtime_env:
        try:
            runtime_env_mod.set_job_env(runtime_env_mod.upload(runtime_env, cw))
        except BaseException:
            shutdown()
            raise
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True
    ctx = EmberContext(cw.gcs_address, cw.node_id.hex(), cw.session_dir, cw.namespace)
    ctx["dashboard_url"] = ctx.address_info["dashboard_url"] = dashboard_url
    return ctx


def _start_remote_client(address: Optional[str], namespace: str, log_to_driver: bool, *node_options: Any
                         ) -> Optional[cwmod.CoreWorker]:
    """``ember://HOST:PORT`` / ``ray://HOST:PORT``: a remote client through the head's client
    server (docs/client.md).  None when the address is not one, or names a control store
    (``ember://`` was allowed for a control store before the client existed: joined directly)."""
    if address is None:
        address = os.environ.get("EMBER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not isinstance(address, str) or not address.startswith(("ember://", "ray://")):
        return None
    from ember.shells.worker import remote_client
    server = address.split("://", 1)[1].rstrip("/")
    if not server.rpartition(":")[2].isdigit():
        server = f"{server}:10001"  # Ray Client's default port
    if any(option is not None for option in node_options):
        raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus, resources and labels "
                         "must not be provided.")
    token = session.find_token(server)
    cw = cwmod.CoreWorker(mode="driver", token=token, node_address="", gcs_address="", worker_id=os.urandom(16),
                          namespace=namespace, log_to_driver=log_to_driver, client_server_address=server)
    try:
        cw.start()
    except BaseException as error:
        cw.shutdown()
        if isinstance(error, rpc.RpcError) and "does not handle ClientHello" in error.message:
            return None  # a control store: join it as a driver
        raise remote_client.init_error(server, error) from error
    log.info("Connected to the ember cluster at %s as a remote client (namespace %s)", address, namespace)
    return cw


def _dashboard_port(host: str, port: Optional[int]) -> int:
    """Ray's port 8265 when free (or the one asked for), else any free port."""
    if port is not None:
        return port
    import socket
    with socket.socket() as sock:
        try:
            sock.bind((host, 8265))
            return 8265
        except OSError:
            return 0


def _driver_host(gcs_address: str, node_ip_address: Optional[str]) -> str:
    """Where a driver joining a cluster listens: ``_node_ip_address``, else this node's address
    ($EMBER_NODE_IP_ADDRESS, set in workers and job entrypoints), else this machine's address on
    the route to the head (loopback for a head on loopback).  Peers on other machines call
    back into the driver (owner of its objects, caller of its actors), so it must not be
    loopback-only on a cluster that is not."""
    host = node_ip_address or os.environ.get("EMBER_NODE_IP_ADDRESS")
    if host:
        addresses.check_listen_host(host)
        return host
    from ember.shells.wire.leader import first_address  # "h1:port,h2:port": several heads
    return addresses.local_ip_towards(first_address(gcs_address).rpartition(":")[0])


def _token_refused_message(gcs_address: str) -> str:
    try:
        _, source = session.find_token_and_source(gcs_address)
    except (ConnectionError, OSError):
        source = "an unknown place"
    return (f"The ember cluster at {gcs_address} refused this driver's cluster token (read from {source}). "
            f"Use that cluster's token: set {session.TOKEN_ENV} to the contents of the 'token' file in its "
            f"session directory.")


def _stop_local_cluster() -> None:
    """Stop this driver's private cluster; its session directory goes too unless EMBER_KEEP_SESSIONS=1."""
    global _local_cluster
    if _local_cluster is not None:
        cluster, _local_cluster = _local_cluster, None
        local_cluster.stop_cluster(cluster)
        if os.environ.get("EMBER_KEEP_SESSIONS", "") not in ("1", "true", "True"):
            session.remove_session_dir(cluster.session_dir)


def shutdown(_exiting_interpreter: bool = False) -> None:
    with _lock:
        runtime_env_mod.set_job_env(None)
        cw = cwmod._core_worker
        if cw is not None:
            cwmod.set_core_worker(None)
            cw.shutdown()
        _stop_local_cluster()
