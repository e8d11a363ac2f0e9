"""Every tunable of ember in one place, with units in the names.

Each field can be overridden by an environment variable EMBER_<FIELD NAME IN CAPITALS>.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional


@dataclass
class Config:
    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 4.0   # a node silent this long is declared dead (Ray: ~15-30 s); it fences itself earlier
    inline_object_max_bytes: int = 100 * 1024
    lease_linger_s: float = 0.02
    max_pending_lease_requests: int = 4
    tasks_in_flight_per_worker_max: int = 4
    pipeline_tasks_below_s: float = 0.005
    locality_min_bytes: int = 1024 * 1024
    infeasible_retry_s: float = 1.0
    log_poll_interval_s: float = 0.1
    log_poll_idle_max_s: float = 1.0   # a worker whose logs stay unchanged is polled less often, down to this
    transfer_chunk_bytes: int = 4 * 1024 * 1024
    transfer_chunks_in_flight: int = 4
    connect_timeout_s: float = 10.0
    gcs_port: int = 6379
    max_workers_starting: int = 8
    task_inline_args_max_bytes: int = 10 * 1024 * 1024   # Ray's task_rpc_inlined_bytes_limit
    task_events_report_interval_s: float = 1.0   # 0 turns task events off (Ray: task_events_report_interval_ms)
    task_events_buffer_max: int = 100_000        # events a process keeps before dropping (and counting) more
    task_events_max_per_job: int = 100_000       # task records the control store keeps per job
    # How long node daemons and drivers/workers try to reconnect to a lost control store
    # (Ray's gcs_rpc_server_reconnect_timeout_s); past it, calls that need the head fail and
    # node daemons exit.
    gcs_reconnect_timeout_s: float = 60.0
    # objects: where node daemons keep their shared-memory store directories (a tmpfs)
    shm_dir: str = "/dev/shm"
    driver_prestart_workers: int = 1  # 0: a driver's node daemon starts no workers ahead (the job server)
    handshake_timeout_s: float = 10.0
    handshake_pending_max: int = 256
    scheduling_policy: str = "wait"            # DEFAULT placement: "wait" (seed), "hybrid" (Ray), "least_loaded"
    scheduler_bandwidth_bytes_per_s: float = 125e6   # the placement policy's estimate of node-to-node bandwidth
    scheduler_keep_margin_s: float = 0.02      # a node keeps a request whose estimated cost is this close to the best
    scheduler_spread_threshold: float = 0.5    # "hybrid": pack onto a node until it is this utilized
    worker_warning_threshold: int = 0   # warn the job when a node's workers reach this, then 2x, 4x... (0: max(32, 4 x CPUs))
    dashboard_history_period_s: float = 10.0   # the dashboard's charts: one cluster sample per period, an hour kept
    # lineage reconstruction (logic/owner/lineage.py): bytes of task specs an owner keeps to rebuild
    # lost objects (Ray's RAY_max_lineage_bytes, default 1 GiB); past it the oldest are evicted
    max_lineage_bytes: int = 1 << 30
    # remote client (ember://, docs/client.md): the client server's port on the head, how long it keeps
    # the session of a client it does not hear from, and the tunnel's ping interval and silence limit
    client_server_port: int = 10001
    client_reconnect_grace_s: float = 30.0
    client_ping_interval_s: float = 1.0
    client_idle_timeout_s: float = 4.0
    # object transfer (docs/object_store.md section 6): connections one pull stripes over, and
    # holders it reads from at most (the primary's node names the least loaded)
    transfer_connections_max: int = 4
    transfer_sources_max: int = 4
    head_lease_ttl_s: float = 2.0              # a standby head takes over a lease not renewed for this long;
    # below heartbeat_timeout_s - 2 * heartbeat_interval_s - 0.5 so nodes find the new leader before they fence
    # metrics (docs/observability.md): each node daemon's and the control store's Prometheus endpoint;
    # 0: a free port, -1: no endpoint.  Ray's --metrics-export-port.
    metrics_export_port: int = 0
    metrics_head_port: int = 0
    metrics_require_token: int = 1             # 0: the endpoints answer without the cluster token
    metrics_report_interval_s: float = 1.0     # how often a process sends its user metrics to its node daemon

    @classmethod
    def from_env(cls) -> "Config":
        cfg = cls()
        for f in dataclasses.fields(cls):
            raw = os.environ.get("EMBER_" + f.name.upper())
            if raw is not None:
                setattr(cfg, f.name, type(getattr(cfg, f.name))(raw))
        return cfg


CONFIG = Config.from_env()


def spill_root_from_config(system_config: Optional[dict] = None,
                           object_spilling_directory: Optional[str] = None) -> Optional[str]:
    """The spill directory a user asked for, or None for the default.

    ``object_spilling_directory`` wins; else Ray's ``_system_config`` form
    ``{"object_spilling_config": '{"type": "filesystem", "params": {"directory_path": D}}'}``
    (a JSON string or a dict; ``directory_path`` may be a list: the first is used).
    """
    if object_spilling_directory:
        return str(object_spilling_directory)
    raw = (system_config or {}).get("object_spilling_config")
    if raw is None or raw == "":
        return None
    try:
        spec = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError as exc:
        raise ValueError(f"object_spilling_config is not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or spec.get("type") != "filesystem":
        kind = spec.get("type") if isinstance(spec, dict) else spec
        raise ValueError(f"object_spilling_config type {kind!r} is not supported: "
                         "ember spills to a local filesystem only ({\"type\": \"filesystem\", "
                         "\"params\": {\"directory_path\": ...}})")
    path = (spec.get("params") or {}).get("directory_path")
    if isinstance(path, (list, tuple)):
        path = path[0] if path else None
    if not path or not isinstance(path, str):
        raise ValueError("object_spilling_config needs params.directory_path")
    return path
