"""The control store's placement-group table: records, names, the lifecycle and 2PC.

Rule 1: a group's bundles are reserved all or none.  The table picks a node for every
bundle, sends ``PrepareBundles`` to each chosen node (each node reserves all of its
bundles or none), waits for every answer, then sends ``CommitBundles`` to all of them;
if any node says no (or dies), every node that said yes gets ``CancelBundles`` and the
group goes back to PENDING.  A group on one node skips the second round: its
``PrepareBundles`` carries ``commit=True`` (one participant: prepare and commit are one act).

Rule 2: every state change goes through ``_move``, which reads ``TRANSITIONS``; answers
that belong to an older attempt (``attempt`` grows with every try) are facts, not bugs:
a late "yes" is cancelled, anything else is ignored, and the story says so.

Rule 3: the table's picture of a node's room is its total minus what the table reserved
there.  Leases are invisible to it, so a node may still say no; that group waits until the
node table changes (``NodesChanged``) and tries again.

Diagram (numbers are the edges of ``TRANSITIONS``)::

    create --0--> PENDING --1--> PREPARING --2--> COMMITTING --3--> CREATED
                    ^  ^            |   |                             |  ^
                    |  +-----4------+   +------------5----------->    6  8
                    |                      (single node: CREATED)     v  |
                    +------------------------7------------------ RESCHEDULING
    any state but REMOVED --9--> REMOVED

  0  registered  1  placed: PrepareBundles  2  every node prepared: CommitBundles
  3  every node committed  4  a node said no or died: CancelBundles to the others
  5  a one-node group prepared and committed at once  6  a node holding bundles died
  7  re-placing the lost bundles failed for now  8  the lost bundles are back
  9  removed by the user, or its job ended (not detached): CancelBundles everywhere

Theory of operation: the shell turns messages into the events below and carries out
the effects.  Pure: no clock, no I/O; one thread.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ember.logic import fsm
from ember.logic.bundle_resources import committed_resources
from ember.logic.control.bundle_placement import place
from ember.logic.resources import ResourceSet


class PgState(enum.Enum):
    PENDING = "PENDING"
    PREPARING = "PREPARING"
    COMMITTING = "COMMITTING"
    CREATED = "CREATED"
    RESCHEDULING = "RESCHEDULING"
    REMOVED = "REMOVED"


@dataclass(frozen=True)
class PgSpec:
    pg_id: bytes
    bundles: tuple                  # of dicts
    strategy: str
    name: str = ""
    namespace: str = ""
    is_detached: bool = False
    job_id: bytes = b""


@dataclass
class PgRecord:
    spec: PgSpec
    state: PgState = PgState.PENDING
    nodes: dict = field(default_factory=dict)        # bundle index -> node id (placed or held)
    attempt: int = 0
    waiting: set = field(default_factory=set)        # nodes whose answer this attempt awaits
    said_yes: set = field(default_factory=set)
    said_no: list = field(default_factory=list)      # reasons
    trying: set = field(default_factory=set)         # bundle indices of this attempt
    is_warned: bool = False
    is_blocked: bool = False                         # a node said no: wait for NodesChanged


# --- events ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PgCreated:
    spec: PgSpec
    cause_id: str = ""


@dataclass(frozen=True)
class NodesChanged:
    """The node table moved: ``nodes`` is {node id: total resources (plain names)} of live nodes."""
    nodes: dict
    cause_id: str = ""


@dataclass(frozen=True)
class BundlesPrepared:
    pg_id: bytes
    attempt: int
    node_id: bytes
    is_ok: bool
    message: str = ""
    cause_id: str = ""
    indices: tuple = ()             # the bundles the node was asked for (to cancel a late yes)


@dataclass(frozen=True)
class BundlesCommitted:
    pg_id: bytes
    attempt: int
    node_id: bytes
    cause_id: str = ""


@dataclass(frozen=True)
class PgRemoveRequested:
    pg_id: bytes
    cause_id: str = ""


@dataclass(frozen=True)
class JobFinished:
    job_id: bytes
    cause_id: str = ""


@dataclass(frozen=True)
class NodeDied:
    node_id: bytes
    cause_id: str = ""


Event = Union[PgCreated, NodesChanged, BundlesPrepared, BundlesCommitted, PgRemoveRequested, JobFinished, NodeDied]


# --- effects ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareBundles:
    pg_id: bytes
    attempt: int
    node_id: bytes
    bundles: list                   # [[index, resources dict]]
    commit: bool                    # one-node group: prepare and commit at once
    cause_id: str = ""


@dataclass(frozen=True)
class CommitBundles:
    pg_id: bytes
    attempt: int
    node_id: bytes
    indices: list
    cause_id: str = ""


@dataclass(frozen=True)
class CancelBundles:
    pg_id: bytes
    node_id: bytes
    indices: list
    is_removed: bool                # the group is gone for good (nodes reject its leases)
    cause_id: str = ""


@dataclass(frozen=True)
class PgChanged:
    """Tell waiters and subscribers: the group reached ``state`` (CREATED or REMOVED)."""
    pg_id: bytes
    state: PgState
    cause_id: str = ""


@dataclass(frozen=True)
class WarnInfeasible:
    pg_id: bytes
    message: str
    cause_id: str = ""


Effect = Union[PrepareBundles, CommitBundles, CancelBundles, PgChanged, WarnInfeasible]

_S = PgState
TRANSITIONS: dict[tuple[PgState, PgState], str] = {
    (_S.PENDING, _S.PREPARING): "placed",                # 1
    (_S.PREPARING, _S.COMMITTING): "all prepared",       # 2
    (_S.COMMITTING, _S.CREATED): "all committed",        # 3
    (_S.PREPARING, _S.PENDING): "rolled back",           # 4
    (_S.PREPARING, _S.RESCHEDULING): "re-placing rolled back",  # 7
    (_S.PREPARING, _S.CREATED): "prepared and committed",  # 5
    (_S.CREATED, _S.RESCHEDULING): "a node died",        # 6
    (_S.RESCHEDULING, _S.PREPARING): "re-placed",        # 8 (via PREPARING)
    (_S.COMMITTING, _S.RESCHEDULING): "a node died while committing",
    **{(s, _S.REMOVED): "removed" for s in PgState if s is not _S.REMOVED},  # 9
}


class PgTable:
    """The control store's brain for placement groups."""

    def __init__(self, *, removed_max: int = 10_000, log_entries_max: int = 100_000) -> None:
        self.groups: dict[bytes, PgRecord] = {}
        self.names: dict[tuple[str, str], bytes] = {}
        self.totals: dict[bytes, ResourceSet] = {}       # live nodes
        self.reserved: dict[bytes, ResourceSet] = {}     # node -> what this table reserved there
        self._waiting: dict[bytes, None] = {}   # PENDING or RESCHEDULING groups, oldest first
        self._held_on: dict[bytes, dict[bytes, None]] = {}  # node -> groups with bundles there
        self._removed: list[bytes] = []
        self._removed_max = removed_max
        self._log = fsm.TransitionLog(log_entries_max)

    # --- entry point -----------------------------------------------------------------------
    def handle(self, event: Event, now: float = 0.0) -> list[Effect]:
        handler: Optional[Callable[[Any], list[Effect]]] = getattr(self, "_on_" + type(event).__name__, None)
        if handler is None:
            raise TypeError(f"PgTable cannot handle {type(event).__name__}")
        return handler(event)

    def story(self, pg_id: bytes) -> list[fsm.LogEntry]:
        return self._log.story(pg_id)

    def get(self, pg_id: bytes) -> Optional[PgRecord]:
        return self.groups.get(pg_id)

    def has_waiting(self) -> bool:
        """Is some group PENDING or RESCHEDULING (so node changes matter)?"""
        return bool(self._waiting)

    def lookup_named(self, name: str, namespace: str) -> Optional[bytes]:
        return self.names.get((namespace, name))

    # --- events ----------------------------------------------------------------------------------
    def _on_PgCreated(self, ev: PgCreated) -> list[Effect]:
        spec = ev.spec
        if spec.pg_id in self.groups:
            raise ValueError(f"placement group {spec.pg_id.hex()} already exists")
        if spec.name and (spec.namespace, spec.name) in self.names:
            raise ValueError(f"Failed to create placement group '{spec.name}' because a placement group "
                             f"with the same name already exists in namespace '{spec.namespace}'.")
        rec = PgRecord(spec)
        self.groups[spec.pg_id] = rec
        if spec.name:
            self.names[(spec.namespace, spec.name)] = spec.pg_id
        self._log.record(spec.pg_id, None, _S.PENDING, ev.cause_id)
        self._waiting[spec.pg_id] = None
        return self._try_place(rec, ev.cause_id)

    def _on_NodesChanged(self, ev: NodesChanged) -> list[Effect]:
        effects: list[Effect] = []
        for node_id in [n for n in self.totals if n not in ev.nodes]:
            effects += self._on_NodeDied(NodeDied(node_id, ev.cause_id))
        for node_id, total in ev.nodes.items():
            self.totals[node_id] = ResourceSet(total)
            self.reserved.setdefault(node_id, ResourceSet())
        return effects + self._retry_pending(ev.cause_id)

    def _on_BundlesPrepared(self, ev: BundlesPrepared) -> list[Effect]:
        rec = self.groups.get(ev.pg_id)
        if rec is None or rec.attempt != ev.attempt or rec.state is not _S.PREPARING or ev.node_id not in rec.waiting:
            note = "late or unknown prepare answer"
            self._log.record(ev.pg_id, rec.state if rec else None, rec.state if rec else None, ev.cause_id, note=note)
            if ev.is_ok and ev.indices and not self._holds(rec, ev):
                return [CancelBundles(ev.pg_id, ev.node_id, sorted(ev.indices),
                                      rec is None or rec.state is _S.REMOVED, ev.cause_id)]
            return []
        rec.waiting.discard(ev.node_id)
        if ev.is_ok:
            rec.said_yes.add(ev.node_id)
        else:
            rec.said_no.append(ev.message)
        if rec.waiting:
            return []
        return self._all_answered(rec, ev.cause_id)

    def _holds(self, rec: Optional[PgRecord], ev: BundlesPrepared) -> bool:
        """Does the group still count these bundles as placed on that node (a duplicate yes)?"""
        return rec is not None and all(rec.nodes.get(i) == ev.node_id for i in ev.indices)

    def _all_answered(self, rec: PgRecord, cause_id: str) -> list[Effect]:
        pg_id = rec.spec.pg_id
        if rec.said_no:
            effects: list[Effect] = [CancelBundles(pg_id, n, self._trying_on(rec, n), False, cause_id)
                                     for n in sorted(rec.said_yes)]
            touched = {rec.nodes[i] for i in rec.trying if i in rec.nodes}
            for i in rec.trying:
                self._unreserve(rec, i)
                rec.nodes.pop(i, None)
            self._drop_held(rec, touched)
            back = _S.RESCHEDULING if rec.nodes else _S.PENDING  # RESCHEDULING: survivors still held
            self._move(rec, back, cause_id, note="; ".join(rec.said_no))
            rec.is_blocked = True
            return effects
        if len(rec.said_yes) == 1 and self._is_one_shot(rec):
            self._move(rec, _S.CREATED, cause_id)
            return [PgChanged(pg_id, _S.CREATED, cause_id)]
        self._move(rec, _S.COMMITTING, cause_id)
        rec.waiting = set(rec.said_yes)
        return [CommitBundles(pg_id, rec.attempt, n, self._trying_on(rec, n), cause_id) for n in sorted(rec.said_yes)]

    def _on_BundlesCommitted(self, ev: BundlesCommitted) -> list[Effect]:
        rec = self.groups.get(ev.pg_id)
        if rec is None or rec.attempt != ev.attempt or rec.state is not _S.COMMITTING:
            self._log.record(ev.pg_id, rec.state if rec else None, rec.state if rec else None, ev.cause_id,
                             note="late commit answer")
            return []
        rec.waiting.discard(ev.node_id)
        if rec.waiting:
            return []
        self._move(rec, _S.CREATED, ev.cause_id)
        return [PgChanged(rec.spec.pg_id, _S.CREATED, ev.cause_id)]

    def _on_PgRemoveRequested(self, ev: PgRemoveRequested) -> list[Effect]:
        rec = self.groups.get(ev.pg_id)
        if rec is None or rec.state is _S.REMOVED:
            return []
        by_node: dict[bytes, list[int]] = {}
        for i, n in sorted(rec.nodes.items()):
            by_node.setdefault(n, []).append(i)
            self._unreserve(rec, i)
        rec.nodes.clear()
        self._drop_held(rec, set(by_node))
        rec.waiting.clear()
        self._move(rec, _S.REMOVED, ev.cause_id)
        if rec.spec.name:
            self.names.pop((rec.spec.namespace, rec.spec.name), None)
        self._removed.append(rec.spec.pg_id)
        if len(self._removed) > self._removed_max:
            self.groups.pop(self._removed.pop(0), None)
        effects: list[Effect] = [CancelBundles(rec.spec.pg_id, n, idx, True, ev.cause_id)
                                 for n, idx in sorted(by_node.items())]
        effects.append(PgChanged(rec.spec.pg_id, _S.REMOVED, ev.cause_id))
        return effects + self._retry_pending(ev.cause_id)

    def _on_JobFinished(self, ev: JobFinished) -> list[Effect]:
        effects: list[Effect] = []
        for rec in list(self.groups.values()):
            if rec.spec.job_id == ev.job_id and not rec.spec.is_detached and rec.state is not _S.REMOVED:
                effects += self._on_PgRemoveRequested(PgRemoveRequested(rec.spec.pg_id, ev.cause_id))
        return effects

    def _on_NodeDied(self, ev: NodeDied) -> list[Effect]:
        self.totals.pop(ev.node_id, None)
        self.reserved.pop(ev.node_id, None)  # what it held died with it; groups drop it below
        effects: list[Effect] = []
        for rec in list(self.groups.values()):
            lost = sorted(i for i, n in rec.nodes.items() if n == ev.node_id)
            if rec.state is _S.PREPARING and ev.node_id in rec.waiting:
                effects += self._on_BundlesPrepared(BundlesPrepared(rec.spec.pg_id, rec.attempt, ev.node_id, False,
                                                                    "the node died", ev.cause_id))
                continue
            if not lost or rec.state in (_S.REMOVED, _S.PENDING):
                continue
            if rec.state is _S.PREPARING:   # it said yes, then died: the others are rolled back
                rec.said_yes.discard(ev.node_id)
                rec.said_no.append("a node died")
                if not rec.waiting:
                    effects += self._all_answered(rec, ev.cause_id)
                continue
            for i in lost:
                del rec.nodes[i]
            self._drop_held(rec, {ev.node_id})
            if rec.state in (_S.CREATED, _S.COMMITTING):
                rec.waiting.discard(ev.node_id)
                self._move(rec, _S.RESCHEDULING, ev.cause_id, note=f"lost bundles {lost}")
                effects += self._try_place(rec, ev.cause_id)
        if not self._held_on.get(ev.node_id, True):
            del self._held_on[ev.node_id]
        return effects

    # --- placing ------------------------------------------------------------------------------
    def _retry_pending(self, cause_id: str) -> list[Effect]:
        effects: list[Effect] = []
        for pg_id in list(self._waiting):
            rec = self.groups[pg_id]
            rec.is_blocked = False
            effects += self._try_place(rec, cause_id)
        return effects

    def _free(self) -> dict[bytes, ResourceSet]:
        free: dict[bytes, ResourceSet] = {}
        for n, total in self.totals.items():
            left = ResourceSet.from_units({k: v for k, v in total.units.items() if "_group_" not in k})
            left.subtract_allow_negative(self.reserved.get(n, ResourceSet()))
            free[n] = ResourceSet.from_units({k: v for k, v in left.units.items() if v > 0})
        return free

    def _try_place(self, rec: PgRecord, cause_id: str) -> list[Effect]:
        if rec.is_blocked:
            return []
        bundles = [ResourceSet(b) for b in rec.spec.bundles]
        fixed = dict(rec.nodes)
        chosen = place(bundles, rec.spec.strategy, self._free(), fixed)
        if chosen is None:
            return self._warn_if_never(rec, bundles, cause_id)
        rec.attempt += 1
        rec.trying = set(chosen)
        rec.said_yes, rec.said_no = set(), []
        by_node: dict[bytes, list] = {}
        for i, n in sorted(chosen.items()):
            rec.nodes[i] = n
            self._held_on.setdefault(n, {})[rec.spec.pg_id] = None
            self.reserved.setdefault(n, ResourceSet()).add(bundles[i])
            by_node.setdefault(n, []).append([i, dict(rec.spec.bundles[i])])
        rec.waiting = set(by_node)
        if rec.state is _S.RESCHEDULING:
            self._move(rec, _S.PREPARING, cause_id, note="re-placing lost bundles")
        else:
            self._move(rec, _S.PREPARING, cause_id)
        one_shot = self._is_one_shot(rec)
        return [PrepareBundles(rec.spec.pg_id, rec.attempt, n, b, one_shot, cause_id) for n, b in sorted(by_node.items())]

    def _is_one_shot(self, rec: PgRecord) -> bool:
        return len(set(rec.nodes[i] for i in rec.trying)) == 1 and len(rec.trying) == len(rec.nodes)

    def _warn_if_never(self, rec: PgRecord, bundles: list[ResourceSet], cause_id: str) -> list[Effect]:
        if rec.is_warned:
            return []
        totals = {n: ResourceSet.from_units({k: v for k, v in t.units.items() if "_group_" not in k})
                  for n, t in self.totals.items()}
        if place(bundles, rec.spec.strategy, totals) is not None:
            return []
        rec.is_warned = True
        shapes = [t.to_dict() for _, t in sorted(totals.items())]
        return [WarnInfeasible(rec.spec.pg_id, (
            f"The placement group {rec.spec.pg_id.hex()} ({rec.spec.strategy}, bundles {list(rec.spec.bundles)}) "
            f"cannot be placed on any cluster of the current shape (node totals {shapes}); it stays pending "
            f"until nodes that fit join."), cause_id)]

    def _trying_on(self, rec: PgRecord, node_id: bytes) -> list[int]:
        return sorted(i for i in rec.trying if rec.nodes.get(i) == node_id)

    def _unreserve(self, rec: PgRecord, index: int) -> None:
        node = rec.nodes.get(index)
        if node is not None and node in self.reserved:
            self.reserved[node].subtract(ResourceSet(rec.spec.bundles[index]))

    def _drop_held(self, rec: PgRecord, nodes: set) -> None:
        """Forget ``rec`` on each of ``nodes`` where it holds no bundle any more."""
        for node in nodes:
            if node not in rec.nodes.values():
                self._held_on.get(node, {}).pop(rec.spec.pg_id, None)

    def _move(self, rec: PgRecord, to: PgState, cause_id: str, note: str = "") -> None:
        fsm.lookup(TRANSITIONS, f"placement group {rec.spec.pg_id.hex()}", rec.state, to, cause_id)
        self._log.record(rec.spec.pg_id, rec.state, to, cause_id, note=note)
        rec.state = to
        if to in (_S.PENDING, _S.RESCHEDULING):
            self._waiting[rec.spec.pg_id] = None
        else:
            self._waiting.pop(rec.spec.pg_id, None)

    # --- views ---------------------------------------------------------------------------------------
    def bundle_resources_on(self, node_id: bytes, pg_id: Optional[bytes] = None) -> dict[str, float]:
        """The group resources committed on ``node_id`` (as the node shows them), of every
        group or of ``pg_id`` only."""
        out: dict[str, float] = {}
        for held in ([pg_id] if pg_id is not None else list(self._held_on.get(node_id, {}))):
            rec = self.groups[held]
            if rec.state not in (_S.CREATED, _S.RESCHEDULING):
                continue
            for i, n in rec.nodes.items():
                if n == node_id:
                    for k, v in committed_resources(rec.spec.pg_id.hex(), i, rec.spec.bundles[i]).items():
                        out[k] = out.get(k, 0.0) + v
        return out

    def check_invariants(self) -> None:
        expect: dict[bytes, ResourceSet] = {}
        for rec in self.groups.values():
            if rec.state is _S.REMOVED:
                assert not rec.nodes, f"removed group {rec.spec.pg_id.hex()} still holds bundles"
            if rec.state is _S.CREATED:
                assert len(rec.nodes) == len(rec.spec.bundles), "a created group lacks bundles"
            for i, n in rec.nodes.items():
                expect.setdefault(n, ResourceSet()).add(ResourceSet(rec.spec.bundles[i]))
        for n, held in self.reserved.items():
            assert held == expect.get(n, ResourceSet()), f"node {n.hex()[:8]}: reserved {held} != bundles"
        for node, held_groups in self._held_on.items():
            for pg_id in held_groups:
                assert node in self.groups[pg_id].nodes.values(), f"{pg_id.hex()} listed on a node it left"
        for rec in self.groups.values():
            for n in rec.nodes.values():
                assert rec.spec.pg_id in self._held_on.get(n, {}), f"{rec.spec.pg_id.hex()} unlisted on its node"
        for pg_id, rec in self.groups.items():
            assert (pg_id in self._waiting) == (rec.state in (_S.PENDING, _S.RESCHEDULING)), "waiting list is off"
        for key, pg_id in self.names.items():
            assert self.groups[pg_id].state is not _S.REMOVED, f"removed group still named {key}"
