"""Reference counting for one process (driver or worker): which objects it holds, and
when an object it owns is freed.  Pure logic: no I/O, no clock, no threads.

Rule 1. The table keeps a record for an object while this process holds it in any way.
        The holds are: local refs (ObjectRef instances alive here), submitted-task refs
        (one per occurrence of the object among the arguments of a pending task),
        containing objects (live records whose serialized value holds this ref) and, on
        owned objects only, borrowers (other workers that announced they hold it).
Rule 2. When the last hold goes, the record is released at once and deleted:
        an owned object yields FreeObject exactly once; a borrowed object that was
        announced to its owner yields NotifyOwnerReleased.  Either way every object it
        contained loses one containing hold, which may release it too (cascade).
Rule 3. A borrowed ref is announced to its owner (NotifyOwnerBorrowing) once per record
        lifetime, on the first BorrowedRefReceived.  A ref created here for a foreign
        owner but never announced is released silently.
Rule 4. An owned object may pin the lineage (the creating task) needed to rebuild it.
        Each task's pin count drops when its objects are freed; at zero, ReleaseLineage.
Rule 5. Bad peer input (a borrower or location for an unknown object) is logged and
        ignored.  Broken internal order (dropping an untracked ref, containing an
        untracked ref) raises ReferenceCountingError: it is a bug in the caller.

Theory of operation.  The shell turns ObjectRef hooks into events: "add" becomes
RefAdded (or the add_local() fast path), "drop" becomes RefDropped (or remove_local()),
"deserialized" of a foreign-owned ref becomes BorrowedRefReceived.  Task submission and
completion, serialization of refs inside values, and messages from borrowers and node
daemons become the other events.  handle(event, now) returns the effects to carry out.
Records are plain slotted objects in one dict; the borrower index makes BorrowerDied
cost O(objects of that borrower).  See docs/reference_counting.md.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ember.logic.owner.reference_events import (
    Address, BorrowedRefReceived, BorrowerAdded, BorrowerDied, BorrowerRemoved, FreeObject,
    LineageRecorded, NodeRemoved, NotifyOwnerBorrowing, NotifyOwnerReleased,
    ObjectContainsRefs, ObjectId, ObjectInlined, ObjectLocationAdded,
    ObjectLocationRemoved, RecoverObject, RefAdded, RefDropped, ReferenceEffect,
    ReferenceEvent, ReleaseLineage, TaskArgsReleased, TaskId, TaskSubmittedWithArgs,
)


class ReferenceCountingError(Exception):
    """An internal expectation was broken: the caller fed events in an impossible order."""


@dataclass(frozen=True, slots=True)
class RefSummary:
    """A read-only view of one record, for `ember memory`, debugging and tests."""
    object_id: ObjectId
    is_owned: bool
    owner: Address
    local_count: int
    submitted_count: int
    borrowers: frozenset[Address]
    contained_in: frozenset[ObjectId]
    contains: tuple[ObjectId, ...]
    plasma_nodes: frozenset[Address]
    is_inline: bool
    is_announced: bool
    lineage_task_id: Optional[TaskId]


class _Record:
    __slots__ = ("is_owned", "owner", "local", "submitted", "borrowers", "contained_in",
                 "contains", "plasma_nodes", "is_inline", "is_announced", "lineage_task_id")

    def __init__(self, is_owned: bool, owner: Address) -> None:
        self.is_owned = is_owned
        self.owner = owner
        self.local = 0
        self.submitted = 0
        # Sets and lists are created on first use: most objects never need them.
        self.borrowers: Optional[set[Address]] = None
        self.contained_in: Optional[set[ObjectId]] = None
        self.contains: Optional[list[ObjectId]] = None
        self.plasma_nodes: Optional[set[Address]] = None
        self.is_inline = False
        self.is_announced = False
        self.lineage_task_id: Optional[TaskId] = None


def _is_held(rec: _Record) -> bool:
    return bool(rec.local or rec.submitted or rec.contained_in or rec.borrowers)


_NO_NODES: frozenset[Address] = frozenset()

# What drop_local() did (see its docstring).
DROP_HELD = 0       # one local ref fewer; the object is still held
DROP_RELEASED = 1   # the record is gone; free the value (owned) or forget it (borrowed)
DROP_SLOW = 2       # nothing changed: send RefDropped through handle() for the effects
DROP_UNTRACKED = 3  # no record (a ref from an earlier session, say): nothing to do
_Handler = Callable[[Any, str, list[ReferenceEffect]], None]
LOG_ENTRIES_MAX = 10_000


class ReferenceTable:
    """The reference counts of one process.  See the module docstring for the rules."""

    def __init__(self, log_entries_max: int = LOG_ENTRIES_MAX) -> None:
        self._records: dict[ObjectId, _Record] = {}
        self._task_args: dict[TaskId, tuple[ObjectId, ...]] = {}
        self._objects_by_borrower: dict[Address, set[ObjectId]] = {}
        self._lineage_pins: dict[TaskId, int] = {}
        self._log: deque[tuple[float, object]] = deque(maxlen=log_entries_max)
        self._handlers: dict[type, _Handler] = {
            RefAdded: self._on_ref_added,
            RefDropped: self._on_ref_dropped,
            TaskSubmittedWithArgs: self._on_task_submitted,
            TaskArgsReleased: self._on_task_args_released,
            ObjectContainsRefs: self._on_contains,
            BorrowerAdded: self._on_borrower_added,
            BorrowerRemoved: self._on_borrower_removed,
            BorrowerDied: self._on_borrower_died,
            BorrowedRefReceived: self._on_borrowed_ref_received,
            LineageRecorded: self._on_lineage_recorded,
            ObjectInlined: self._on_inlined,
            ObjectLocationAdded: self._on_location_added,
            ObjectLocationRemoved: self._on_location_removed,
            NodeRemoved: self._on_node_removed,
        }

    # --- entry points ---------------------------------------------------------------------
    def handle(self, event: ReferenceEvent, now: float) -> list[ReferenceEffect]:
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"ReferenceTable cannot handle {event!r}")
        log = self._log
        log.append((now, event))
        effects: list[ReferenceEffect] = []
        handler(event, event.cause_id, effects)
        for effect in effects:
            log.append((now, effect))
        return effects

    def add_local(self, object_id: ObjectId) -> bool:
        """Fast path for one more local ref of a tracked object.  Returns False (and changes
        nothing) when the object is not tracked: send RefAdded through handle() instead."""
        rec = self._records.get(object_id)
        if rec is None:
            return False
        rec.local += 1
        return True

    def add_ref(self, object_id: ObjectId, owner: Address, is_owned: bool) -> None:
        """Fast path for RefAdded (the same decision, not logged): one more local ref,
        creating the record when the object is not tracked yet."""
        rec = self._records.get(object_id)
        if rec is None:
            rec = self._records[object_id] = _Record(is_owned, owner)
        elif rec.is_owned != is_owned:
            raise ReferenceCountingError(
                f"RefAdded({object_id.hex()}, is_owned={is_owned}) but the tracked "
                f"record says is_owned={rec.is_owned}")
        rec.local += 1

    def drop_local(self, object_id: ObjectId) -> int:
        """Fast path for RefDropped (the same decision, not logged) where it needs no
        effect but a plain free.  Returns DROP_HELD (a count went down), DROP_RELEASED
        (the record of an object that contained nothing and pinned nothing was deleted:
        the caller frees it, as FreeObject would say, or, for a borrow that was never
        announced, forgets its cached value), DROP_SLOW (nothing changed: use handle())
        or DROP_UNTRACKED."""
        rec = self._records.get(object_id)
        if rec is None:
            return DROP_UNTRACKED
        local = rec.local
        if local > 1 or (local == 1 and (rec.submitted or rec.contained_in or rec.borrowers)):
            rec.local = local - 1
            return DROP_HELD
        if (local == 1 and rec.contains is None and rec.lineage_task_id is None
                and not rec.plasma_nodes and (rec.is_owned or not rec.is_announced)):
            del self._records[object_id]
            return DROP_RELEASED
        return DROP_SLOW

    def remove_local(self, object_id: ObjectId) -> bool:
        """Fast path for dropping one local ref while another hold remains.  Returns False
        (and changes nothing) when this drop may release the object: send RefDropped
        through handle() instead, to get the effects."""
        rec = self._records.get(object_id)
        if rec is None:
            return False
        local = rec.local
        if local > 1 or (local == 1 and (rec.submitted or rec.contained_in or rec.borrowers)):
            rec.local = local - 1
            return True
        return False

    # --- queries --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._records

    def summary(self, object_id: ObjectId) -> Optional[RefSummary]:
        rec = self._records.get(object_id)
        if rec is None:
            return None
        return RefSummary(
            object_id=object_id, is_owned=rec.is_owned, owner=rec.owner,
            local_count=rec.local, submitted_count=rec.submitted,
            borrowers=frozenset(rec.borrowers or ()),
            contained_in=frozenset(rec.contained_in or ()),
            contains=tuple(rec.contains or ()),
            plasma_nodes=frozenset(rec.plasma_nodes or ()), is_inline=rec.is_inline,
            is_announced=rec.is_announced, lineage_task_id=rec.lineage_task_id)

    def object_ids(self) -> list[ObjectId]:
        return list(self._records)

    def pending_task_ids(self) -> list[TaskId]:
        return list(self._task_args)

    def story(self, key: bytes | str) -> list[tuple[float, object]]:
        """Logged events and effects that concern key (an object id, task id or address),
        oldest first.  A task's later events join an object's story once a logged
        TaskSubmittedWithArgs links them.  Fast-path calls are not logged."""
        keys = {key}
        out: list[tuple[float, object]] = []
        for now, item in self._log:
            item_keys = _keys_of(item)
            if isinstance(item, TaskSubmittedWithArgs) and key in item.object_ids:
                keys.add(item.task_id)
            if not keys.isdisjoint(item_keys):
                out.append((now, item))
        return out

    # --- handlers: local side -------------------------------------------------------------
    def _on_ref_added(self, ev: RefAdded, cause_id: str, out: list[ReferenceEffect]) -> None:
        rec = self._records.get(ev.object_id)
        if rec is None:
            rec = _Record(ev.is_owned, ev.owner)
            self._records[ev.object_id] = rec
        elif rec.is_owned != ev.is_owned:
            raise ReferenceCountingError(
                f"RefAdded({ev.object_id.hex()}, is_owned={ev.is_owned}) but the tracked "
                f"record says is_owned={rec.is_owned}")
        rec.local += 1

    def _on_ref_dropped(self, ev: RefDropped, cause_id: str,
                        out: list[ReferenceEffect]) -> None:
        rec = self._records.get(ev.object_id)
        if rec is None or rec.local <= 0:
            raise ReferenceCountingError(
                f"RefDropped({ev.object_id.hex()}) without a live local ref")
        rec.local -= 1
        if not _is_held(rec):
            self._release(ev.object_id, rec, cause_id, out)

    def _on_task_submitted(self, ev: TaskSubmittedWithArgs, cause_id: str,
                           out: list[ReferenceEffect]) -> None:
        if ev.task_id in self._task_args:
            raise ReferenceCountingError(
                f"task {ev.task_id.hex()} submitted twice without TaskArgsReleased")
        records = self._records
        for object_id in ev.object_ids:
            if object_id not in records:
                raise ReferenceCountingError(
                    f"task {ev.task_id.hex()} takes untracked object {object_id.hex()}")
        for object_id in ev.object_ids:
            records[object_id].submitted += 1
        self._task_args[ev.task_id] = ev.object_ids

    def _on_task_args_released(self, ev: TaskArgsReleased, cause_id: str,
                               out: list[ReferenceEffect]) -> None:
        object_ids = self._task_args.pop(ev.task_id, None)
        if object_ids is None:
            return  # no argument refs, or released already: nothing is pinned
        records = self._records
        for object_id in object_ids:
            rec = records.get(object_id)
            if rec is None:  # released earlier in this loop's cascade: impossible while pinned
                raise ReferenceCountingError(f"pinned arg {object_id.hex()} vanished")
            rec.submitted -= 1
            if not _is_held(rec):
                self._release(object_id, rec, cause_id, out)

    def _on_contains(self, ev: ObjectContainsRefs, cause_id: str,
                     out: list[ReferenceEffect]) -> None:
        records = self._records
        outer = records.get(ev.outer_id)
        if outer is None:
            raise ReferenceCountingError(
                f"ObjectContainsRefs: outer {ev.outer_id.hex()} is not tracked "
                "(send its RefAdded first)")
        for inner_id in ev.inner_ids:
            if inner_id == ev.outer_id:
                raise ReferenceCountingError(f"object {inner_id.hex()} contains itself")
            if inner_id not in records:
                raise ReferenceCountingError(
                    f"ObjectContainsRefs: inner {inner_id.hex()} is not tracked")
        for inner_id in ev.inner_ids:
            inner = records[inner_id]
            if inner.contained_in is None:
                inner.contained_in = set()
            elif ev.outer_id in inner.contained_in:
                continue
            inner.contained_in.add(ev.outer_id)
            if outer.contains is None:
                outer.contains = []
            outer.contains.append(inner_id)

    def _on_borrowed_ref_received(self, ev: BorrowedRefReceived, cause_id: str,
                                  out: list[ReferenceEffect]) -> None:
        rec = self._records.get(ev.object_id)
        if rec is None:
            raise ReferenceCountingError(
                f"BorrowedRefReceived({ev.object_id.hex()}) before its RefAdded")
        if rec.is_owned or rec.is_announced:
            return
        rec.is_announced = True
        out.append(NotifyOwnerBorrowing(rec.owner, ev.object_id, cause_id))

    # --- handlers: owner side -------------------------------------------------------------
    def _owned(self, object_id: ObjectId) -> Optional[_Record]:
        rec = self._records.get(object_id)
        if rec is None or not rec.is_owned:
            return None  # Rule 5: a late or stray peer message; the log keeps it
        return rec

    def _on_borrower_added(self, ev: BorrowerAdded, cause_id: str,
                           out: list[ReferenceEffect]) -> None:
        rec = self._owned(ev.object_id)
        if rec is None:
            return
        if rec.borrowers is None:
            rec.borrowers = set()
        rec.borrowers.add(ev.borrower_address)
        self._objects_by_borrower.setdefault(ev.borrower_address, set()).add(ev.object_id)

    def _on_borrower_removed(self, ev: BorrowerRemoved, cause_id: str,
                             out: list[ReferenceEffect]) -> None:
        rec = self._owned(ev.object_id)
        if rec is None or not rec.borrowers or ev.borrower_address not in rec.borrowers:
            return
        rec.borrowers.discard(ev.borrower_address)
        held = self._objects_by_borrower[ev.borrower_address]
        held.discard(ev.object_id)
        if not held:
            del self._objects_by_borrower[ev.borrower_address]
        if not _is_held(rec):
            self._release(ev.object_id, rec, cause_id, out)

    def _on_borrower_died(self, ev: BorrowerDied, cause_id: str,
                          out: list[ReferenceEffect]) -> None:
        held = self._objects_by_borrower.pop(ev.borrower_address, None)
        if not held:
            return
        records = self._records
        for object_id in sorted(held):  # sorted: effects come out in a replayable order
            rec = records[object_id]
            assert rec.borrowers is not None
            rec.borrowers.discard(ev.borrower_address)
            if not _is_held(rec):
                self._release(object_id, rec, cause_id, out)

    def _on_lineage_recorded(self, ev: LineageRecorded, cause_id: str,
                             out: list[ReferenceEffect]) -> None:
        rec = self._records.get(ev.object_id)
        if rec is None or not rec.is_owned:
            raise ReferenceCountingError(
                f"LineageRecorded for {ev.object_id.hex()}, which is not a tracked owned object")
        if rec.lineage_task_id == ev.task_id:
            return
        if rec.lineage_task_id is not None:
            raise ReferenceCountingError(
                f"object {ev.object_id.hex()} already pins lineage {rec.lineage_task_id.hex()}")
        rec.lineage_task_id = ev.task_id
        self._lineage_pins[ev.task_id] = self._lineage_pins.get(ev.task_id, 0) + 1

    def _on_inlined(self, ev: ObjectInlined, cause_id: str,
                    out: list[ReferenceEffect]) -> None:
        rec = self._owned(ev.object_id)
        if rec is not None:
            rec.is_inline = True

    def _on_location_added(self, ev: ObjectLocationAdded, cause_id: str,
                           out: list[ReferenceEffect]) -> None:
        rec = self._owned(ev.object_id)
        if rec is None:
            return
        if rec.plasma_nodes is None:
            rec.plasma_nodes = set()
        rec.plasma_nodes.add(ev.node_address)

    def _on_location_removed(self, ev: ObjectLocationRemoved, cause_id: str,
                             out: list[ReferenceEffect]) -> None:
        rec = self._owned(ev.object_id)
        if rec is None or not rec.plasma_nodes or ev.node_address not in rec.plasma_nodes:
            return
        rec.plasma_nodes.discard(ev.node_address)
        if not rec.plasma_nodes and not rec.is_inline:
            out.append(RecoverObject(ev.object_id, rec.lineage_task_id, cause_id))

    def _on_node_removed(self, ev: NodeRemoved, cause_id: str,
                         out: list[ReferenceEffect]) -> None:
        # Rare (a node died): a full scan is simpler than a per-node index on the hot path.
        lost: list[ObjectId] = []
        for object_id, rec in self._records.items():
            nodes = rec.plasma_nodes
            if nodes and ev.node_address in nodes:
                nodes.discard(ev.node_address)
                if not nodes and not rec.is_inline:
                    lost.append(object_id)
        for object_id in sorted(lost):
            out.append(RecoverObject(object_id, self._records[object_id].lineage_task_id,
                                     cause_id))

    # --- release --------------------------------------------------------------------------
    def _release(self, object_id: ObjectId, rec: _Record, cause_id: str,
                 out: list[ReferenceEffect]) -> None:
        """Delete an unheld record and everything that only it kept alive (Rule 2)."""
        records = self._records
        stack = [(object_id, rec)]
        while stack:
            oid, r = stack.pop()
            del records[oid]
            if r.is_owned:
                nodes = frozenset(r.plasma_nodes) if r.plasma_nodes else _NO_NODES
                out.append(FreeObject(oid, nodes, cause_id))
                if r.lineage_task_id is not None:
                    self._unpin_lineage(r.lineage_task_id, cause_id, out)
            elif r.is_announced:
                out.append(NotifyOwnerReleased(r.owner, oid, cause_id))
            for inner_id in r.contains or ():
                inner = records[inner_id]
                assert inner.contained_in is not None
                inner.contained_in.discard(oid)
                if not _is_held(inner):
                    stack.append((inner_id, inner))

    def _unpin_lineage(self, task_id: TaskId, cause_id: str,
                       out: list[ReferenceEffect]) -> None:
        pins = self._lineage_pins[task_id] - 1
        if pins:
            self._lineage_pins[task_id] = pins
        else:
            del self._lineage_pins[task_id]
            out.append(ReleaseLineage(task_id, cause_id))

    # --- invariants -----------------------------------------------------------------------
    def check_invariants(self) -> None:
        records = self._records
        pinned: dict[ObjectId, int] = {}
        for args in self._task_args.values():
            for object_id in args:
                pinned[object_id] = pinned.get(object_id, 0) + 1
        _check(all(oid in records for oid in pinned), "a task pins an untracked object")
        lineage: dict[TaskId, int] = {}
        for object_id, rec in records.items():
            self._check_record(object_id, rec, pinned.get(object_id, 0))
            if rec.lineage_task_id is not None:
                lineage[rec.lineage_task_id] = lineage.get(rec.lineage_task_id, 0) + 1
        _check(lineage == self._lineage_pins, "lineage pin counts disagree with records")
        for borrower, held in self._objects_by_borrower.items():
            _check(bool(held), f"borrower {borrower}: empty index entry")
            for object_id in held:
                held_rec = records.get(object_id)
                _check(held_rec is not None and borrower in (held_rec.borrowers or ()),
                       f"borrower {borrower}: index lists {object_id.hex()} wrongly")

    def _check_record(self, object_id: ObjectId, rec: _Record, pinned: int) -> None:
        name = object_id.hex()
        _check(rec.local >= 0 and rec.submitted >= 0, f"{name}: negative count")
        _check(_is_held(rec), f"{name}: tracked but unheld (a leak)")
        _check(rec.submitted == pinned, f"{name}: submitted={rec.submitted}, tasks pin {pinned}")
        _check(rec.is_owned or not (rec.borrowers or rec.is_inline or rec.plasma_nodes
                                    or rec.lineage_task_id), f"{name}: owner fields on a borrow")
        _check(not (rec.is_owned and rec.is_announced), f"{name}: owned yet announced")
        for borrower in rec.borrowers or ():
            _check(object_id in self._objects_by_borrower.get(borrower, ()),
                   f"{name}: borrower {borrower} missing from the index")
        for outer_id in rec.contained_in or ():
            outer = self._records.get(outer_id)
            _check(outer is not None and object_id in (outer.contains or ()),
                   f"{name}: contained in {outer_id.hex()}, which does not list it")
        contains = rec.contains or []
        _check(len(set(contains)) == len(contains), f"{name}: duplicate contained refs")
        for inner_id in contains:
            inner = self._records.get(inner_id)
            _check(inner is not None and object_id in (inner.contained_in or ()),
                   f"{name}: contains {inner_id.hex()}, which does not point back")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ReferenceCountingError(f"invariant broken: {message}")


_KEY_FIELDS = ("object_id", "task_id", "outer_id", "owner", "borrower_address",
               "node_address", "lineage_task_id")
_KEY_TUPLE_FIELDS = ("object_ids", "inner_ids")


def _keys_of(item: object) -> set[object]:
    keys: set[object] = set()
    for name in _KEY_FIELDS:
        value = getattr(item, name, None)
        if value is not None:
            keys.add(value)
    for name in _KEY_TUPLE_FIELDS:
        keys.update(getattr(item, name, ()))
    return keys
