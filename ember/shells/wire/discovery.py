"""Finding the clusters of this user on this machine (the facts ``logic/discovery.py`` decides on).

Every cluster started here (by ``ember start --head`` or by a driver's ``init()``) writes
``cluster.json`` in its session directory: its address, who started it, and the pid and
start time of its control store. A record is alive when that process still runs (same pid,
same start time: a reused pid does not count) and its port accepts a connection within
``PROBE_TIMEOUT_S``; a crashed head's record is skipped, never waited on. A driver's cluster
removes its record when it shuts down.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Optional

import psutil

from ember.logic import discovery as logic
from ember.shells.wire import session

PROBE_TIMEOUT_S = 1.0
_CREATE_TIME_SLACK_S = 1.0
DEAD_SESSIONS_KEPT = 10   # crashed driver clusters whose logs stay for a post-mortem


def process_matches(pid: object, create_time: object) -> Optional[bool]:
    """Whether ``pid`` still runs with that start time (None: no pid recorded or not ours to see)."""
    if not isinstance(pid, int):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if isinstance(create_time, (int, float)) and abs(proc.create_time() - create_time) > _CREATE_TIME_SLACK_S:
            return False
        return True
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return None


def port_accepts(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def record_is_alive(record: dict) -> bool:
    running = process_matches(record.get("pid"), record.get("create_time"))
    if running is False:
        return False
    return port_accepts(str(record["address"]))


def current_candidate() -> Optional[logic.Candidate]:
    """The head recorded by ``ember start --head`` in ``current_cluster`` (None when none is)."""
    current = session.read_current_cluster()
    if current is None:
        return None
    session_dir = str(current.get("session_dir", ""))
    record = session.read_cluster_record(session_dir) if session_dir else None
    if record is None or record.get("address") != current["address"]:
        record = {"address": current["address"]}
    return logic.Candidate(current["address"], session_dir, "start", record_is_alive(record))


def local_candidates() -> list[logic.Candidate]:
    """Every cluster recorded under this user's session root, alive or not."""
    out = []
    for session_dir in session.session_dirs():
        record = session.read_cluster_record(session_dir)
        if record is None:
            continue
        out.append(logic.Candidate(str(record["address"]), session_dir, str(record.get("started_by", "")),
                                   record_is_alive(record)))
    return out


def resolve(address: Optional[str]) -> logic.Decision:
    """Apply Ray's address rules to what this machine shows now."""
    env = {name: os.environ.get(name, "") for name in logic.ADDRESS_ENV_VARS}
    wanted = logic.requested_mode(address, env)
    current = current_candidate() if wanted in (None, "auto") else None
    others: list[logic.Candidate] = []
    if wanted == "auto" and not (current is not None and current.is_alive):
        others = local_candidates()
    return logic.decide(address, env, current, others)


def record_cluster(session_dir: str, address: str, started_by: str, control_store_pid: int) -> None:
    """Write the session's ``cluster.json`` so that ``address="auto"`` and the CLI find it."""
    session.write_cluster_record(session_dir, {
        "address": address, "started_by": started_by, "pid": control_store_pid,
        "create_time": _create_time(control_store_pid),
        "driver_pid": os.getpid() if started_by == "init" else None,
        "driver_create_time": _create_time(os.getpid()) if started_by == "init" else None,
        "recorded_at": time.time()})


def _create_time(pid: int) -> Optional[float]:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def prune_dead_sessions(keep: int = DEAD_SESSIONS_KEPT) -> list[str]:
    """Remove the session directories of crashed driver clusters but the ``keep`` newest.

    A driver's cluster removes its own directory at a clean shutdown; one whose driver was
    killed leaves it behind. ``ember start`` sessions are never removed here.
    """
    dead = []
    for session_dir in session.session_dirs():
        record = session.read_cluster_record(session_dir)
        if record is None or record.get("started_by") != "init":
            continue
        if process_matches(record.get("pid"), record.get("create_time")) is False and \
                process_matches(record.get("driver_pid"), record.get("driver_create_time")) is not True:
            dead.append(session_dir)
    removed = dead[:-keep] if keep else dead
    for session_dir in removed:
        session.remove_session_dir(session_dir)
    return removed
