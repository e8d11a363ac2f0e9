"""The control store's node table: registration, heartbeats, death by silence.

A node is alive from RegisterNode until ``heartbeat_timeout_s`` passes without a
heartbeat (or it disconnects / is drained).  Every change bumps ``version`` so daemons
can ask for the view only when it moved.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


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

    def register(self, rec: NodeRecord, now: float) -> None:
        rec.last_heartbeat_s = now
        rec.is_alive = True
        self.nodes[rec.node_id] = rec
        self.version += 1

    def heartbeat(self, node_id: bytes, available: dict, demands: list, store_used_bytes: int,
                  now: float, load: Optional[list] = None) -> bool:
        """Record a heartbeat; False when the node is unknown or already declared dead."""
        rec = self.nodes.get(node_id)
        if rec is None or not rec.is_alive:
            return False
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
        return True

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

    def alive(self) -> list[NodeRecord]:
        return [r for r in self.nodes.values() if r.is_alive]
