"""``ember status``: the cluster's nodes, resource usage, pending demands and object stores.

It asks the control store for its node table (``GetNodes``) over one short-lived
connection; ``format_status`` turns the answer into text and is plain code.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Optional

import click

from ember.logic.discovery import JoinCluster, NotFound
from ember.protocol import messages as m
from ember.shells.wire import discovery, rpc
from ember.shells.wire import session

_CONNECT_TIMEOUT_S = 5.0
_RULE = "-" * 63


class _NoCalls:
    """An rpc handler for a client that only sends requests."""

    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: rpc.Connection) -> None:
        return None


async def _connect_head(address: str, token: bytes, timeout_s: float) -> rpc.Connection:
    """The leading head among ``address`` (one, or several comma-separated: issue #11)."""
    from ember.shells.wire.leader import connect_leader
    conn, _ = await connect_leader(address, token, _NoCalls(), "client", timeout_s)
    return conn


async def fetch_head_role(address: str, token: bytes, timeout_s: float = _CONNECT_TIMEOUT_S) -> Optional[m.HeadRole]:
    """Which head leads, its epoch and the standbys (None from a head that does not say)."""
    from ember.shells.wire.leader import who_leads
    conn = await _connect_head(address, token, timeout_s)
    try:
        return await who_leads(conn, timeout_s)
    finally:
        conn.close()


def head_lines(role: Optional[m.HeadRole]) -> list[str]:
    if role is None:
        return []
    out = ["", "Head", _RULE, f" Leader: {role.leader_address or role.head_address} (epoch {role.epoch})"]
    out += [f" Standby: {a} (seen {seen:.1f} s ago)" for a, seen in role.standbys] or [" (no standby head)"]
    return out


async def fetch_nodes(address: str, token: bytes, timeout_s: float = _CONNECT_TIMEOUT_S) -> list[m.NodeInfo]:
    conn = await _connect_head(address, token, timeout_s)
    try:
        reply = await conn.request(m.GetNodes(), timeout_s=timeout_s)
    finally:
        conn.close()
    return list(reply.nodes)


async def fetch_placement_groups(address: str, token: bytes,
                                 timeout_s: float = _CONNECT_TIMEOUT_S) -> list[m.PlacementGroupInfo]:
    conn = await _connect_head(address, token, timeout_s)
    try:
        reply = await conn.request(m.ListPlacementGroups(), timeout_s=timeout_s)
    finally:
        conn.close()
    return list(reply.groups)


def _group_lines(groups: list[m.PlacementGroupInfo]) -> list[str]:
    """One line per group that is not removed: id, name, strategy, state and bundles."""
    live = [g for g in groups if g.state != "REMOVED"]
    if not live:
        return [" (no placement groups)"]
    out = []
    for g in live:
        name = f" {g.name!r}" if g.name else ""
        bundles = ", ".join("{" + ", ".join(f"{k}: {float(v)}" for k, v in sorted(b.items())) + "}"
                            for b in g.bundles)
        detached = " detached" if g.is_detached else ""
        out.append(f" pg_{g.pg_id.hex()}{name} {g.strategy} {g.state}{detached} [{bundles}]")
    removed = len(groups) - len(live)
    if removed:
        out.append(f" ({removed} removed)")
    return out


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
            if "_group_" in name:  # a placement group's bundle resources: listed under "Placement groups"
                continue
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
            key = _shape_text(shape)
            counts[key] = counts.get(key, 0) + count
    if not counts:
        return [" (no resource demands)"]
    return [f" {key}: {count}+ pending tasks/actors" for key, count in sorted(counts.items())]


def _shape_text(shape: dict) -> str:
    """A demanded shape; a placement group's bundle resources read as the plain resource and the
    group (``CPU_group_<i>_<pg>`` -> ``'CPU': 1.0`` ... ``in placement group <pg>``)."""
    plain: dict[str, float] = {}
    in_group: dict[str, float] = {}      # the wildcard form CPU_group_<pg>, else an indexed CPU_group_<i>_<pg>
    groups: set[str] = set()
    for name, value in shape.items():
        base, sep, rest = str(name).partition("_group_")
        if not sep:
            plain[name] = float(value)
            continue
        groups.add(rest.rpartition("_")[2][:8])
        if base != "bundle" and ("_" not in rest or base not in in_group):
            in_group[base] = float(value)
    plain.update({k: v for k, v in in_group.items() if k not in plain})
    text = "{" + ", ".join(f"{k!r}: {float(v)}" for k, v in sorted(plain.items())) + "}"
    return text + (f" in placement group {', '.join(sorted(groups))}" if groups else "")


def _node_line(node: m.NodeInfo) -> str:
    role = " (head)" if node.is_head else ""
    return f"  node_{node.node_id.hex()}  {node.address}{role}"


def format_status(nodes: list[m.NodeInfo], now_s: float, address: str = "",
                  stats: Optional[dict[bytes, m.NodeStatsReply]] = None,
                  groups: Optional[list[m.PlacementGroupInfo]] = None) -> str:
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
    if groups is not None:
        out += ["", "Placement groups", _RULE]
        out += _group_lines(groups)
    return "\n".join(out)


def resolve_address(address: Optional[str]) -> str:
    """--address, else EMBER_ADDRESS/RAY_ADDRESS, else the running cluster of this machine: the head
    of `ember start --head`, else the one cluster a driver's `init()` started (Ray's "auto")."""
    try:
        decision = discovery.resolve(address or "auto")
    except session.UnsafeSessionRoot as exc:
        raise click.ClickException(str(exc)) from None
    if isinstance(decision, JoinCluster):
        return decision.address
    if isinstance(decision, NotFound) and decision.message.startswith("Found multiple"):
        raise click.ClickException(decision.message.replace("`address`", "--address"))
    raise click.ClickException(
        f"no ember cluster is running on this machine (none recorded under {session.root()}). Start one with "
        "`ember start --head`, or pass --address HOST:PORT.")


def cluster_token(gcs_address: str, token_file: Optional[str]) -> tuple[bytes, str]:
    """The token for ``gcs_address`` and where it was read from; a ClickException when there is none."""
    try:
        return session.find_token_and_source(gcs_address, token_file=token_file)
    except (ConnectionError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def token_refused(gcs_address: str, source: str) -> click.ClickException:
    return click.ClickException(
        f"the ember control store at {gcs_address} refused the cluster token read from {source}: it belongs "
        f"to another cluster. Pass --token-file with that cluster's token file, or set {session.TOKEN_ENV}.")


TOKEN_FILE_HELP = (f"File holding the cluster token (default: ${session.TOKEN_ENV}, else the token file of the "
                   "cluster's session on this machine). The token is never taken on the command line, where "
                   "`ps` would show it.")


def refuse_token_option(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> None:
    if value is not None:
        raise click.BadParameter(
            f"is no longer accepted: a token on the command line is visible to every local user in `ps`. "
            f"Use --token-file FILE or the environment variable {session.TOKEN_ENV}.", ctx, param)


def token_options(fn: Any) -> Any:
    """``--token-file`` and a hidden ``--token`` that explains why it is refused."""
    fn = click.option("--token", hidden=True, expose_value=False, callback=refuse_token_option)(fn)
    return click.option("--token-file", default=None, type=click.Path(dir_okay=False), help=TOKEN_FILE_HELP)(fn)


@click.command("status")
@click.option("--address", default=None, help="HOST:PORT of the control store (default: the cluster running here).")
@token_options
def status(address: Optional[str], token_file: Optional[str]) -> None:
    """Print the cluster's nodes, resource usage, pending demands and object store usage."""
    gcs_address = resolve_address(address)
    cluster_token_value, source = cluster_token(gcs_address, token_file)
    try:
        nodes = asyncio.run(fetch_nodes(gcs_address, cluster_token_value))
    except rpc.TokenRefused:
        raise token_refused(gcs_address, source) from None
    except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError) as exc:
        raise click.ClickException(
            f"could not reach the ember control store at {gcs_address} ({exc or type(exc).__name__}). "
            "Is the cluster running? Start one with `ember start --head`.") from None
    stats = asyncio.run(fetch_store_stats(nodes, cluster_token_value))
    try:
        groups: Optional[list[m.PlacementGroupInfo]] = asyncio.run(
            fetch_placement_groups(gcs_address, cluster_token_value))
    except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError):
        groups = None
    click.echo(format_status(nodes, time.time(), gcs_address, stats, groups))
    try:
        role = asyncio.run(fetch_head_role(gcs_address, cluster_token_value))
    except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError):
        role = None
    for line in head_lines(role):
        click.echo(line)
    from ember.cli.autoscaler_status import autoscaler_text   # the autoscaler's section, when one runs
    extra = autoscaler_text(gcs_address, cluster_token_value)
    if extra:
        click.echo(extra)
