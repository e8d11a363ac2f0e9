"""The autoscaler's part of ``ember status``: nodes by type, what waits and why, and spend.

The autoscaler publishes one JSON record in the control store's KV (namespace "autoscaler", key
"status") each second; when there is none (no autoscaler), nothing is printed.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

from ember.protocol import messages as m
from ember.shells.wire import rpc

_RULE = "-" * 63


class _NoCalls:
    def handle_message(self, conn: Any, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: Any) -> None:
        return None


async def fetch_status(address: str, token: bytes, timeout_s: float = 5.0) -> Optional[dict]:
    conn = await rpc.connect(address, token, _NoCalls(), "client", timeout_s)
    try:
        reply = await conn.request(m.KvGet("autoscaler", b"status"), timeout_s=timeout_s)
    finally:
        conn.close()
    return json.loads(reply.value) if reply.value else None


def _money(v: Any) -> str:
    return "-" if v is None else f"${float(v):.2f}"


def format_autoscaler(st: dict) -> str:
    out = ["", f"Autoscaler (cluster {st.get('cluster_name', '?')})", _RULE, "Nodes by type:"]
    by_type = st.get("nodes_by_type") or {}
    for name in sorted(by_type):
        counts = by_type[name]
        out.append(f" {name}: " + ", ".join(f"{counts[k]} {k}" for k in ("busy", "idle", "launching") if k in counts))
    if not by_type:
        out.append(" (none)")
    out.append("Waiting:")
    out += [f" {line}" for line in st.get("waiting") or []] or [" (nothing waits)"]
    b = st.get("budget") or {}
    period = f" per {b['period_hours']:g} h" if b.get("period_hours") else ""
    out += ["Spend:",
            f" rate {_money(st.get('rate_per_hour'))}/h (max {_money(b.get('max_cost_per_hour'))}/h)",
            f" spent {_money(st.get('spent'))}, forecast {_money(st.get('forecast'))} "
            f"(total {_money(b.get('total'))}{period})"]
    return "\n".join(out)


def autoscaler_text(address: str, token: bytes) -> str:
    try:
        st = asyncio.run(fetch_status(address, token))
    except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError):
        return ""
    return format_autoscaler(st) if st else ""
