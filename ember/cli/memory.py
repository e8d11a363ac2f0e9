"""``ember memory``: the cluster's live objects, who holds them and where they are (Ray's ``ray memory``).

How the answer is gathered: the control store names the live nodes (``GetNodes``); each node
daemon is asked for ``GetMemoryInfo``: its store's figures and table, and the objects of every
driver and worker connected to it, which it asks in parallel (``ListProcessObjects``) and
waits for at most ``process_timeout_s``; a process that does not answer is named, not waited
for.  ``build_report`` joins the answers (plain code): a borrower's row takes the size,
location and call site of the owner's row, and an object in a node's store is ``SPILLED``
when that node's table says so.  ``format_*`` turn the report into text.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Optional, Union

import click

from ember.cli.status import cluster_token, fetch_nodes, format_bytes, resolve_address, token_options, token_refused
from ember.protocol import messages as m
from ember.shells.wire import rpc

_CONNECT_TIMEOUT_S = 5.0
_NODE_SLACK_S = 5.0             # a node's answer may take this long beyond its processes' timeout
_PROCESS_TIMEOUT_S = 5.0
_OBJECTS_PER_PROCESS_MAX = 100_000
_ON_DISK_STATES = frozenset({"SPILLED", "RESTORING"})

GROUP_BY = ("NODE_ADDRESS", "STACK_TRACE")
SORT_BY = ("PID", "OBJECT_SIZE", "REFERENCE_TYPE")
UNITS = {"B": 1, "KB": 10 ** 3, "MB": 10 ** 6, "GB": 10 ** 9}
REFERENCE_TYPES = ("LOCAL_REFERENCE", "PINNED_IN_MEMORY", "USED_BY_PENDING_TASK", "CAPTURED_IN_OBJECT",
                   "UNKNOWN_STATUS")
_COLUMNS = ("PID", "Type", "Object ID", "Size", "Owner", "Location", "Node", "Reference Type", "Call Site")


@dataclasses.dataclass
class ObjectRow:
    """One reference: a process (the holder) and an object it owns or borrows."""
    node_address: str           # the node daemon the holder is attached to
    pid: int
    kind: str                   # "driver" / "worker"
    object_id: str              # hex
    size_bytes: int
    owner_address: str
    owner_pid: Optional[int]
    location: str               # INLINE, STORE, SPILLED, PENDING, FAILED, UNKNOWN
    store_node: str             # the node whose store holds it ("" when not in a store)
    reference_type: str
    call_site: str


@dataclasses.dataclass
class NodeStore:
    node_id: str
    address: str
    used_bytes: int
    capacity_bytes: int
    num_objects: int
    spilled_bytes: int
    num_spilled_objects: int


@dataclasses.dataclass
class MemoryReport:
    rows: list[ObjectRow]
    stores: list[NodeStore]
    silent_nodes: list[tuple[str, str]]              # (node address, why)
    silent_processes: list[tuple[str, int, str, str, str]]  # (node address, pid, kind, address, why)
    cut_processes: list[tuple[int, int, int]]        # (pid, rows listed, rows it has)


# --- gathering ------------------------------------------------------------------------------
class _NoCalls:
    """An rpc handler for a client that only sends requests."""

    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: rpc.Connection) -> None:
        return None


async def _ask_node(node: m.NodeInfo, token: bytes, request: m.GetMemoryInfo) -> Union[m.NodeMemoryInfo, str]:
    try:
        conn = await rpc.connect(node.address, token, _NoCalls(), "cli", _CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, rpc.ConnectionLost) as exc:
        return f"unreachable ({exc or type(exc).__name__})"
    try:
        reply = await conn.request(request, timeout_s=request.process_timeout_s + _NODE_SLACK_S)
    except (TimeoutError, rpc.ConnectionLost) as exc:
        return f"no answer ({exc or type(exc).__name__})"
    except rpc.RpcError as exc:
        return f"refused: {exc.message}"
    finally:
        conn.close()
    return reply if isinstance(reply, m.NodeMemoryInfo) else f"unexpected reply {type(reply).__name__}"


async def fetch_memory_info(gcs_address: str, token: bytes, *, include_objects: bool = True,
                            process_timeout_s: float = _PROCESS_TIMEOUT_S,
                            objects_max: int = _OBJECTS_PER_PROCESS_MAX,
                            ) -> list[tuple[m.NodeInfo, Union[m.NodeMemoryInfo, str]]]:
    """Every live node with its ``NodeMemoryInfo``, or why it gave none."""
    nodes = [n for n in await fetch_nodes(gcs_address, token, _CONNECT_TIMEOUT_S) if n.is_alive]
    request = m.GetMemoryInfo(include_objects, float(process_timeout_s), int(objects_max))
    answers = await asyncio.gather(*(_ask_node(n, token, request) for n in nodes))
    return list(zip(nodes, answers))


# --- joining (plain code) ---------------------------------------------------------------------
def _store_location(object_id: bytes, node_address: str, tables: dict[str, dict[bytes, str]]) -> str:
    table = tables.get(node_address)
    if table is None:
        return "STORE"  # that node did not answer: the owner's record is all we know
    state = table.get(object_id)
    if state is None:
        return "UNKNOWN"  # freed, or its node lost it
    return "SPILLED" if state in _ON_DISK_STATES else "STORE"


def _location(status: str, is_inline: bool, node_address: str, object_id: bytes,
              tables: dict[str, dict[bytes, str]]) -> tuple[str, str]:
    if status == "PENDING":
        return "PENDING", ""
    if status == "FAILED":
        return "FAILED", ""
    if is_inline:
        return "INLINE", ""
    if node_address:
        return _store_location(object_id, node_address, tables), node_address
    return "UNKNOWN", ""


def build_report(answers: list[tuple[m.NodeInfo, Union[m.NodeMemoryInfo, str]]]) -> MemoryReport:
    """Join the nodes' answers into one row per (process, object)."""
    report = MemoryReport([], [], [], [], [])
    tables: dict[str, dict[bytes, str]] = {}
    holders: list[tuple[str, m.ProcessObjects]] = []
    for node, info in answers:
        if isinstance(info, str):
            report.silent_nodes.append((node.address, info))
            continue
        report.stores.append(NodeStore(info.node_id.hex(), node.address, info.store_used_bytes,
                                       info.store_capacity_bytes, info.store_objects,
                                       info.store_spilled_bytes, info.store_spilled_objects))
        tables[node.address] = {bytes(e[0]): str(e[1]) for e in info.store_entries}
        for pid, address, kind, why in info.unanswered:
            report.silent_processes.append((node.address, int(pid), str(kind), str(address), str(why)))
        for proc in info.processes:
            holders.append((node.address, proc))
            if proc.num_objects > len(proc.objects):
                report.cut_processes.append((proc.pid, len(proc.objects), proc.num_objects))
    pids = {proc.address: proc.pid for _, proc in holders}
    owned: dict[bytes, list[Any]] = {}  # object id -> the owner's raw row
    for _, proc in holders:
        for raw in proc.objects:
            if raw[1] == proc.address:
                owned[bytes(raw[0])] = raw
    for node_address, proc in holders:
        for raw in proc.objects:
            report.rows.append(_row(node_address, proc, raw, owned, pids, tables))
    return report


def _row(node_address: str, proc: m.ProcessObjects, raw: list[Any], owned: dict[bytes, list[Any]],
         pids: dict[str, int], tables: dict[str, dict[bytes, str]]) -> ObjectRow:
    object_id, owner, size_bytes, status, is_inline, store_node, ref_type, call_site = raw
    object_id = bytes(object_id)
    source = owned.get(object_id)
    if source is not None and not status:  # a borrowed ref with no local record: the owner knows
        size_bytes, status, is_inline, store_node = source[2], source[3], source[4], source[5]
    if source is not None and not call_site:
        call_site = source[7]
    location, store_node = (_location(status, bool(is_inline), store_node, object_id, tables)
                            if status else ("UNKNOWN", ""))
    return ObjectRow(node_address, proc.pid, proc.kind, object_id.hex(), int(size_bytes), owner,
                     pids.get(owner), location, store_node, ref_type, call_site or "(unknown)")


# --- formatting (plain code) ------------------------------------------------------------------
def format_size(size_bytes: float, units: str = "B") -> str:
    """Object sizes in the chosen unit (decimal, as Ray's ``--units``): ``77 B``, ``1.05 MB``."""
    if units == "B":
        return f"{int(size_bytes)} B"
    return f"{size_bytes / UNITS[units]:.2f} {units}"


def _sort_key(sort_by: str) -> Any:
    if sort_by == "PID":
        return lambda r: (r.pid, -r.size_bytes, r.object_id)
    if sort_by == "REFERENCE_TYPE":
        return lambda r: (r.reference_type, -r.size_bytes, r.object_id)
    return lambda r: (-r.size_bytes, r.pid, r.object_id)


def group_rows(rows: list[ObjectRow], group_by: str, sort_by: str) -> list[tuple[str, list[ObjectRow]]]:
    """Rows by node address of the holder (or by call site), each group sorted; groups by name."""
    groups: dict[str, list[ObjectRow]] = {}
    for row in rows:
        key = row.call_site if group_by == "STACK_TRACE" else row.node_address
        groups.setdefault(key, []).append(row)
    return [(key, sorted(groups[key], key=_sort_key(sort_by))) for key in sorted(groups)]


def _cells(row: ObjectRow, units: str) -> list[str]:
    owner = f"{row.owner_pid} ({row.owner_address})" if row.owner_pid is not None else row.owner_address or "-"
    return [str(row.pid), row.kind.upper(), row.object_id, format_size(row.size_bytes, units), owner,
            row.location, row.store_node or "-", row.reference_type, row.call_site]


def _table(lines: list[list[str]], no_format: bool) -> list[str]:
    if no_format:
        return ["\t".join(cells) for cells in lines]
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(lines[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in lines]


def _summary(rows: list[ObjectRow], units: str, no_format: bool) -> list[str]:
    sizes = {r.object_id: r.size_bytes for r in rows}
    counts = {t: sum(1 for r in rows if r.reference_type == t) for t in REFERENCE_TYPES}
    head = ["Mem used by objects", "Local references", "Pinned", "Used by task", "Captured in objects",
            "Unknown"]
    values = [format_size(sum(sizes.values()), units)] + [str(counts[t]) for t in REFERENCE_TYPES]
    return _table([head, values], no_format)


def format_objects(report: MemoryReport, *, group_by: str = "NODE_ADDRESS", sort_by: str = "OBJECT_SIZE",
                   units: str = "B", num_entries: Optional[int] = None, no_format: bool = False,
                   now_s: Optional[float] = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if now_s is None else now_s))
    what = "node address" if group_by == "NODE_ADDRESS" else "call site"
    shown = "all" if num_entries is None else str(num_entries)
    out = [f"======== Object references status: {stamp} ========",
           f"Grouping by {what}...  Sorting by {sort_by.lower().replace('_', ' ')}...  "
           f"Showing {shown} entries per group...", ""]
    groups = group_rows(report.rows, group_by, sort_by)
    if not groups:
        out.append("(no live objects)")
    for key, rows in groups:
        out.append(f"--- Summary for {what}: {key} ---")
        out += _summary(rows, units, no_format)
        out.append(f"--- Object references for {what}: {key} ---")
        listed = rows if num_entries is None else rows[:num_entries]
        out += _table([list(_COLUMNS)] + [_cells(r, units) for r in listed], no_format)
        if len(listed) < len(rows):
            out.append(f"({len(rows) - len(listed)} more not shown: --num-entries)")
        out.append("")
    for pid, listed_count, total in report.cut_processes:
        out.append(f"Note: process {pid} has {total} objects; its {listed_count} largest are listed.")
    out += _silence_lines(report)
    out.append(format_stats(report))
    return "\n".join(out)


def _silence_lines(report: MemoryReport) -> list[str]:
    out = []
    for address, why in report.silent_nodes:
        out.append(f"Node {address} did not answer: {why}; its objects are not listed.")
    for node_address, pid, kind, address, why in report.silent_processes:
        out.append(f"Process {pid} ({kind} {address or '?'}, node {node_address}) did not answer: {why}; "
                   "its objects are not listed.")
    return out + ([""] if out else [])


def _percent(used_bytes: int, capacity_bytes: int) -> str:
    return f"{100.0 * used_bytes / capacity_bytes:.1f}%" if capacity_bytes else "-"


def format_stats(report: MemoryReport) -> str:
    """Per node and in total: store memory used of capacity, objects, spilled (Ray's --stats-only)."""
    out = ["--- Object store stats per node ---"]
    for s in sorted(report.stores, key=lambda s: s.address):
        out.append(f"{s.address} (node_{s.node_id}): {format_bytes(s.used_bytes)} used of "
                   f"{format_bytes(s.capacity_bytes)} ({_percent(s.used_bytes, s.capacity_bytes)} full), "
                   f"{s.num_objects} objects; spilled {format_bytes(s.spilled_bytes)}, "
                   f"{s.num_spilled_objects} objects on disk only")
    for address, why in report.silent_nodes:
        out.append(f"{address}: did not answer ({why})")
    used = sum(s.used_bytes for s in report.stores)
    capacity = sum(s.capacity_bytes for s in report.stores)
    out += ["--- Aggregate object store stats across all nodes ---",
            f"Store memory usage {format_bytes(used)} of {format_bytes(capacity)} "
            f"({_percent(used, capacity)} full), {sum(s.num_objects for s in report.stores)} objects",
            f"Spilled {format_bytes(sum(s.spilled_bytes for s in report.stores))}, "
            f"{sum(s.num_spilled_objects for s in report.stores)} objects on disk only"]
    return "\n".join(out)


# --- the command ----------------------------------------------------------------------------------
@click.command("memory")
@click.option("--address", default=None, help="HOST:PORT of the control store (default: the cluster running here).")
@token_options
@click.option("--group-by", type=click.Choice(GROUP_BY, case_sensitive=False), default="NODE_ADDRESS",
              show_default=True, help="Group references by the holder's node or by call site.")
@click.option("--sort-by", type=click.Choice(SORT_BY, case_sensitive=False), default="OBJECT_SIZE",
              show_default=True, help="Order of the references within a group.")
@click.option("--units", type=click.Choice(tuple(UNITS), case_sensitive=False), default="B", show_default=True,
              help="Unit of object sizes (decimal: 1 KB = 1000 B).")
@click.option("--no-format", is_flag=True, default=False, help="Tab-separated rows, no column alignment.")
@click.option("--stats-only", is_flag=True, default=False, help="Only the object store figures of each node.")
@click.option("--num-entries", type=click.IntRange(min=0), default=None,
              help="At most this many references per group (default: all).")
@click.option("--process-timeout", type=float, default=_PROCESS_TIMEOUT_S, hidden=True,
              help="Seconds a node waits for each of its processes.")
def memory(address: Optional[str], token_file: Optional[str], group_by: str, sort_by: str, units: str,
           no_format: bool, stats_only: bool, num_entries: Optional[int], process_timeout: float) -> None:
    """List the cluster's live objects: size, owner, location (INLINE, STORE, SPILLED) and reference type.

    Call sites are recorded only in processes started with EMBER_RECORD_REF_CREATION_SITES=1.
    """
    gcs_address = resolve_address(address)
    token, source = cluster_token(gcs_address, token_file)
    try:
        answers = asyncio.run(fetch_memory_info(gcs_address, token, include_objects=not stats_only,
                                                process_timeout_s=process_timeout))
    except rpc.TokenRefused:
        raise token_refused(gcs_address, source) from None
    except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError) as exc:
        raise click.ClickException(
            f"could not reach the ember control store at {gcs_address} ({exc or type(exc).__name__}). "
            "Is the cluster running? Start one with `ember start --head`.") from None
    report = build_report(answers)
    if stats_only:
        click.echo(format_stats(report))
        return
    click.echo(format_objects(report, group_by=group_by.upper(), sort_by=sort_by.upper(), units=units.upper(),
                              num_entries=num_entries, no_format=no_format))
