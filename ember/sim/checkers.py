"""The invariants, checked after every event on what that event touched.

- every node touched: its lease manager's accounting (free + leased + reserved = total), no
  resource below zero (over-committed), its reserved resources equal to its bundle table's;
- every owner: its key queues' invariants (no lease with room while tasks wait); a task that
  ends twice raises where it happens (``SimOwner._end``);
- actors: an incarnation that starts while another runs on a live node raises, and so does
  an incarnation beyond ``1 + max_restarts`` (``Cluster.actor_running``);
- placement groups: a group the head calls CREATED has every bundle committed on its node
  (``PgsWorkload._check_all_committed``);
- heads: two heads writing under one epoch raise (``head.Storage.write``);
- objects: an object an owner reports lost has no copy on a live node (``Cluster.check_lost``).

Whole-table checks (``ActorTable``/``PgTable``/``ReferenceTable.check_invariants``) cost
O(table), so they run after an event that touched the table once every ``table size / 50``
such events (every time for tables under 50 records), and once at the end.
"""
from __future__ import annotations

from typing import Any


class Checker:
    def __init__(self, cluster: Any) -> None:
        self.c = cluster
        self.checks = 0
        self._actor_events = 0
        self._pg_events = 0
        self._ref_events = 0

    def __call__(self) -> None:
        c = self.c
        if c.dirty_nodes:
            for node in c.dirty_nodes:
                if node.alive:
                    node.check()
            self.checks += len(c.dirty_nodes)
            c.dirty_nodes.clear()
        if c.dirty_actors:
            c.dirty_actors = False
            self._actor_events += 1
            head = c.head_of(c.leader)
            if self._actor_events * 50 >= len(head.actors._records):
                self._actor_events = 0
                head.actors.check_invariants()
                self.checks += 1
        if c.dirty_pgs:
            c.dirty_pgs = False
            self._pg_events += 1
            head = c.head_of(c.leader)
            if self._pg_events * 50 >= len(head.pgs.groups):
                self._pg_events = 0
                head.pgs.check_invariants()
                self.checks += 1
        for owner in c.owners:
            if owner.dirty:
                owner.check()
        self._ref_events += 1
        if self._ref_events >= max(5000, 2 * sum(len(o.refs) for o in c.owners)):
            self._ref_events = 0
            for owner in c.owners:
                owner.refs.check_invariants()

    def final(self) -> None:
        c = self.c
        for node in c.nodes.values():
            if node.alive:
                node.check()
        for owner in c.owners:
            owner.refs.check_invariants()
        for head in c.heads:
            if head.active:
                head.check()
