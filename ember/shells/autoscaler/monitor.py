"""The autoscaler process: every half second, the control store's node table in, the planner's orders out.

Run as ``python -m ember.shells.autoscaler.monitor --gcs-address A --token-file F --session-dir D
--config cluster.yaml``; prints ``READY 0`` once connected.  Started by ``ember up`` beside the head.
It keeps what the planner must not (time, idle clocks, spend) and publishes a status record in the
control store's KV (namespace "autoscaler", key "status") for ``ember status``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from ember.logic.autoscaler.config import ClusterConfig, parse_cluster_config
from ember.logic.autoscaler.model import NodeState, PlanInput
from ember.logic.autoscaler.planner import plan, running_rate
from ember.protocol import messages as m
from ember.shells.autoscaler.providers import make_provider
from ember.shells.autoscaler.providers.base import TAG_CLUSTER, TAG_NODE_TYPE
from ember.shells.wire import rpc, session

log = logging.getLogger("ember.autoscaler")
KV_NAMESPACE = "autoscaler"
REQUEST_KEY = b"resource_request"
STATUS_KEY = b"status"


class _NoCalls:
    def handle_message(self, conn: Any, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: Any) -> None:
        return None


def _idle(info: m.NodeInfo) -> bool:
    return not info.pending_demands and all(
        abs(info.resources_available.get(k, 0) - v) < 1e-9 for k, v in info.resources_total.items())


class Monitor:
    def __init__(self, config: ClusterConfig, provider, gcs_address: str, token: bytes, *,
                 interval_s: float = 0.5) -> None:
        self.config, self.provider = config, provider
        self.gcs_address, self.token, self.interval_s = gcs_address, token, interval_s
        self.idle_since: dict[bytes, float] = {}
        self.spent, self.period_start, self.last_tick = 0.0, time.time(), None
        self.creating: dict[int, str] = {}       # creation number -> node type (not yet answered)
        self._seq = 0
        self.conn: rpc.Connection | None = None

    async def _request(self, msg: Any) -> Any:
        if self.conn is None or self.conn.closed:
            self.conn = await rpc.connect(self.gcs_address, self.token, _NoCalls(), "client", 10.0)
        return await self.conn.request(msg, timeout_s=10.0)

    def _account(self, now: float, rate: float) -> float:
        """Spend so far in the budget period, at the rate of the last tick; returns hours left."""
        if self.last_tick is not None:
            self.spent += rate * (now - self.last_tick) / 3600.0
        self.last_tick = now
        period_h = self.config.budget.period_hours
        if period_h is None:
            return 0.0
        if now - self.period_start >= period_h * 3600.0:
            self.period_start, self.spent = now, 0.0
        return max(0.0, period_h - (now - self.period_start) / 3600.0)

    def _node_states(self, infos: list, by_address: dict, now: float) -> tuple:
        states, seen = [], set()
        for info in infos:
            if not info.is_alive:
                continue
            pn = by_address.get(info.address) or by_address.get(info.address.rpartition(":")[0])
            if _idle(info):
                self.idle_since.setdefault(info.node_id, now)
            else:
                self.idle_since.pop(info.node_id, None)
            managed = pn is not None
            states.append(NodeState(
                pn.provider_id if managed else info.node_id.hex(),
                pn.tags.get(TAG_NODE_TYPE, "") if managed else self.config.head_node_type,
                idle_since=self.idle_since.get(info.node_id), holds_only_copy=info.object_store_used_bytes > 0,
                is_head=not managed, available=dict(info.resources_available)))
            if managed:
                seen.add(pn.provider_id)
        starting: dict[str, int] = {}
        for pn in by_address.values():     # started by the provider, not registered yet
            if pn.provider_id not in seen:
                t = pn.tags.get(TAG_NODE_TYPE, "")
                starting[t] = starting.get(t, 0) + 1
                states.append(NodeState(pn.provider_id, t, launching=True))
        asked: dict[str, int] = {}          # create_node calls in flight the provider may not list yet
        for t in self.creating.values():
            asked[t] = asked.get(t, 0) + 1
        for t in sorted(asked):
            for i in range(max(0, asked[t] - starting.get(t, 0))):
                states.append(NodeState(f"creating-{t}-{i}", t, launching=True))
        return tuple(states)

    async def step(self) -> Any:
        now = time.time()
        infos = list((await self._request(m.GetNodes())).nodes)
        req = await self._request(m.KvGet(KV_NAMESPACE, REQUEST_KEY))
        requests = tuple(json.loads(req.value)) if req.value else ()
        pnodes = self.provider.non_terminated_nodes({TAG_CLUSTER: self.config.cluster_name})
        by_address = {pn.address or f"starting:{pn.provider_id}": pn for pn in pnodes}
        demands = tuple((dict(shape), n) for info in infos if info.is_alive for shape, n in info.pending_demands)
        groups = await self._pending_placement_groups()
        c = self.config
        inp = PlanInput(c.node_types, self._node_states(infos, by_address, now), demands, requests, c.budget,
                        c.max_workers, c.upscaling_speed, c.idle_timeout_minutes * 60.0, now, self.spent,
                        0.0, groups)
        hours_left = self._account(now, running_rate(inp))
        inp = PlanInput(**{**{f: getattr(inp, f) for f in inp.__dataclass_fields__},
                           "spent": self.spent, "period_hours_left": hours_left})
        p = plan(inp)
        for t in p.terminations:
            log.info("terminating %s (%s): %s", t.node_id, t.node_type, t.reason)
            self.provider.terminate_node(t.node_id)
        for ln in p.launches:
            self._launch(ln.node_type)
        await self._publish(inp, p)
        return p

    async def _pending_placement_groups(self) -> tuple:
        """(strategy, bundles not placed) of every group waiting for room: the planner's PG demand."""
        listed = await self._request(m.ListPlacementGroups())
        out = []
        for g in listed.groups:
            if g.state not in ("PENDING", "RESCHEDULING"):
                continue
            left = tuple(dict(b) for b, node in zip(g.bundles, g.bundle_nodes) if node is None)
            if left:
                out.append((g.strategy, left))
        return tuple(out)

    def _launch(self, node_type: str) -> None:
        self._seq += 1
        n = self._seq
        self.creating[n] = node_type
        t = self.config.node_type(node_type)
        tags = {TAG_CLUSTER: self.config.cluster_name, TAG_NODE_TYPE: node_type}
        log.info("launching a %s node", node_type)

        def done(fut: asyncio.Future) -> None:
            self.creating.pop(n, None)
            if fut.exception() is not None:
                log.warning("launching a %s node failed: %s", node_type, fut.exception())

        fut = asyncio.get_running_loop().run_in_executor(
            None, self.provider.create_node, node_type, t.resources, self.config.node_configs.get(node_type, {}), tags)
        fut.add_done_callback(done)

    async def _publish(self, inp: PlanInput, p: Any) -> None:
        by_type: dict = {}
        for n in inp.nodes:
            key = "launching" if n.launching else ("idle" if n.idle_since is not None else "busy")
            by_type.setdefault(n.node_type, {}).setdefault(key, 0)
            by_type[n.node_type][key] += 1
        b = self.config.budget
        status = {"cluster_name": self.config.cluster_name, "time": inp.now, "nodes_by_type": by_type,
                  "waiting": p.describe(), "rate_per_hour": p.rate_per_hour, "spent": self.spent,
                  "forecast": p.forecast, "budget": {"max_cost_per_hour": b.max_cost_per_hour, "total": b.total,
                                                     "period_hours": b.period_hours},
                  "launches": [ln.node_type for ln in p.launches],
                  "terminations": [t.node_id for t in p.terminations]}
        await self._request(m.KvPut(KV_NAMESPACE, STATUS_KEY, json.dumps(status).encode(), True))
        for line in p.describe():
            log.warning("autoscaler: %s", line)

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError) as exc:
                log.warning("autoscaler: control store unreachable: %s", exc)
                self.conn = None
            await asyncio.sleep(self.interval_s)


async def _main(args: argparse.Namespace) -> None:
    with open(args.config) as f:
        config = parse_cluster_config(f.read(), args.config)
    token = session.read_token(args.token_file)
    provider = make_provider(config.provider, gcs_address=args.gcs_address, session_dir=args.session_dir,
                             cluster_config=config)
    mon = Monitor(config, provider, args.gcs_address, token)
    await mon._request(m.GetNodes())
    print("READY 0", flush=True)
    await mon.run()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--session-dir", required=True)
    p.add_argument("--config", required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
