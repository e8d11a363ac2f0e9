"""Finding the head that leads among several addresses (issue #11, section 3).

Node daemons, drivers and workers may be given several head addresses
(``--address h1:6379,h2:6379``, ``ember.init(address="h1:6379,h2:6379")``).  ``connect_leader``
tries them in turn: it connects, asks ``WhoLeads`` and keeps the connection of the head that
leads; a standby or a deposed head names the leader, which is tried next (even when it is not
in the list: a standby started later is found that way).  A head too old to know ``WhoLeads``
counts as the leader.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional

from ember.protocol import messages as m
from ember.shells.wire import rpc


class NoLeader(ConnectionError):
    """None of the heads tried leads now (a failover may be under way)."""


def split_addresses(address: str) -> list[str]:
    """``"h1:6379, ember://h2:6379"`` -> ``["h1:6379", "h2:6379"]``."""
    out = []
    for part in address.split(","):
        part = part.strip().split("://", 1)[-1]
        if part and part not in out:
            out.append(part)
    return out


def first_address(address: str) -> str:
    parts = split_addresses(address)
    return parts[0] if parts else address


async def who_leads(conn: rpc.Connection, timeout_s: float) -> Optional[m.HeadRole]:
    """The head's answer, or None when it does not know the question (an older head)."""
    try:
        return await conn.request(m.WhoLeads(), timeout_s=timeout_s)
    except rpc.RpcError as e:
        if e.kind == "ValueError" and "does not handle" in e.message:
            return None
        raise


async def connect_leader(address: str, token: bytes, handler: Any, peer_kind: str,
                         timeout_s: float, preferred: str = "",
                         known: Optional[list[str]] = None,
                         seen: Optional[dict[str, Any]] = None, skip: str = "") -> tuple[rpc.Connection, str]:
    """A connection to the leading head among ``address`` (comma-separated) and the address it
    was reached at.  Raises the last connection error, or :class:`NoLeader`.  ``known``: head
    addresses learned earlier, tried after the given ones and extended with the standbys the
    leader names (so a process given one address still finds a standby after a failover).
    ``seen``: filled with each head tried -> "refused", "unreachable" or its ``HeadRole``;
    ``skip``: a head not to try (one being asked already)."""
    seen = {} if seen is None else seen
    candidates = split_addresses(address)
    candidates += [k for k in (known or []) if k not in candidates]
    if preferred and preferred in candidates:
        candidates.remove(preferred)
        candidates.insert(0, preferred)
    tried: set[str] = {skip} if skip else set()
    last_error: Optional[BaseException] = None
    answers: list[str] = []
    per_try_s = timeout_s if len(candidates) == 1 else min(timeout_s, 2.0)
    while candidates:
        target = candidates.pop(0)
        if target in tried:
            continue
        tried.add(target)
        try:
            conn = await rpc.connect(target, token, handler, peer_kind, per_try_s)
        except (OSError, rpc.ConnectionLost, TimeoutError) as e:
            if isinstance(e, rpc.TokenRefused):
                raise
            last_error = e
            seen[target] = "refused" if isinstance(e, ConnectionRefusedError) else "unreachable"
            continue
        try:
            role = await who_leads(conn, per_try_s)
        except (rpc.RpcError, rpc.ConnectionLost, TimeoutError, OSError) as e:
            conn.close()
            last_error = e
            seen[target] = "unreachable"
            continue
        seen[target] = role
        if role is None or role.is_leader:
            if known is not None and role is not None:
                for head in [target] + [str(a) for a, _ in role.standbys]:
                    if head not in known:
                        known.append(head)
            return conn, target
        conn.close()
        answers.append(f"{target} is {role.role}" + (f" (leader: {role.leader_address}, epoch {role.epoch})"
                                                     if role.leader_address else ""))
        if role.leader_address and role.leader_address not in tried:
            candidates.insert(0, role.leader_address)
    if answers:
        raise NoLeader("no head leads at the moment: " + "; ".join(answers))
    if last_error is None:
        raise NoLeader("no other head to try")
    raise last_error


async def wait_leader(address: str, token: bytes, handler: Any, peer_kind: str, timeout_s: float,
                      poll_s: float = 0.1, known: Optional[list[str]] = None) -> tuple[rpc.Connection, str]:
    """``connect_leader`` retried until ``timeout_s`` (a failover or a start under way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            return await connect_leader(address, token, handler, peer_kind, max(0.5, deadline - loop.time()),
                                        known=known)
        except (NoLeader, ConnectionRefusedError):
            if loop.time() + poll_s > deadline:
                raise
            await asyncio.sleep(poll_s)


class _Quiet:
    """The handler of a probe connection: it only sends requests."""

    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: rpc.Connection) -> None:
        return None


async def leads_elsewhere(conn: rpc.Connection, address: str, token: bytes, current: str,
                          known: Optional[list[str]], timeout_s: float,
                          seen: Optional[dict[str, Any]] = None) -> bool:
    """Whether another head than ``current`` (reached over ``conn``) leads now.

    For a head that stopped answering (paused, or cut off by a partition: its connections then
    neither answer nor close): only when another head is found leading does the caller drop
    ``conn``.  A slow leader keeps its connections (a node or driver that closes its connection
    to the leader is taken for dead).  ``current`` is asked over ``conn`` while the other heads
    are probed (a silent head does not delay finding the new leader); ``seen`` gets every head's
    answer (``current``: its role, or "unreachable")."""
    seen = {} if seen is None else seen
    ask = asyncio.ensure_future(who_leads(conn, timeout_s))
    probe: Optional[rpc.Connection] = None
    target = ""
    try:
        probe, target = await connect_leader(address, token, _Quiet(), "client", timeout_s, known=known,
                                             seen=seen, skip=current)
    except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError):
        pass
    if probe is not None and target != current and not ask.done():  # found: no need to wait for it
        ask.cancel()
        seen[current] = "unreachable"
        probe.close()
        return True
    try:
        role = await ask
        seen[current] = role if role is not None else m.HeadRole(True, 0, current, current, "leading", [])
        if role is None or role.is_leader:
            return False
    except (rpc.RpcError, rpc.ConnectionLost, TimeoutError, OSError):
        seen[current] = "unreachable"
    finally:
        if probe is not None:
            probe.close()
    return probe is not None and target != current
