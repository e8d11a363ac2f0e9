"""``ember up config.yaml`` / ``ember down config.yaml``: a cluster from a cluster config, with its autoscaler.

`up` starts the head (the head node type's resources) on this machine, then the autoscaler process
beside it (ember.shells.autoscaler.monitor), which launches and terminates worker nodes through the
config's provider.  `down` stops that cluster's autoscaler, its nodes and its head, and nothing else.
Providers: `local` and `ssh` (docs/autoscaler.md; the ssh side is in cluster_ssh.py).
"""
from __future__ import annotations

import os
import shutil
from typing import Optional

import click
import psutil

from ember.cli.stop import find_started, stop_started
from ember.config import CONFIG
from ember.logic.autoscaler.config import ClusterConfigError, parse_cluster_config
from ember.shells.shared import local_cluster, processes
from ember.shells.wire import session

CONFIG_NAME = "cluster_config.yaml"


def load(path: str):
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise click.ClickException(f"cannot read the cluster config {path}: {exc.strerror}") from None
    try:
        return parse_cluster_config(text, path)
    except ClusterConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _record(session_dir: str, pid: int, role: str, address: str) -> None:
    try:
        session.record_pid(session_dir, pid=pid, create_time=psutil.Process(pid).create_time(), role=role,
                           address=address)
    except psutil.NoSuchProcess:
        pass


def _head_args(resources: dict) -> list[str]:
    res = dict(resources)
    return local_cluster.node_args(num_cpus=res.pop("CPU", 0), num_gpus=res.pop("GPU", 0) or None,
                                   resources=res or None, object_store_memory=None)


def keep_config(session_dir: str, config_path: str) -> str:
    """The cluster config copied into the session directory (the autoscaler and `ember down` read it)."""
    kept = os.path.join(session_dir, CONFIG_NAME)
    shutil.copyfile(config_path, kept)
    return kept


def start_autoscaler(cluster: local_cluster.StartedCluster, config_path: str) -> int:
    log_path = os.path.join(cluster.session_dir, "logs", "autoscaler.err")
    proc = processes.launch_daemon(
        "ember.shells.autoscaler.monitor",
        ["--gcs-address", cluster.gcs_address, "--token-file", session.token_path(cluster.session_dir),
         "--session-dir", cluster.session_dir, "--config", config_path],
        log_path=log_path, tied_to_parent=False)
    processes.wait_ready(proc, "ember.shells.autoscaler.monitor", log_path)
    if proc.stdout is not None:
        proc.stdout.close()
    _record(cluster.session_dir, proc.pid, "autoscaler", "")
    return proc.pid


def local_session_dirs(cluster_name: str) -> list[str]:
    """The session directories on this machine of the cluster ``cluster_name`` (started by `ember up`)."""
    dirs = []
    for d in session.session_dirs():
        try:
            with open(os.path.join(d, CONFIG_NAME)) as f:
                if parse_cluster_config(f.read()).cluster_name == cluster_name:
                    dirs.append(d)
        except (OSError, ClusterConfigError):
            continue
    return dirs


@click.command("up")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--port", type=int, default=None, help=f"Control store port (default {CONFIG.gcs_port}; 0: a free one).")
def up(config_file: str, yes: bool, port: Optional[int]) -> None:
    """Start a cluster from a cluster config: the head here, and the autoscaler that launches workers."""
    config = load(config_file)
    if config.provider["type"] not in ("local", "ssh"):
        raise click.ClickException(f"{config_file}: provider.type {config.provider['type']!r} is not supported "
                                   "(known: local, ssh)")
    head = config.node_type(config.head_node_type)
    if config.provider["type"] == "ssh":
        if not yes:
            click.confirm(f"Start cluster {config.cluster_name!r} over SSH (head {config.provider['head_ip']}, "
                          f"{len(config.provider.get('worker_ips', []))} worker machine(s))?", abort=True)
        from ember.cli.cluster_ssh import up_ssh
        up_ssh(config, config_file)
        return
    if not yes:
        click.confirm(f"Start cluster {config.cluster_name!r} (head {head.name}: {head.resources}, "
                      f"up to {config.max_workers} workers)?", abort=True)
    try:
        cluster = local_cluster.start_head(host="127.0.0.1", port=CONFIG.gcs_port if port is None else port,
                                           tied_to_parent=False, node_args=_head_args(head.resources))
    except RuntimeError as exc:
        raise click.ClickException(f"the head failed to start: {exc}") from None
    _record(cluster.session_dir, cluster.procs[0].pid, "control_store", cluster.gcs_address)
    _record(cluster.session_dir, cluster.procs[1].pid, "node_daemon", cluster.node_address)
    for proc in cluster.procs:
        if proc.stdout is not None:
            proc.stdout.close()
    kept = keep_config(cluster.session_dir, config_file)
    session.write_current_cluster(cluster.gcs_address, cluster.session_dir)
    try:
        start_autoscaler(cluster, kept)
    except RuntimeError as exc:
        raise click.ClickException(f"the autoscaler failed to start: {exc}") from None
    click.echo(f"Cluster {config.cluster_name!r} is up: head at {cluster.gcs_address}, autoscaler running.")
    click.echo("  Connect with ember.init(address='auto'); see it with `ember status`; "
               f"stop it with `ember down {config_file}`.")


@click.command("down")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Accepted for Ray compatibility; down does not ask.")
def down(config_file: str, yes: bool) -> None:
    """Stop the cluster started from this config: its autoscaler, its worker nodes and its head."""
    config = load(config_file)
    if config.provider["type"] == "ssh":
        from ember.cli.cluster_ssh import down_ssh
        down_ssh(config)
        return
    dirs = local_session_dirs(config.cluster_name)
    started = find_started(dirs)
    # the autoscaler first, so it launches nothing while the rest stops
    started.sort(key=lambda s: s.role != "autoscaler")
    stop_started([s for s in started if s.role == "autoscaler"], force=False, grace_period_s=5.0)
    stopped, survivors = stop_started([s for s in started if s.role != "autoscaler"], force=False, grace_period_s=10.0)
    for d in dirs:
        session.remove_pids(d)
        os.remove(os.path.join(d, CONFIG_NAME))
    current = session.read_current_cluster()
    if current is not None and current.get("session_dir") in dirs:
        session.clear_current_cluster()
    click.echo(f"Cluster {config.cluster_name!r}: stopped {len(started)} process(es)." if started
               else f"Cluster {config.cluster_name!r} is not running here.")
    if survivors:
        raise click.ClickException(f"{len(survivors)} process(es) could not be stopped")
