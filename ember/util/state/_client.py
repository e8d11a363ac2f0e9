"""How the state API reaches a cluster: the driver's own connection, or a fresh one.

``run(work, address, timeout)`` runs ``await work(cluster)`` where ``cluster`` can ask the control
store (``ask_gcs``) and any node daemon (``ask_node``).  In a driver, worker or actor with no
``address`` it runs on that process's I/O loop with its connection and token; elsewhere it opens
a connection to ``address`` (else ``EMBER_ADDRESS``/``RAY_ADDRESS``, else the cluster recorded on
this machine) with the local token or ``EMBER_CLUSTER_TOKEN``.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any, Awaitable, Callable, Optional


class _NoCalls:
    def handle_message(self, conn: Any, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: Any) -> None:
        return None


class Cluster:
    def __init__(self, gcs_address: str, token: bytes, timeout: float, gcs_conn: Callable[[], Awaitable[Any]]) -> None:
        self.gcs_address = gcs_address
        self.token = token
        self.timeout = timeout
        self._gcs_conn = gcs_conn

    async def ask_gcs(self, msg: Any) -> Any:
        return await (await self._gcs_conn()).request(msg, timeout_s=self.timeout)

    async def ask_node(self, address: str, msg: Any) -> Any:
        from ember.shells.wire import rpc
        conn = await rpc.connect(address, self.token, _NoCalls(), "client", self.timeout)
        try:
            return await conn.request(msg, timeout_s=self.timeout)
        finally:
            conn.close()

    async def alive_nodes(self) -> list:
        from ember.protocol import messages as m
        return [n for n in (await self.ask_gcs(m.GetNodes())).nodes if n.is_alive]


def target_address(address: Optional[str]) -> str:
    from ember.shells.wire import session
    target = address or os.environ.get("EMBER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not target or target == "auto":
        current = session.read_current_cluster()
        if current is None:
            raise ConnectionError("no ember cluster is running on this machine; pass address='HOST:PORT'")
        target = str(current["address"])
    return target.split("://", 1)[-1]


def run(work: Callable[[Cluster], Awaitable[Any]], address: Optional[str], timeout: float) -> Any:
    from ember.shells.wire import rpc, session
    from ember.shells.worker import core_worker
    cw = core_worker._core_worker
    if cw is not None and address is None and not cw.is_shutdown:
        return cw.run_sync(work(Cluster(cw.gcs_address, cw.token, timeout, cw.gcs_conn)), timeout_s=None)
    target = target_address(address)
    token = session.find_token(target)

    async def fresh() -> Any:
        conn = await rpc.connect(target, token, _NoCalls(), "client", timeout)

        async def gcs_conn() -> Any:
            return conn
        try:
            return await work(Cluster(target, token, timeout, gcs_conn))
        finally:
            conn.close()
    return asyncio.run(fresh())


def request(msg: Any, address: Optional[str], timeout: float) -> Any:
    """One request to the control store."""
    async def ask(cluster: Cluster) -> Any:
        return await cluster.ask_gcs(msg)
    return run(ask, address, timeout)
