"""Lineage: the specs an owner keeps so that it can rebuild lost objects by re-running the
tasks that made them (Ray's lineage reconstruction).  Pure logic: no I/O, no clock.

Rule 1. A finished task's entry is kept while one of its returns is in scope (the owner's
        reference table still holds it) or while a kept task took one of its returns as an
        argument (a *dependent*: rebuilding the dependent may need this task too).  When
        neither holds, the entry goes, and its arguments' producers lose one dependent
        each, which may drop them too (cascade, iterative).
Rule 2. The specs kept are bounded by ``max_lineage_bytes`` (Ray's default 1 GiB).  Past
        it the oldest specs are evicted (FIFO by finish order); an evicted task keeps a
        stub with no spec, so losing one of its objects is reported as
        LINEAGE_EVICTED.  Evictions are counted (tasks and bytes).
Rule 3. Every re-execution spends one of the task's retries (``retries_left``; -1 means
        unbounded), shared with the retries of failures as in Ray.  A task with none left
        is not resubmitted: MAX_ATTEMPTS_EXCEEDED.  A task submitted with max_retries=0
        keeps no spec at all (NOT_RETRYABLE).
Rule 4. ``plan_recovery(object_id, is_available)`` decides for one lost object: nothing to
        do (a copy is still available, or its task is already being re-executed), a list of
        tasks to resubmit (arguments' producers first, for every argument that is not
        available), or why it cannot be rebuilt.  A plan either resubmits everything it
        needs or nothing (no half-started rebuild).  A task is never resubmitted while a
        resubmission of it is still running: each task result reaches the owner's store
        at most once per loss.
Rule 5. Objects the table never saw (``ember.put`` objects, results of actor tasks) are
        NO_LINEAGE.

Theory of operation.  The submitter calls ``task_finished`` once per finished attempt (cheap:
a few dict operations), the reference-counting shell calls ``object_released`` when an owned
object leaves scope.  The object fetch path calls ``plan_recovery`` when every copy of an
owned object is gone, carries out the Resubmit list, and calls ``task_finished`` /
``task_failed`` again when the re-executions end.  See docs/fault_tolerance.md.
"""
from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Optional

ObjectId = bytes
TaskId = bytes

MAX_LINEAGE_BYTES_DEFAULT = 1 << 30
LOG_ENTRIES_MAX = 2_000


class LineageError(Exception):
    """An internal expectation was broken (the caller fed events in an impossible order)."""


class LossReason(enum.Enum):
    NO_LINEAGE = "no_lineage"                  # a put object, an actor task's result, unknown
    NOT_RETRYABLE = "not_retryable"            # its task was submitted with max_retries=0
    MAX_ATTEMPTS_EXCEEDED = "max_attempts"     # its task used up max_retries
    LINEAGE_EVICTED = "lineage_evicted"        # its spec was evicted (max_lineage_bytes)


@dataclass(frozen=True, slots=True)
class Resubmit:
    """Re-run ``task_id`` from ``spec``; ``recreated`` are its returns that were out of scope and
    come back into scope for this rebuild (the shell makes pending entries and holds them)."""
    task_id: TaskId
    spec: object
    recreated: tuple[ObjectId, ...]


@dataclass(frozen=True, slots=True)
class Unrecoverable:
    object_id: ObjectId          # the object that cannot be rebuilt (the lost one or an argument)
    reason: LossReason
    task_id: Optional[TaskId]


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    resubmits: tuple[Resubmit, ...] = ()
    failure: Optional[Unrecoverable] = None
    is_pending: bool = False     # its task is already being re-executed: wait for it


class _State(enum.Enum):
    FINISHED = 1
    REBUILDING = 2


@dataclass(slots=True)
class _Task:
    spec: object                          # None: evicted, or never kept (max_retries=0)
    size_bytes: int
    retries_left: int                     # -1: unbounded
    returns: tuple[ObjectId, ...]
    args: tuple[ObjectId, ...]            # owned stored arguments whose producer was kept
    in_scope: set[ObjectId] = field(default_factory=set)
    dependents: int = 0
    state: _State = _State.FINISHED
    is_retryable: bool = True


@dataclass(frozen=True, slots=True)
class LineageStats:
    tasks: int
    specs: int
    bytes: int
    max_bytes: int
    evicted_tasks_total: int
    evicted_bytes_total: int
    resubmits_total: int


class LineageTable:
    """The lineage of one owner.  See the module docstring for the rules."""

    def __init__(self, max_lineage_bytes: int = MAX_LINEAGE_BYTES_DEFAULT,
                 log_entries_max: int = LOG_ENTRIES_MAX) -> None:
        if max_lineage_bytes < 0:
            raise ValueError(f"max_lineage_bytes must be >= 0, got {max_lineage_bytes}")
        self.max_bytes = max_lineage_bytes
        self._tasks: "OrderedDict[TaskId, _Task]" = OrderedDict()   # finish order: eviction order
        self._producer: dict[ObjectId, TaskId] = {}
        self._bytes = 0
        self.evicted_tasks_total = 0
        self.evicted_bytes_total = 0
        self.resubmits_total = 0
        self._log: deque[tuple[str, bytes, str]] = deque(maxlen=log_entries_max)

    # --- events ---------------------------------------------------------------------------
    def task_finished(self, task_id: TaskId, spec: object, size_bytes: int, retries_left: int,
                      returns: tuple[ObjectId, ...], in_scope: tuple[ObjectId, ...],
                      args: tuple[ObjectId, ...]) -> None:
        """An attempt of ``task_id`` finished (first run or a rebuild).  ``in_scope``: the returns
        the owner still holds; ``args``: the owned arguments passed by reference."""
        task = self._tasks.get(task_id)
        if task is not None:   # a rebuild ended
            if task.state is not _State.REBUILDING:
                raise LineageError(f"task {task_id.hex()} finished twice without a rebuild")
            task.state = _State.FINISHED
            task.retries_left = retries_left
            self._drop_if_unneeded(task_id, task)
            return
        if not in_scope:
            return  # nobody holds a return: nothing to keep (and nothing depends on it yet)
        retryable = retries_left != 0
        kept_args = tuple(a for a in args if a in self._producer) if retryable else ()
        task = _Task(spec if retryable else None, size_bytes if retryable else 0, retries_left,
                     returns, kept_args, set(in_scope), is_retryable=retryable)
        self._tasks[task_id] = task
        for object_id in returns:
            self._producer[object_id] = task_id
        for object_id in kept_args:
            self._tasks[self._producer[object_id]].dependents += 1
        self._bytes += task.size_bytes
        self._evict_over_budget()

    def task_failed(self, task_id: TaskId) -> None:
        """A rebuild of ``task_id`` ended in an error (its returns now hold that error)."""
        task = self._tasks.get(task_id)
        if task is None or task.state is not _State.REBUILDING:
            return
        task.state = _State.FINISHED
        task.retries_left = 0
        self._drop_if_unneeded(task_id, task)

    def object_released(self, object_id: ObjectId) -> None:
        """An owned object left scope.  Unknown ids are ignored (most objects are not returns
        of kept tasks)."""
        task_id = self._producer.get(object_id)
        if task_id is None:
            return
        task = self._tasks[task_id]
        task.in_scope.discard(object_id)
        self._drop_if_unneeded(task_id, task)

    # --- decisions ------------------------------------------------------------------------
    def plan_recovery(self, object_id: ObjectId,
                      is_available: Callable[[ObjectId], bool]) -> RecoveryPlan:
        """Every copy of ``object_id`` (an owned object in scope) is gone: what to re-run.
        ``is_available(arg)`` says whether an argument's value can still be read."""
        task_id = self._producer.get(object_id)
        if task_id is None:
            return self._logged(object_id, RecoveryPlan(failure=Unrecoverable(
                object_id, LossReason.NO_LINEAGE, None)))
        if self._tasks[task_id].state is _State.REBUILDING:
            return self._logged(object_id, RecoveryPlan(is_pending=True))
        order: list[TaskId] = []
        failure = self._collect(task_id, object_id, is_available, order)
        if failure is not None:
            return self._logged(object_id, RecoveryPlan(failure=failure))
        resubmits = []
        for tid in order:
            task = self._tasks[tid]
            task.state = _State.REBUILDING
            if task.retries_left > 0:
                task.retries_left -= 1
            recreated = tuple(o for o in task.returns if o not in task.in_scope)
            task.in_scope.update(recreated)
            resubmits.append(Resubmit(tid, task.spec, recreated))
        self.resubmits_total += len(resubmits)
        return self._logged(object_id, RecoveryPlan(resubmits=tuple(resubmits)))

    def _collect(self, task_id: TaskId, object_id: ObjectId,
                 is_available: Callable[[ObjectId], bool], order: list[TaskId]) -> Optional[Unrecoverable]:
        """Post-order walk (iterative) over the tasks that must run again: producers of
        unavailable arguments first.  Returns why one of them cannot run, or None."""
        seen: set[TaskId] = set()
        stack: list[tuple[TaskId, ObjectId, bool]] = [(task_id, object_id, False)]
        while stack:
            tid, oid, expanded = stack.pop()
            if expanded:
                order.append(tid)
                continue
            if tid in seen:
                continue
            seen.add(tid)
            task = self._tasks[tid]
            reason = _why_not(task)
            if reason is not None:
                return Unrecoverable(oid, reason, tid)
            stack.append((tid, oid, True))
            for arg in task.args:
                if is_available(arg):
                    continue
                producer = self._producer.get(arg)
                if producer is None:
                    return Unrecoverable(arg, LossReason.NO_LINEAGE, None)
                if self._tasks[producer].state is _State.REBUILDING:
                    continue  # already being rebuilt: the resubmitted task waits for it
                stack.append((producer, arg, False))
        return None

    # --- lifetime -------------------------------------------------------------------------
    def _drop_if_unneeded(self, task_id: TaskId, task: _Task) -> None:
        """Rule 1, with the cascade through arguments' producers."""
        stack = [(task_id, task)]
        while stack:
            tid, t = stack.pop()
            if self._tasks.get(tid) is not t:
                continue   # reached twice through two dependents, and dropped already
            if t.in_scope or t.dependents or t.state is _State.REBUILDING:
                continue
            del self._tasks[tid]
            self._bytes -= t.size_bytes
            for object_id in t.returns:
                del self._producer[object_id]
            for object_id in t.args:
                producer_id = self._producer.get(object_id)
                if producer_id is None:
                    raise LineageError(f"argument {object_id.hex()} of {tid.hex()} lost its producer")
                producer = self._tasks[producer_id]
                producer.dependents -= 1
                stack.append((producer_id, producer))

    def _evict_over_budget(self) -> None:
        """Rule 2: drop the oldest specs (not entries) until the kept bytes fit."""
        if self._bytes <= self.max_bytes:
            return
        for task_id, task in self._tasks.items():
            if self._bytes <= self.max_bytes:
                break
            if task.spec is None or task.state is _State.REBUILDING:
                continue
            self._bytes -= task.size_bytes
            self.evicted_tasks_total += 1
            self.evicted_bytes_total += task.size_bytes
            task.spec, task.size_bytes = None, 0
            self._log.append(("evicted", task_id, ""))

    # --- queries ----------------------------------------------------------------------------
    def stats(self) -> LineageStats:
        specs = sum(1 for t in self._tasks.values() if t.spec is not None)
        return LineageStats(len(self._tasks), specs, self._bytes, self.max_bytes,
                            self.evicted_tasks_total, self.evicted_bytes_total, self.resubmits_total)

    def producer_of(self, object_id: ObjectId) -> Optional[TaskId]:
        return self._producer.get(object_id)

    def is_rebuilding(self, task_id: TaskId) -> bool:
        task = self._tasks.get(task_id)
        return task is not None and task.state is _State.REBUILDING

    def __len__(self) -> int:
        return len(self._tasks)

    def story(self, key: bytes) -> list[tuple[str, bytes, str]]:
        return [entry for entry in self._log if entry[1] == key]

    def _logged(self, object_id: ObjectId, plan: RecoveryPlan) -> RecoveryPlan:
        if plan.failure is not None:
            what = f"unrecoverable:{plan.failure.reason.value}"
        elif plan.is_pending:
            what = "pending"
        else:
            what = "resubmit:" + ",".join(r.task_id.hex() for r in plan.resubmits)
        self._log.append(("lost", object_id, what))
        return plan

    # --- invariants -------------------------------------------------------------------------
    def check_invariants(self) -> None:
        dependents: dict[TaskId, int] = {}
        total = 0
        for task_id, task in self._tasks.items():
            _check(bool(task.in_scope or task.dependents or task.state is _State.REBUILDING),
                   f"task {task_id.hex()} kept for nothing")
            _check(task.in_scope <= set(task.returns), f"task {task_id.hex()}: foreign object in scope")
            _check(task.spec is not None or task.size_bytes == 0, f"task {task_id.hex()}: bytes without spec")
            for object_id in task.returns:
                _check(self._producer.get(object_id) == task_id, f"{object_id.hex()}: producer index wrong")
            for object_id in task.args:
                producer = self._producer.get(object_id)
                _check(producer is not None, f"{task_id.hex()}: argument without producer")
                assert producer is not None
                dependents[producer] = dependents.get(producer, 0) + 1
            total += task.size_bytes
        for task_id, task in self._tasks.items():
            _check(task.dependents == dependents.get(task_id, 0), f"{task_id.hex()}: dependents count wrong")
        _check(len(self._producer) == sum(len(t.returns) for t in self._tasks.values()), "stale producer entries")
        _check(total == self._bytes, "kept bytes disagree with the entries")


def _why_not(task: _Task) -> Optional[LossReason]:
    if not task.is_retryable:
        return LossReason.NOT_RETRYABLE
    if task.spec is None:
        return LossReason.LINEAGE_EVICTED
    if task.retries_left == 0:
        return LossReason.MAX_ATTEMPTS_EXCEEDED
    return None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise LineageError(f"invariant broken: {message}")
