"""The core worker's link to the control store (the head), and what happens when it breaks.

Runs on the core worker's I/O thread.  ``conn()`` is how every part of the core worker
reaches the control store.  When the connection breaks (the head was killed, its machine
went away), the loss is logged once and the link reconnects to the same address with
backoff for ``gcs_reconnect_timeout_s`` (Ray's ``gcs_rpc_server_reconnect_timeout_s``, 60 s):

- meanwhile nothing that does not need the head stops: tasks go to leased workers and
  through the node daemon, calls go to actors whose address is known;
- a call that needs the head (actor creation and lookups, named actors, learning where a
  restarted actor went) waits for the reconnection, at most until the window ends;
- if the head comes back at the same address within the window, the link re-registers
  what this process had asked of the old connection (its subscriptions, through
  ``reconnected_hooks``) and everything carries on (a restarted head that lost its tables
  is the durable-head issue's to handle);
- a head that keeps its connection open but answers nothing (paused with SIGSTOP, a stalled VM)
  is watched while requests to it are pending: ``_watch_silence`` pings it every
  ``_SILENCE_PING_S``; silent for ``gcs_reconnect_timeout_s`` it counts as lost exactly like a
  closed one (the pending requests fail with :class:`HeadUnreachableError`, nothing waits forever);
- past the window the head counts as lost for good: ``conn()`` raises
  :class:`HeadUnreachableError` at once, ``lost_hooks`` fail what waits on the head, and
  the loss is logged once more.  (The node daemons exit at the same time, as Ray's raylets
  do, so the tasks of this node fail with ``LocalRayletDiedError``.)
"""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from typing import Any, Callable, Optional

from ember import exceptions as exc
from ember.config import CONFIG
from ember.protocol import messages as m
from ember.shells.wire import rpc
from ember.shells.wire.leader import connect_leader, split_addresses

log = logging.getLogger("ember.core_worker")

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 0.5  # a standby head takes over within a few seconds: look for it often
_SILENCE_PING_S = 1.0   # how often a head with pending requests is asked for a sign of life


class HeadUnreachableError(exc.RaySystemError, ConnectionError):
    """The control store (head) could not be reached within ``gcs_reconnect_timeout_s``.

    A ``RaySystemError`` for users; also a ``ConnectionError`` so that code catching
    connection failures (``OSError``) handles it as one."""

    def __init__(self, gcs_address: str, lost_for_s: float, is_silent: bool = False) -> None:
        how = ("it kept its connection open but answered nothing" if is_silent
               else "the connection was lost") + f" {lost_for_s:.0f} s ago and "
        how += "stayed silent" if is_silent else "reconnecting failed"
        super().__init__(
            f"The control store (head) at {gcs_address} is unreachable: {how} for gcs_reconnect_timeout_s="
            f"{CONFIG.gcs_reconnect_timeout_s:g} s. This call needs the head. Without a durable head "
            "a lost head cannot come back: restart the cluster (see docs/fault_tolerance.md).")


class HeadLink:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.lost_at: Optional[float] = None            # when the current outage began (monotonic)
        self.lost_error: Optional[HeadUnreachableError] = None  # set once the window has passed
        self._back: Optional[asyncio.Event] = None      # set when the outage ends (either way)
        self._reconnect_task: Optional[asyncio.Task] = None
        self._silence_task: Optional[asyncio.Task] = None
        self.reconnected_hooks: list[Callable[[rpc.Connection], Any]] = []  # may return a coroutine
        self.lost_hooks: list[Callable[[BaseException], None]] = []
        self.leader_address = ""  # the head (of several addresses) that led when last connected
        self.known_heads: list[str] = []  # heads learned from the leader (its standbys), tried too
        cw.connection_lost_hooks.append(self._on_connection_lost)

    @property
    def is_out(self) -> bool:
        return self.lost_at is not None or self.lost_error is not None

    async def conn(self) -> rpc.Connection:
        """The connection to the control store; during an outage, wait for it (bounded)."""
        cw = self.cw
        gcs = cw.gcs
        if gcs is not None and not gcs.closed:
            if self._silence_task is None:
                self._silence_task = cw.spawn(self._watch_silence())
            return gcs
        if self.lost_error is not None:
            raise self.lost_error
        if self.lost_at is None:  # first use in this process (workers connect lazily)
            try:
                cw.gcs, self.leader_address = await connect_leader(cw.gcs_address, cw.token, cw, cw.mode,
                                                                   CONFIG.connect_timeout_s, known=self.known_heads)
                return cw.gcs
            except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError) as e:
                self._outage_began(e)
        return await self.wait_back()

    async def wait_back(self) -> rpc.Connection:
        """Wait until the outage ends: the connection, or HeadUnreachableError."""
        assert self._back is not None and self.lost_at is not None
        left_s = self.lost_at + CONFIG.gcs_reconnect_timeout_s - time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, left_s) + 1.0):  # the reconnect loop decides first
                await self._back.wait()
        except TimeoutError:
            pass
        gcs = self.cw.gcs
        if gcs is not None and not gcs.closed:
            return gcs
        raise self.lost_error or HeadUnreachableError(self.cw.gcs_address, time.monotonic() - self.lost_at)

    async def request(self, msg: Any, timeout_s: Optional[float] = None) -> Any:
        """An idempotent request to the head (a lookup, a kill): if the connection breaks under it
        (the head died, stepped down: ``NotLeader``) it is sent again once the link is back."""
        while True:
            conn = await self.conn()
            try:
                return await conn.request(msg, timeout_s=timeout_s)
            except rpc.ConnectionLost:
                await asyncio.sleep(0.05)  # the loss is being noticed: conn() then waits for the link
            except rpc.RpcError as e:
                if e.kind != "NotLeader":
                    raise
                # suspended (it may serve again) or stepping down (it then drops its connections)
                await asyncio.sleep(0.2)

    def start_watch(self) -> None:
        """A driver checks every second that its head still answers; one that does not while
        another head leads (a partition cut it off: its connection neither answers nor closes)
        is dropped, and the link reconnects to the leader."""
        self.cw.spawn(self._watch())

    async def _watch(self) -> None:
        from ember.shells.wire.leader import leads_elsewhere
        cw = self.cw
        while not cw.is_shutdown:
            await asyncio.sleep(1.0)
            conn = cw.gcs
            if conn is None or conn.closed or self.is_out:
                continue
            try:
                role = await conn.request(m.WhoLeads(), timeout_s=CONFIG.head_lease_ttl_s)
                for address, _ in role.standbys:  # a standby started after this driver
                    if address not in self.known_heads:
                        self.known_heads.append(str(address))
                continue
            except (rpc.RpcError, rpc.ConnectionLost, TimeoutError, OSError):
                pass
            if len(set(self.known_heads) | set(split_addresses(cw.gcs_address))) < 2:
                continue  # one head: nobody else can lead
            if conn is cw.gcs and await leads_elsewhere(conn, cw.gcs_address, cw.token, self.leader_address,
                                                        self.known_heads, CONFIG.head_lease_ttl_s):
                (log.warning if cw.mode == "driver" else log.info)(
                    "The control store (head) at %s stopped answering and another head leads now.",
                    self.leader_address)
                conn.abort()  # a cut-off peer never drains what close() would flush

    async def rejoin_job(self, conn: rpc.Connection) -> None:
        """A driver's reconnected hook: re-attach its job to the new connection (the job then
        ends when it closes; a store that lost the job records it again) and follow the job's
        logs again."""
        cw = self.cw
        await conn.request(m.RejoinJob(cw.job_id, cw.address, os.getpid(), cw.namespace, cw.node_id,
                                       " ".join(sys.argv)[:200]))
        if cw.log_to_driver:
            await conn.request(m.Subscribe("logs", cw.job_id))

    async def _watch_silence(self) -> None:
        """While requests to the head are pending, ask it for a sign of life; a head silent for
        ``gcs_reconnect_timeout_s`` (a paused one keeps its sockets open) counts as lost."""
        cw = self.cw
        period_s = min(_SILENCE_PING_S, max(0.05, CONFIG.gcs_reconnect_timeout_s / 4))
        heard_s = time.monotonic()
        while not cw.is_shutdown and self.lost_error is None:
            await asyncio.sleep(period_s)
            gcs = cw.gcs
            if gcs is None or gcs.closed or gcs.pending_count == 0:
                heard_s = time.monotonic()
                continue
            try:
                async with asyncio.timeout(period_s):
                    await gcs.request(m.GetNodes())
                heard_s = time.monotonic()
            except TimeoutError:  # before OSError: TimeoutError is one
                if time.monotonic() - heard_s >= CONFIG.gcs_reconnect_timeout_s:
                    self._silent_head_lost(gcs, heard_s)
                    return
            except (rpc.ConnectionLost, rpc.RpcError, OSError):
                heard_s = time.monotonic()  # a closed connection is the outage path's to handle

    def _silent_head_lost(self, gcs: rpc.Connection, heard_s: float) -> None:
        cw = self.cw
        self.lost_at = heard_s
        self.lost_error = HeadUnreachableError(cw.gcs_address, time.monotonic() - heard_s, is_silent=True)
        log.error("The control store (head) at %s answered nothing for %g s (paused or stalled; "
                  "gcs_reconnect_timeout_s): it counts as lost, calls that need it now fail with RaySystemError.",
                  cw.gcs_address, CONFIG.gcs_reconnect_timeout_s)
        if self._back is None:
            self._back = asyncio.Event()
        self._back.set()
        gcs.fail_pending(self.lost_error)
        gcs.abort()
        for hook in self.lost_hooks:
            hook(self.lost_error)

    # --- I/O thread ------------------------------------------------------------------------------
    def _on_connection_lost(self, conn: rpc.Connection) -> None:
        if conn is self.cw.gcs and not self.cw.is_shutdown:
            self._outage_began(rpc.ConnectionLost(f"connection to {self.leader_address or self.cw.gcs_address} lost"))

    def _outage_began(self, cause: BaseException) -> None:
        if self.lost_at is not None or self.lost_error is not None:
            return
        self.lost_at = time.monotonic()
        self._back = asyncio.Event()
        # a driver's user sees it; a worker's would reach that user once per worker (through its log)
        say = log.warning if self.cw.mode == "driver" else log.info
        say("Lost the connection to the control store (head) at %s (%s). Reconnecting for up to %g s "
                    "(gcs_reconnect_timeout_s); meanwhile tasks on leased workers and calls to actors with a "
                    "known address go on, and calls that need the head wait.", self.cw.gcs_address, cause,
                    CONFIG.gcs_reconnect_timeout_s)
        self._reconnect_task = self.cw.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        cw = self.cw
        assert self.lost_at is not None and self._back is not None
        deadline = self.lost_at + CONFIG.gcs_reconnect_timeout_s
        delay_s = _BACKOFF_FIRST_S
        while not cw.is_shutdown:
            try:
                conn, self.leader_address = await connect_leader(cw.gcs_address, cw.token, cw, cw.mode,
                                                                 CONFIG.connect_timeout_s, self.leader_address,
                                                                 self.known_heads)
            except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError):
                left_s = deadline - time.monotonic()
                if left_s <= 0:
                    break
                await asyncio.sleep(min(delay_s, left_s))
                delay_s = min(delay_s * 2, _BACKOFF_MAX_S)
                continue
            await self._reconnected(conn)
            return
        if cw.is_shutdown:
            return
        self.lost_error = HeadUnreachableError(cw.gcs_address, time.monotonic() - self.lost_at)
        log.error("The control store (head) at %s stayed unreachable for %g s: calls that need it now fail "
                  "with RaySystemError (without a durable head it cannot come back; restart the cluster).",
                  cw.gcs_address, CONFIG.gcs_reconnect_timeout_s)
        self._back.set()
        for hook in self.lost_hooks:
            hook(self.lost_error)

    async def _reconnected(self, conn: rpc.Connection) -> None:
        assert self._back is not None
        self.cw.gcs = conn
        self.lost_at = None
        (log.warning if self.cw.mode == "driver" else log.info)(
            "Reconnected to the control store (head) at %s.", self.leader_address or self.cw.gcs_address)
        for hook in self.reconnected_hooks:
            try:
                result = hook(conn)
                if asyncio.iscoroutine(result):
                    await result
            except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError) as e:
                log.warning("re-registering with the control store after reconnecting failed: %s", e)
        self._back.set()
