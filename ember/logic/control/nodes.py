"""The control store's node table: registration, heartbeats, death by silence.

A node is alive from RegisterNode until ``heartbeat_timeout_s`` passes without a
heartbeat (or it disconnects / is drained).  Every change bumps ``version`` so daemons
can ask for the view only when it moved.

Death is final (Ray's rule): once a node id is declared dead, its actors are restarted
elsewhere and its objects counted lost, so the same id must never come back.  A daemon
that was only paused (SIGSTOP, a long GC, a stalled VM) and resumes is told DEAD on its
next heartbeat or registration and must exit; a new daemon on that machine joins under
a new id.

    register(id)   unknown / alive id -> ACCEPTED   (alive: the same daemon reconnecting)
                   dead id            -> DEAD
    heartbeat(id)  alive -> ALIVE;  dead -> DEAD (exit);  unknown -> UNKNOWN (register again:
                   a head that restarted without its tables)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional


class NodeVerdict(enum.Enum):
    """The node table's answer to a daemon's registration or heartbeat."""
    ACCEPTED = "accepted"   # registration recorded
    ALIVE = "alive"         # heartbeat recorded
    UNKNOWN = "unknown"     # never registered here: register again
    DEAD = "dead"           # declared dead before: the daemon must exit, never rejoin under this id


@dataclass
class NodeRecord:
    node_id: bytes
    address: str
    resources_total: dict
    resources_available: dict
    is_head: bool
    store_dir: str
    labels: dict
    is_alive: bool = True
    last_heartbeat_s: float = 0.0
    pending_demands: list = field(default_factory=list)
    object_store_used_bytes: int = 0
    object_store_capacity_bytes: int = 0
    load: list = field(default_factory=list)   # [queued lease requests, mean task s]


class NodeTable:
    def __init__(self, heartbeat_timeout_s: float) -> None:
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.nodes: dict[bytes, NodeRecord] = {}
        self.version = 0

    def register(self, rec: NodeRecord, now: float) -> NodeVerdict:
        """Record a registration; DEAD (nothing recorded) for an id declared dead before."""
        old = self.nodes.get(rec.node_id)
        if old is not None and not old.is_alive:
            return NodeVerdict.DEAD
        rec.last_heartbeat_s = now
        rec.is_alive = True
        self.nodes[rec.node_id] = rec
        self.version += 1
        return NodeVerdict.ACCEPTED

    def heartbeat(self, node_id: bytes, available: dict, demands: list, store_used_bytes: int,
                  now: float, load: Optional[list] = None) -> NodeVerdict:
        """Record a heartbeat: ALIVE, or UNKNOWN (register again), or DEAD (exit)."""
        rec = self.nodes.get(node_id)
        if rec is None:
            return NodeVerdict.UNKNOWN
        if not rec.is_alive:
            return NodeVerdict.DEAD
        rec.last_heartbeat_s = now
        if rec.resources_available != available:
            rec.resources_available = available
            self.version += 1
        rec.pending_demands = demands
        if load is not None:
            if (rec.load[:1] or [0]) != load[:1]:  # the queue length moved: other nodes should see it
                self.version += 1
            rec.load = list(load)
        rec.object_store_used_bytes = store_used_bytes
        return NodeVerdict.ALIVE

    def expire(self, now: float) -> list[bytes]:
        """Declare dead every node silent for too long; return their ids."""
        dead = [n for n, r in self.nodes.items()
                if r.is_alive and now - r.last_heartbeat_s > self.heartbeat_timeout_s]
        for node_id in dead:
            self.mark_dead(node_id)
        return dead

    def mark_dead(self, node_id: bytes) -> bool:
        rec = self.nodes.get(node_id)
        if rec is None or not rec.is_alive:
            return False
        rec.is_alive = False
        rec.resources_available = {}
        self.version += 1
        return True

    def is_dead(self, node_id: bytes) -> bool:
        rec = self.nodes.get(node_id)
        return rec is not None and not rec.is_alive

    def alive(self) -> list[NodeRecord]:
        return [r for r in self.nodes.values() if r.is_alive]
