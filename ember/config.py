"""Every tunable of ember in one place, with units in the names.

Each field can be overridden by an environment variable EMBER_<FIELD NAME IN CAPITALS>.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass
class Config:
    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 10.0
    inline_object_max_bytes: int = 100 * 1024
    lease_linger_s: float = 0.02
    max_pending_lease_requests: int = 4
    tasks_in_flight_per_worker_max: int = 4
    pipeline_tasks_below_s: float = 0.005
    locality_min_bytes: int = 1024 * 1024
    infeasible_retry_s: float = 1.0
    log_poll_interval_s: float = 0.1
    transfer_chunk_bytes: int = 4 * 1024 * 1024
    transfer_chunks_in_flight: int = 4
    connect_timeout_s: float = 10.0
    gcs_port: int = 6379
    max_workers_starting: int = 8

    @classmethod
    def from_env(cls) -> "Config":
        cfg = cls()
        for f in dataclasses.fields(cls):
            raw = os.environ.get("EMBER_" + f.name.upper())
            if raw is not None:
                setattr(cfg, f.name, type(getattr(cfg, f.name))(raw))
        return cfg


CONFIG = Config.from_env()
