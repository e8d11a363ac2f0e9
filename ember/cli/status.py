"""``ember status``: the cluster's nodes, resource usage, pending demands and object stores.

It asks the control store for its node table (``GetNodes``) over one short-lived
connection; ``format_status`` turns the answer into text and is plain code.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Optional

import click

from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.wire import session

_CONNECT_TIMEOUT_S = 5.0
_RULE = "-" * 63


class _NoCalls:
    """An rpc handler for a client that only sends requests."""

    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: rpc.Connection) -> None:
        return None


async def fetch_nodes(address: str, token: bytes, timeout_s: float = _CONNECT_TIMEOUT_S) -> list[m.NodeInfo]:
    conn = await rpc.connect(address, token, _NoCalls(), "client", timeout_s)
    try:
        reply = await conn.request(m.GetNodes(), timeout_s=timeout_s)
    finally:
        conn.close()
    return list(reply.nodes)


async def fetch_store_stats(nodes: list[m.NodeInfo], token: bytes,
                            timeout_s: float = _CONNECT_TIMEOUT_S) -> dict[bytes, m.NodeStatsReply]:
    """Each live node's ``NodeStatsReply`` (object counts, spilled bytes); silent nodes are left out."""
    async def ask(node: m.NodeInfo) -> Optional[m.NodeStatsReply]:
        try:
            conn = await rpc.connect(node.address, token, _NoCalls(), "cli", timeout_s)
        except (OSError, TimeoutError, rpc.ConnectionLost):
            return None
        try:
            reply = await conn.request(m.NodeStats(), timeout_s=timeout_s)
        except (TimeoutError, rpc.ConnectionLost, rpc.RpcError):
            return None
        finally:
            conn.close()
        return reply if isinstance(reply, m.NodeStatsReply) else None

    replies = await asyncio.gather(*(ask(n) for n in nodes if n.is_alive))
    return {r.node_id: r for r in replies if r is not None}


def format_bytes(size_bytes: float) -> str:
    """Ray's style: 0B, 512.00KiB, 1.50GiB."""
    if size_bytes < 1024:
        return f"{int(size_bytes)}B"
    value = float(size_bytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.2f}{unit}"
    return f"{value:.2f}TiB"  # pragma: no cover


def _resource_lines(alive: list[m.NodeInfo], stats: Optional[dict[bytes, m.NodeStatsReply]] = None) -> list[str]:
    total: dict[str, float] = {}
    used: dict[str, float] = {}
    for node in alive:
        for name, amount in node.resources_total.items():
            total[name] = total.get(name, 0.0) + float(amount)
            free = max(0.0, float(node.resources_available.get(name, 0.0)))
            used[name] = used.get(name, 0.0) + max(0.0, float(amount) - free)
    order = [n for n in ("CPU", "GPU") if n in total] + sorted(n for n in total if n not in ("CPU", "GPU"))
    lines = []
    for name in order:
        if name == "memory":
            lines.append(f" {format_bytes(used[name])}/{format_bytes(total[name])} memory")
        else:
            lines.append(f" {used[name]:.1f}/{total[name]:.1f} {name}")
    store_used = sum(n.object_store_used_bytes for n in alive)
    store_capacity = sum(n.object_store_capacity_bytes for n in alive)
    lines.append(f" {format_bytes(store_used)}/{format_bytes(store_capacity)} object_store_memory")
    if stats:
        known = [stats[n.node_id] for n in alive if n.node_id in stats]
        lines.append(f" {sum(s.store_objects for s in known)} objects in object stores; "
                     f"{format_bytes(sum(s.store_spilled_bytes for s in known))} spilled "
                     f"({sum(s.store_spilled_objects for s in known)} objects on disk only)")
    return lines


def _demand_lines(alive: list[m.NodeInfo]) -> list[str]:
    counts: dict[str, int] = {}
    for node in alive:
        for demand in node.pending_demands or []:
            shape, count = demand[0], int(demand[1])
            key = "{" + ", ".join(f"{k!r}: {float(v)}" for k, v in sorted(shape.items())) + "}"
            counts[key] = counts.get(key, 0) + count
    if not counts:
        return [" (no resource demands)"]
    return [f" {key}: {count}+ pending tasks/actors" for key, count in sorted(counts.items())]


def _node_line(node: m.NodeInfo) -> str:
    role = " (head)" if node.is_head else ""
    return f"  node_{node.node_id.hex()}  {node.address}{role}"


def format_status(nodes: list[m.NodeInfo], now_s: float, address: str = "",
                  stats: Optional[dict[bytes, m.NodeStatsReply]] = None) -> str:
    alive = [n for n in nodes if n.is_alive]
    dead = [n for n in nodes if not n.is_alive]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now_s))
    out = [f"======== Cluster status: {stamp} ========"]
    if address:
        out.append(f"Control store: {address}")
    out += ["Node status", _RULE, "Active:"]
    out.append(f" {len(alive)} node(s)")
    out += [_node_line(n) for n in alive]
    out.append("Dead:")
    out += [_node_line(n) for n in dead] if dead else [" (no dead nodes)"]
    out += ["", "Resources", _RULE, "Usage:"]
    out += _resource_lines(alive, stats)
    out += ["", "Demands:"]
    out += _demand_lines(alive)
    return "\n".join(out)


def resolve_address(address: Optional[str]) -> str:
    """--address, else EMBER_ADDRESS/RAY_ADDRESS, else the head started on this machine."""
    address = address or os.environ.get("EMBER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if address and address != "auto":
        return address.split("://", 1)[-1]
    current = session.read_current_cluster()
    if current is None:
        raise click.ClickException(
            "no ember cluster is running on this machine (no current-cluster file at "
            f"{session.CURRENT_CLUSTER}). Start one with `ember start --head`, or pass --address HOST:PORT.")
    return str(current["address"])


@click.command("status")
@click.option("--address", default=None, help="HOST:PORT of the control store (default: the local head).")
@click.option("--token", default=None, envvar="EMBER_CLUSTER_TOKEN", show_envvar=True,
              help="Cluster token (default: the local head's token file).")
def status(address: Optional[str], token: Optional[str]) -> None:
    """Print the cluster's nodes, resource usage, pending demands and object store usage."""
    gcs_address = resolve_address(address)
    try:
        cluster_token = session.find_token(gcs_address, token)
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        nodes = asyncio.run(fetch_nodes(gcs_address, cluster_token))
    except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError) as exc:
        raise click.ClickException(
            f"could not reach the ember control store at {gcs_address} ({exc or type(exc).__name__}). "
            "Is the cluster running? Start one with `ember start --head`.") from None
    stats = asyncio.run(fetch_store_stats(nodes, cluster_token))
    click.echo(format_status(nodes, time.time(), gcs_address, stats))
    from ember.cli.autoscaler_status import autoscaler_text   # the autoscaler's section, when one runs
    extra = autoscaler_text(gcs_address, cluster_token)
    if extra:
        click.echo(extra)
