"""``ember start``: start a head (control store + node daemon) or one more node, as daemons.

The daemons outlive the command (they run in their own session, not tied to it). Their pids
go to the session directory's ``pids`` file so that ``ember stop`` stops them and nothing
else. ``--block`` keeps the command in the foreground and stops the daemons when it ends.
"""
from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import time
from typing import Any, Callable, Optional

import click
import psutil

from ember.cli.status import token_options
from ember.config import CONFIG
from ember.shells.shared import local_cluster
from ember.shells.wire import addresses, session, tls

_LOOPBACK_HOSTS = addresses.LOOPBACK_HOSTS
_BLOCK_POLL_S = 0.5
_STOP_GRACE_S = 5.0


class _ResourcesParam(click.ParamType):
    """``--resources '{"name": amount}'``: a JSON object of custom resources (not CPU/GPU)."""

    name = "json"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> dict:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(f"{value!r} is not valid JSON ({exc})", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} must be a JSON object such as '{{\"special\": 1}}'", param, ctx)
        for key, amount in parsed.items():
            if key in ("CPU", "GPU"):
                self.fail(f"use --num-{key.lower()}s instead of {key} in --resources", param, ctx)
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                self.fail(f"resource {key!r} must be a non-negative number, got {amount!r}", param, ctx)
        return {str(k): float(v) for k, v in parsed.items()}


class _LabelsParam(click.ParamType):
    """``--labels '{"zone": "a"}'``: a JSON object of string node labels."""

    name = "json"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> dict:
        if isinstance(value, dict):
            parsed: Any = value
        else:
            try:
                parsed = json.loads(value)
            except ValueError as exc:
                self.fail(f"{value!r} is not valid JSON ({exc})", param, ctx)
        if not isinstance(parsed, dict):
            self.fail(f"{value!r} must be a JSON object such as '{{\"zone\": \"a\"}}'", param, ctx)
        problem = labels_error(parsed)
        if problem:
            self.fail(problem, param, ctx)
        return {str(k): str(v) for k, v in parsed.items()}


def labels_error(labels: dict) -> Optional[str]:
    """Why node labels are malformed (keys and values must be non-empty strings), or None."""
    for key, value in labels.items():
        if not isinstance(key, str) or not key:
            return f"label keys must be non-empty strings, got {key!r}"
        if not isinstance(value, str):
            return f"label {key!r} must have a string value, got {value!r}"
    return None


def check_port_free(host: str, port: int) -> None:
    """Raise ``click.ClickException`` when ``host:port`` cannot be bound (already in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(
                f"port {port} on {host} is already in use (another ember head, Redis or other server "
                f"is listening there). Choose another port with --port, or stop the running cluster "
                f"with `ember stop`.") from None
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _apply_tls(cert: Optional[str], key: Optional[str], ca: Optional[str]) -> None:
    """Check the TLS files and put them in this process's environment: every process it starts
    (and every connection it makes) then uses them."""
    try:
        files = tls.tls_files(cert, key, ca)
    except tls.TlsConfigError as exc:
        raise click.UsageError(str(exc)) from None
    for name in (tls.ENV_CERT, tls.ENV_KEY, tls.ENV_CA):
        os.environ.pop(name, None)
    if files is not None:
        os.environ.update(files.as_env())


def _record(session_dir: str, proc: subprocess.Popen, role: str, address: str) -> None:
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        return
    session.record_pid(session_dir, pid=proc.pid, create_time=create_time, role=role, address=address)


def _release_pipes(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.stdout is not None:
            proc.stdout.close()
            proc.stdout = None


def _session_for_node(gcs_address: str, token: bytes) -> str:
    """The local head's session directory when joining it, else a new one holding the token."""
    current = session.read_current_cluster()
    if current is not None and _same_address(current.get("address", ""), gcs_address):
        session_dir = str(current["session_dir"])
        if os.path.exists(session.token_path(session_dir)) and session.read_token(
                session.token_path(session_dir)) == token:
            return session_dir
    session_dir = session.new_session_dir()
    session.write_token(session_dir, token)
    return session_dir


def _same_address(a: str, b: str) -> bool:
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b:
        return False
    return host_a == host_b or (host_a in _LOOPBACK_HOSTS and host_b in _LOOPBACK_HOSTS)


def _check_head_reachable(gcs_address: str, token: bytes, source: str) -> None:
    """Fail early and clearly when the head is not there or does not accept the token."""
    from ember.cli.status import fetch_nodes, token_refused
    from ember.shells.wire import rpc

    try:
        asyncio.run(fetch_nodes(gcs_address, token))
    except rpc.TokenRefused:
        raise token_refused(gcs_address, source) from None
    except (OSError, TimeoutError, rpc.RpcError) as exc:
        raise click.ClickException(
            f"could not reach the ember control store at {gcs_address} ({exc or type(exc).__name__}). "
            "Is the head running (`ember start --head`)?") from None


def _print_head_guidance(cluster: local_cluster.StartedCluster, host: str) -> None:
    address = cluster.gcs_address
    token_file = session.token_path(cluster.session_dir)
    click.echo(f"Local node IP: {addresses.advertised_host(host)}\n")
    click.echo("--------------------\nEmber runtime started.\n--------------------\n")
    click.echo("Next steps")
    click.echo("  To add another node to this ember cluster, run")
    click.echo(f"    ember start --address='{address}'")
    if host in _LOOPBACK_HOSTS:
        click.echo("  (the head listens on loopback only; start it with --node-ip-address to let other "
                   "machines join)")
    click.echo("  On another machine, pass the cluster token too:")
    click.echo(f"    EMBER_CLUSTER_TOKEN=$(cat {token_file}) ember start --address='{address}'\n")
    click.echo("  To connect to this ember cluster:")
    click.echo("    import ember")
    click.echo("    ember.init(address='auto')\n")
    click.echo("  To view the status of the cluster, use")
    click.echo("    ember status\n")
    click.echo("  To terminate the ember runtime, run")
    click.echo("    ember stop\n")
    click.echo(f"  Cluster token file: {token_file}")
    click.echo(f"  Logs: {os.path.join(cluster.session_dir, 'logs')}")


def _start_optional(what: str, host: str, port: int, start: Callable[[], str]) -> str:
    """Start an optional head service when its port is free; a failure costs only that service."""
    try:
        check_port_free(host, port)
        return start()
    except (click.ClickException, RuntimeError) as exc:
        text = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"Warning: the {what} did not start: {text}", err=True)
        return ""


def _start_job_server(cluster: local_cluster.StartedCluster, dashboard: Optional[tuple[str, int]]) -> str:
    """Start the job server when asked and its port is free; a failure costs only the jobs API."""
    if dashboard is None:
        return ""
    host, port = dashboard
    url = _start_optional("job server (jobs API)", host, port, lambda: local_cluster.start_job_server(
        cluster, host=host, port=port, tied_to_parent=False))
    if not url:
        return ""
    _record(cluster.session_dir, cluster.procs[-1], "job_server", url)
    from ember.shells.control.jobs import tls
    warning = tls.exposure_warning(host, bool(os.environ.get("EMBER_TLS_CERT")))
    if warning:
        click.echo(warning, err=True)
    return url


def _start_client_server(cluster: local_cluster.StartedCluster, host: str, port: int) -> str:
    """Start the client server (ember://) when its port is free; a failure costs only ember://."""
    if port < 0:
        return ""
    address = _start_optional("client server (ember://)", host, port, lambda: local_cluster.start_client_server(
        cluster, host=host, port=port, tied_to_parent=False))
    if address:
        _record(cluster.session_dir, cluster.procs[-1], "client_server", address)
    return address


def _start_head(host: str, port: int, extra: list[str], block: bool,
                dashboard: Optional[tuple[str, int]] = None, storage: str = "memory://",
                supervise: bool = False, client_server_port: int = -1,
                autoscaling_config: Optional[str] = None, token: Optional[bytes] = None) -> None:
    check_port_free(host, port)
    if autoscaling_config is not None:
        from ember.cli.up import load
        load(autoscaling_config)       # a bad config is refused before anything starts
    previous = session.read_current_cluster()  # refuses an unsafe root before anything starts
    try:
        cluster = local_cluster.start_head(host=host, port=port, tied_to_parent=False, node_args=extra,
                                           storage=storage, supervise=supervise, token=token)
    except RuntimeError as exc:
        raise click.ClickException(f"the head failed to start: {exc}") from None
    _record(cluster.session_dir, cluster.procs[0], "control_store", cluster.gcs_address)
    _record(cluster.session_dir, cluster.procs[1], "node_daemon", cluster.node_address)
    job_url = _start_job_server(cluster, dashboard)
    client_address = _start_client_server(cluster, host, client_server_port)
    session.write_current_cluster(cluster.gcs_address, cluster.session_dir)
    if autoscaling_config is not None:
        from ember.cli.up import keep_config, start_autoscaler
        try:
            start_autoscaler(cluster, keep_config(cluster.session_dir, autoscaling_config))
        except RuntimeError as exc:
            raise click.ClickException(f"the autoscaler failed to start: {exc}") from None
        click.echo("  Autoscaler running (its log: <session>/logs/autoscaler.err).")
    if previous is not None and previous.get("address") != cluster.gcs_address:
        click.echo(f"Note: address='auto' now finds this head, no longer {previous.get('address')}.")
    _print_head_guidance(cluster, host)
    if job_url:
        click.echo(f"  Jobs API: {job_url}  (ember job submit -- python script.py)")
        click.echo(f"  Dashboard: {job_url}  (log in with the token in "
                   f"{session.token_path(cluster.session_dir)})")
    if client_address:
        click.echo(f"  Remote clients: ember.init('ember://{client_address}')  (docs/client.md)")
    if block:
        names = ["control store", "node daemon"] + (["job server"] if job_url else []) + (
            ["client server"] if client_address else [])
        _block(cluster.procs, names, cluster.session_dir, is_head=True)
    else:
        _release_pipes(cluster.procs)


def _start_standby(host: str, port: int, storage: Optional[str], token_file: Optional[str], block: bool) -> None:
    """``ember start --head --standby``: a control store that waits for the leadership lease in a
    shared storage and takes it when the leader's lease expires (docs/head.md).  It starts no node
    daemon (add one with ``ember start --address LEADER,STANDBY``)."""
    if storage is None or storage.startswith("memory:"):
        raise click.UsageError("--standby needs a storage shared with the active head: --storage redis://... "
                               "(or a file:///path on this machine)")
    if token_file is None and not os.environ.get(session.TOKEN_ENV):
        raise click.UsageError(f"--standby needs the active head's cluster token: pass --token-file FILE or set "
                               f"{session.TOKEN_ENV} (both heads must share it)")
    token = session.read_token_file(token_file) if token_file else os.environ[session.TOKEN_ENV].encode()
    check_port_free(host, port)
    session_dir = session.new_session_dir()
    session.write_token(session_dir, token)
    log_path = os.path.join(session_dir, "logs", "control_store.err")
    from ember.shells.shared import processes
    proc = processes.launch_daemon(
        "ember.shells.control.control_store",
        ["--host", host, "--port", str(port), "--token-file", session.token_path(session_dir), "--session-dir",
         session_dir, "--storage", storage, "--standby"], log_path=log_path, tied_to_parent=False)
    try:
        processes.wait_ready(proc, "ember.shells.control.control_store", log_path)
    except RuntimeError as exc:
        raise click.ClickException(f"the standby head failed to start: {exc}") from None
    address = f"{addresses.advertised_host(host)}:{port}"
    _record(session_dir, proc, "control_store", address)
    session.write_current_cluster(address, session_dir)
    click.echo(f"Standby head (control store) waiting at {address} for the leadership lease in {storage}.")
    click.echo("It takes over, with the next epoch, when the active head's lease expires "
               f"(head_lease_ttl_s={CONFIG.head_lease_ttl_s:g} s).  Give nodes and drivers both addresses, e.g.")
    click.echo(f"    ember start --address='LEADER_HOST:PORT,{address}'")
    click.echo("  `ember status` shows who leads; `ember stop` stops this standby.")
    click.echo(f"Logs: {os.path.join(session_dir, 'logs')}")
    if block:
        _block([proc], ["standby control store"], session_dir, is_head=True)
    else:
        _release_pipes([proc])


def _start_worker_node(address: str, token_file: Optional[str], host: Optional[str], extra: list[str],
                       block: bool) -> None:
    from ember.shells.wire.leader import first_address, split_addresses
    gcs_address = ",".join(a if ":" in a else f"{a}:{CONFIG.gcs_port}" for a in split_addresses(address))
    from ember.cli.status import cluster_token

    token, source = cluster_token(gcs_address, token_file)
    _check_head_reachable(gcs_address, token, source)
    node_host = host or addresses.local_ip_towards(first_address(gcs_address).rpartition(":")[0])
    session_dir = _session_for_node(gcs_address, token)
    try:
        proc, node_port = local_cluster.start_node(gcs_address, session_dir, session.token_path(session_dir),
                                                   host=node_host, is_head=False, tied_to_parent=False,
                                                   extra=extra)
    except RuntimeError as exc:
        raise click.ClickException(f"the node daemon could not join {gcs_address}: {exc}") from None
    node_host = addresses.advertised_host(node_host)
    _record(session_dir, proc, "node_daemon", f"{node_host}:{node_port}")
    click.echo(f"Local node IP: {node_host}\n")
    click.echo("--------------------\nEmber runtime started.\n--------------------\n")
    click.echo(f"This node (daemon at {node_host}:{node_port}) joined the cluster at {gcs_address}.")
    click.echo("To terminate the ember runtime on this machine, run\n    ember stop")
    click.echo(f"Logs: {os.path.join(session_dir, 'logs')}")
    if block:
        _block([proc], ["node daemon"], session_dir, is_head=False)
    else:
        _release_pipes([proc])


def _block(procs: list[subprocess.Popen], names: list[str], session_dir: str, *, is_head: bool) -> None:
    """Stay in the foreground until a daemon exits or a signal arrives; then stop the rest."""
    stop_requested: list[int] = []

    def _on_signal(signum: int, frame: Any) -> None:
        stop_requested.append(signum)

    old = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    click.echo("\n--block: this command stays in the foreground; Ctrl-C stops the processes it started.")
    exit_code = 0
    try:
        while not stop_requested:
            exited = [(name, p) for name, p in zip(names, procs) if p.poll() is not None]
            if exited:
                for name, p in exited:
                    click.echo(f"The {name} (pid {p.pid}) exited with code {p.returncode}; stopping the rest.",
                               err=True)
                exit_code = 1
                break
            time.sleep(_BLOCK_POLL_S)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _stop_started(procs)
        _release_pipes(procs)
        # The pid file keeps their entries: `ember stop` skips pids that are gone or reused.
        if is_head:
            current = session.read_current_cluster()
            if current is not None and current.get("session_dir") == session_dir:
                session.clear_current_cluster()
            session.remove_cluster_record(session_dir)
    if exit_code:
        raise click.exceptions.Exit(exit_code)


def _stop_started(procs: list[subprocess.Popen]) -> None:
    # Node daemons (started last) first: they stop their zygote and workers; then the control store.
    for proc in reversed(procs):
        if proc.poll() is not None:
            continue
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_GRACE_S)
        except ProcessLookupError:
            pass


OVERRIDE_RESOURCES_ENV = "EMBER_OVERRIDE_RESOURCES"


def _override_resources(num_cpus, num_gpus, memory, resources):
    """EMBER_OVERRIDE_RESOURCES (JSON, like Ray's RAY_OVERRIDE_RESOURCES) wins over the options: the
    autoscaler's providers set it so that a config's own start commands start nodes of the right size."""
    text = os.environ.get(OVERRIDE_RESOURCES_ENV)
    if not text:
        return num_cpus, num_gpus, memory, resources
    try:
        given = json.loads(text)
        if not isinstance(given, dict) or not all(isinstance(v, (int, float)) for v in given.values()):
            raise ValueError("expected a JSON object of numbers")
    except ValueError as exc:
        raise click.UsageError(f"{OVERRIDE_RESOURCES_ENV}={text!r} is not valid: {exc}") from None
    given = dict(given)
    num_cpus = given.pop("CPU", num_cpus)
    num_gpus = given.pop("GPU", num_gpus)
    memory = int(given.pop("memory", memory)) if given.get("memory", memory) is not None else None
    return num_cpus, num_gpus, memory, {**(resources or {}), **given} or None


@click.command("start")
@click.option("--head", "is_head", is_flag=True, help="Start the head node: control store and a node daemon.")
@click.option("--address", default=None, help="HOST:PORT of the head's control store to join as another node.")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help=f"Control store port for --head (default {CONFIG.gcs_port}; 0 picks a free one).")
@click.option("--node-ip-address", default=None,
              help="IP address this node listens on and advertises (default: loopback for a head).")
@click.option("--num-cpus", type=click.FloatRange(min=0), default=None, help="CPUs of this node.")
@click.option("--num-gpus", type=click.FloatRange(min=0), default=None, help="GPUs of this node.")
@click.option("--resources", type=_ResourcesParam(), default=None,
              help='Custom resources as JSON, e.g. \'{"special": 1}\'.')
@click.option("--labels", type=_LabelsParam(), default=None,
              help='Node labels as JSON, e.g. \'{"zone": "a"}\' (for NodeLabelSchedulingStrategy).')
@click.option("--memory", type=click.IntRange(min=0), default=None,
              help="Memory (bytes) this node offers as the 'memory' resource.")
@click.option("--object-store-memory", type=click.IntRange(min=0), default=None,
              help="Capacity of this node's object store in bytes.")
@token_options
@click.option("--block", is_flag=True, help="Stay in the foreground; Ctrl-C stops the started processes.")
@click.option("--include-dashboard", type=bool, default=True, show_default=True,
              help="Start the job server (jobs REST API and web dashboard) on the head.")
@click.option("--dashboard-host", default="127.0.0.1", show_default=True,
              help="Address the job server listens on (non-loopback without TLS prints a warning).")
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=8265, show_default=True,
              help="Port of the job server (0 picks a free one).")
@click.option("--tls-cert", default=None, envvar=tls.ENV_CERT, show_envvar=True,
              help="PEM certificate every ember listener of this node presents (turns TLS on; needs --tls-key).")
@click.option("--tls-key", default=None, envvar=tls.ENV_KEY, show_envvar=True,
              help="PEM private key of --tls-cert.")
@click.option("--tls-ca", default=None, envvar=tls.ENV_CA, show_envvar=True,
              help="PEM CA certificate: mutual TLS, peers must present a certificate signed by it.")
@click.option("--client-server-port", type=click.IntRange(-1, 65535), default=CONFIG.client_server_port,
              show_default=True, help="Head only: port of the client server for ember://HOST:PORT remote clients "
                                      "(0 picks a free one, -1 starts none).")
@click.option("--storage", default=None,
              help="Head only: where the control store keeps its tables (docs/head.md): file:///path/state.db "
                   "(default: a SQLite file in the session directory), redis://[:password@]host:port[/db], "
                   "rediss://..., or memory:// (nothing survives the control store).")
@click.option("--standby", is_flag=True,
              help="Head only: a standby head. Its control store waits for the leadership lease in --storage (shared "
                   "with the active head, e.g. redis://...) and takes over when the leader's lease expires "
                   "(docs/head.md). Needs the cluster's token (--token-file or EMBER_CLUSTER_TOKEN).")
@click.option("--supervise", is_flag=True,
              help="Head only: run the control store under a small supervisor that restarts it (same port and "
                   "storage) if it dies; nodes and drivers reconnect (docs/head.md).")
@click.option("--metrics-export-port", type=click.IntRange(-1, 65535), default=None,
              help="Port of this node daemon's Prometheus /metrics endpoint (0: a free one, -1: off; "
                   "the head's control store endpoint: EMBER_METRICS_HEAD_PORT).")
@click.option("--autoscaling-config", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Head only: a cluster config (docs/autoscaler.md); runs the autoscaler beside the head, which "
                   "launches and stops worker nodes through the config's provider (what `ember up` starts).")
def start(is_head: bool, address: Optional[str], port: Optional[int], node_ip_address: Optional[str],
          num_cpus: Optional[float], num_gpus: Optional[float], resources: Optional[dict],
          labels: Optional[dict], memory: Optional[int], object_store_memory: Optional[int],
          token_file: Optional[str], block: bool,
          include_dashboard: bool, dashboard_host: str, dashboard_port: int,
          tls_cert: Optional[str], tls_key: Optional[str], tls_ca: Optional[str],
          storage: Optional[str], standby: bool, supervise: bool, client_server_port: int,
          autoscaling_config: Optional[str], metrics_export_port: Optional[int]) -> None:
    """Start ember's processes on this machine: a head (--head) or a node joining one (--address).

    With --node-ip-address 0.0.0.0 the processes listen on every interface and advertise the
    machine's primary address.  Drivers and other nodes of a TLS cluster need the same
    EMBER_TLS_CERT/EMBER_TLS_KEY/EMBER_TLS_CA variables."""
    _apply_tls(tls_cert, tls_key, tls_ca)
    if metrics_export_port is not None:   # read by the node daemon this command starts
        os.environ["EMBER_METRICS_EXPORT_PORT"] = str(metrics_export_port)
    if node_ip_address is not None:
        try:
            addresses.check_listen_host(node_ip_address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--node-ip-address") from None
        warning = addresses.exposure_warning(node_ip_address)
        if warning:
            click.echo(f"Warning: {warning}", err=True)
    if is_head == (address is not None):
        raise click.UsageError("pass exactly one of --head (start a new cluster) or --address "
                               "(join the cluster whose head is at that address)")
    if standby and not is_head:
        raise click.UsageError("--standby starts a standby head; use it with --head")
    if supervise and not is_head:
        raise click.UsageError("--supervise restarts the head's control store; use it with --head")
    if storage is not None and not is_head:
        raise click.UsageError("--storage is the head's control store storage; use it with --head")
    if autoscaling_config is not None and not is_head:
        raise click.UsageError("--autoscaling-config runs the autoscaler beside the head; use it with --head")
    if port is not None and not is_head:
        raise click.UsageError("--port is the head's control store port; use it with --head")
    num_cpus, num_gpus, memory, resources = _override_resources(num_cpus, num_gpus, memory, resources)
    extra = local_cluster.node_args(num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                                    object_store_memory=object_store_memory, memory=memory, labels=labels)
    if is_head and standby:
        _start_standby(node_ip_address or "127.0.0.1", CONFIG.gcs_port if port is None else port, storage,
                       token_file, block)
        return
    if is_head:
        host = node_ip_address or "127.0.0.1"
        dashboard = (dashboard_host, dashboard_port) if include_dashboard else None
        # A head whose storage a standby shares uses the cluster token given (--token-file or
        # EMBER_CLUSTER_TOKEN) so that both heads accept the same nodes and drivers.
        shared_token = session.read_token_file(token_file) if token_file else \
            (os.environ.get(session.TOKEN_ENV, "").encode() or None)
        _start_head(host, CONFIG.gcs_port if port is None else port, extra, block, dashboard,
                    storage or local_cluster.SESSION_FILE_STORAGE, supervise, client_server_port,
                    autoscaling_config, shared_token)
    else:
        assert address is not None
        _start_worker_node(address, token_file, node_ip_address, extra, block)
