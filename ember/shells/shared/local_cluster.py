"""Starting and stopping the daemons of a cluster on this machine.

Used by ``ember.init()`` (a private cluster tied to the driver) and by ``ember start``
(daemons that outlive the command).
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Optional

from ember.shells.shared import processes
from ember.shells.wire import addresses
from ember.shells.wire import session
from ember.shells.wire import discovery


@dataclass
class StartedCluster:
    session_dir: str
    token: bytes
    gcs_address: str = ""
    node_address: str = ""
    pids: list = field(default_factory=list)
    procs: list = field(default_factory=list)


SESSION_FILE_STORAGE = "file:session"


def start_head(*, host: str = "127.0.0.1", port: int = 0, tied_to_parent: bool,
               node_args: Optional[list[str]] = None, storage: str = "memory://",
               supervise: bool = False, token: Optional[bytes] = None) -> StartedCluster:
    """``storage``: the control store's storage URL (docs/head.md); ``SESSION_FILE_STORAGE``
    means a SQLite file in the new session directory."""
    session_dir = session.new_session_dir()
    if token:  # a token shared with a standby head (issue #11)
        session.write_token(session_dir, token)
    else:
        token = session.create_token(session_dir)
    cluster = StartedCluster(session_dir, token)
    logs = os.path.join(session_dir, "logs")
    gcs_port = port or processes.free_port(host)
    gcs_log = os.path.join(logs, "control_store.err")
    if storage == SESSION_FILE_STORAGE:
        storage = "file://" + os.path.join(session_dir, "control_state.db")
    # Both daemons start at once; the node daemon retries until the control store listens.
    gcs = processes.launch_daemon(
        "ember.shells.control.supervisor" if supervise else "ember.shells.control.control_store",
        ["--host", host, "--port", str(gcs_port), "--token-file", session.token_path(session_dir),
         "--session-dir", session_dir, "--storage", storage],
        log_path=gcs_log, tied_to_parent=tied_to_parent)
    cluster.procs.append(gcs)
    cluster.pids.append(gcs.pid)
    cluster.gcs_address = f"{addresses.advertised_host(host)}:{gcs_port}"
    try:
        node_proc, node_log = launch_node(cluster.gcs_address, session_dir, session.token_path(session_dir),
                                          host=host, is_head=True, tied_to_parent=tied_to_parent,
                                          extra=node_args or [])
        cluster.procs.append(node_proc)
        processes.wait_ready(gcs, "ember.shells.control.control_store", gcs_log)
        node_port = processes.wait_ready(node_proc, "ember.shells.node.node_daemon", node_log)
        node = node_proc
    except Exception:
        stop_cluster(cluster)
        raise
    # Recorded once it serves: `address="auto"`, `ember status` and `ember memory` find it.
    discovery.record_cluster(session_dir, cluster.gcs_address, "init" if tied_to_parent else "start", gcs.pid)
    cluster.pids.append(node.pid)
    cluster.node_address = f"{addresses.advertised_host(host)}:{node_port}"
    return cluster


def launch_node(gcs_address: str, session_dir: str, token_file: str, *, host: str, is_head: bool,
                tied_to_parent: bool, extra: list[str]) -> tuple[Any, str]:
    """Start a node daemon without waiting for it; returns (process, its log path)."""
    args = ["--gcs-address", gcs_address, "--token-file", token_file, "--session-dir", session_dir,
            "--host", host, *extra]
    if is_head:
        args.append("--head")
    name = "node_daemon_head.err" if is_head else f"node_daemon_{os.getpid()}_{len(os.listdir(os.path.join(session_dir, 'logs')))}.err"
    log_path = os.path.join(session_dir, "logs", name)
    proc = processes.launch_daemon("ember.shells.node.node_daemon", args, log_path=log_path,
                                   tied_to_parent=tied_to_parent)
    return proc, log_path


def start_node(gcs_address: str, session_dir: str, token_file: str, *, host: str, is_head: bool,
               tied_to_parent: bool, extra: list[str]) -> tuple[Any, int]:
    proc, log_path = launch_node(gcs_address, session_dir, token_file, host=host, is_head=is_head,
                                 tied_to_parent=tied_to_parent, extra=extra)
    try:
        return proc, processes.wait_ready(proc, "ember.shells.node.node_daemon", log_path)
    except Exception:
        proc.kill()
        proc.wait()
        raise


def node_args(*, num_cpus: Optional[float], num_gpus: Optional[float], resources: Optional[dict],
              object_store_memory: Optional[int], memory: Optional[float] = None,
              spill_dir: Optional[str] = None, labels: Optional[dict] = None) -> list[str]:
    args: list[str] = []
    if labels:
        args += ["--labels", json.dumps(labels)]
    if num_cpus is not None:
        args += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        args += ["--num-gpus", str(num_gpus)]
    if resources:
        args += ["--resources", json.dumps(resources)]
    if object_store_memory:
        args += ["--object-store-memory", str(int(object_store_memory))]
    if memory:
        args += ["--memory", str(memory)]
    if spill_dir:
        args += ["--spill-dir", os.path.abspath(os.path.expanduser(spill_dir))]
    return args


def stop_cluster(cluster: StartedCluster) -> None:
    # Not found any more from here on; then node daemons (they stop their workers), then the control store.
    session.remove_cluster_record(cluster.session_dir)
    for proc in reversed(cluster.procs):
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except Exception:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def start_job_server(cluster: StartedCluster, *, host: str, port: int, tied_to_parent: bool) -> str:
    """Start the job server (an ember driver serving the jobs API); returns its URL."""
    log_path = os.path.join(cluster.session_dir, "logs", "job_server.err")
    proc = processes.launch_daemon(
        "ember.job_server",
        ["--gcs-address", cluster.gcs_address, "--token-file", session.token_path(cluster.session_dir),
         "--session-dir", cluster.session_dir, "--host", host, "--port", str(port)],
        log_path=log_path, tied_to_parent=tied_to_parent,
        env={**os.environ, "EMBER_DRIVER_PRESTART_WORKERS": "0"})  # it runs no tasks: no idle workers
    cluster.procs.append(proc)
    cluster.pids.append(proc.pid)
    processes.wait_ready(proc, "ember.job_server", log_path, timeout_s=60.0)
    return session.read_job_server_url(cluster.session_dir) or f"http://{host}:{port}"


def start_client_server(cluster: StartedCluster, *, host: str, port: int, tied_to_parent: bool) -> str:
    """Start the client server (ember://, docs/client.md) on the head; returns its address."""
    log_path = os.path.join(cluster.session_dir, "logs", "client_server.err")
    proc = processes.launch_daemon(
        "ember.shells.client.server",
        ["--gcs-address", cluster.gcs_address, "--node-address", cluster.node_address,
         "--token-file", session.token_path(cluster.session_dir), "--host", host, "--port", str(port)],
        log_path=log_path, tied_to_parent=tied_to_parent)
    cluster.procs.append(proc)
    cluster.pids.append(proc.pid)
    bound = processes.wait_ready(proc, "ember.shells.client.server", log_path)
    return f"{addresses.advertised_host(host)}:{bound}"
