"""LineageTable (ember/logic/owner/lineage.py): what is kept, what is rebuilt, what fails."""
from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given, settings, strategies as st

from ember.logic.owner.lineage import LineageError, LineageTable, LossReason, RecoveryPlan


def oid(task: int, index: int = 1) -> bytes:
    return task.to_bytes(4, "big") + index.to_bytes(4, "little")


def tid(task: int) -> bytes:
    return task.to_bytes(4, "big")


def finish(table: LineageTable, task: int, *, args: tuple[int, ...] = (), retries_left: int = 3,
           size: int = 100, in_scope: bool = True) -> None:
    table.task_finished(tid(task), f"spec{task}", size, retries_left, (oid(task),),
                        (oid(task),) if in_scope else (), tuple(oid(a) for a in args))
    table.check_invariants()


def all_gone(_: bytes) -> bool:
    return False


def all_there(_: bytes) -> bool:
    return True


def test_a_lost_return_resubmits_its_task_and_spends_a_retry() -> None:
    t = LineageTable()
    finish(t, 1, retries_left=1)
    plan = t.plan_recovery(oid(1), all_there)
    assert [r.task_id for r in plan.resubmits] == [tid(1)] and plan.resubmits[0].spec == "spec1"
    assert plan.resubmits[0].recreated == ()
    assert t.plan_recovery(oid(1), all_there).is_pending   # no second run while one is going
    t.task_finished(tid(1), "spec1", 100, 0, (oid(1),), (oid(1),), ())
    again = t.plan_recovery(oid(1), all_there)
    assert again.failure is not None and again.failure.reason is LossReason.MAX_ATTEMPTS_EXCEEDED
    t.check_invariants()


def test_put_objects_and_unknown_ids_have_no_lineage() -> None:
    plan = LineageTable().plan_recovery(b"put-object", all_gone)
    assert plan.failure is not None and plan.failure.reason is LossReason.NO_LINEAGE


def test_max_retries_zero_keeps_no_spec_and_says_so() -> None:
    t = LineageTable()
    finish(t, 1, retries_left=0)
    assert t.stats().bytes == 0 and t.stats().specs == 0
    plan = t.plan_recovery(oid(1), all_there)
    assert plan.failure is not None and plan.failure.reason is LossReason.NOT_RETRYABLE


def test_unbounded_retries_stay_unbounded() -> None:
    t = LineageTable()
    finish(t, 1, retries_left=-1)
    for _ in range(5):
        assert t.plan_recovery(oid(1), all_there).resubmits
        t.task_finished(tid(1), "spec1", 100, -1, (oid(1),), (oid(1),), ())
    t.check_invariants()


def test_lineage_is_dropped_with_the_last_return_and_cascades_through_arguments() -> None:
    t = LineageTable()
    finish(t, 1)
    finish(t, 2, args=(1,))
    finish(t, 3, args=(2,))
    t.object_released(oid(1))
    t.object_released(oid(2))
    assert len(t) == 3          # 3 still needs 2, which needs 1
    t.object_released(oid(3))
    assert len(t) == 0 and t.stats().bytes == 0
    t.check_invariants()


def test_chain_with_freed_intermediates_rebuilds_producers_first() -> None:
    t = LineageTable()
    finish(t, 1)
    finish(t, 2, args=(1,))
    finish(t, 3, args=(2,))
    t.object_released(oid(1))
    t.object_released(oid(2))
    plan = t.plan_recovery(oid(3), all_gone)
    assert [r.task_id for r in plan.resubmits] == [tid(1), tid(2), tid(3)]
    assert [r.recreated for r in plan.resubmits] == [(oid(1),), (oid(2),), ()]
    t.check_invariants()
    for task in (1, 2, 3):
        t.task_finished(tid(task), f"spec{task}", 100, 2, (oid(task),), (), ())
        t.check_invariants()
    for task in (1, 2):   # the shell drops its holds on the recreated arguments
        t.object_released(oid(task))
    t.object_released(oid(3))
    assert len(t) == 0
    t.check_invariants()


def test_available_arguments_are_not_rebuilt() -> None:
    t = LineageTable()
    finish(t, 1)
    finish(t, 2, args=(1,))
    plan = t.plan_recovery(oid(2), all_there)
    assert [r.task_id for r in plan.resubmits] == [tid(2)]


def test_an_argument_that_cannot_be_rebuilt_fails_the_whole_plan() -> None:
    t = LineageTable()
    finish(t, 1, retries_left=0)
    finish(t, 2, args=(1,))
    plan = t.plan_recovery(oid(2), all_gone)
    assert plan.failure is not None and plan.failure.object_id == oid(1)
    assert plan.failure.reason is LossReason.NOT_RETRYABLE
    assert not t.is_rebuilding(tid(2))   # nothing half-started
    t.check_invariants()


def test_specs_over_the_budget_are_evicted_oldest_first_and_counted() -> None:
    t = LineageTable(max_lineage_bytes=250)
    for task in (1, 2, 3):
        finish(t, task, size=100)
    stats = t.stats()
    assert stats.bytes == 200 and stats.evicted_tasks_total == 1 and stats.evicted_bytes_total == 100
    plan = t.plan_recovery(oid(1), all_there)
    assert plan.failure is not None and plan.failure.reason is LossReason.LINEAGE_EVICTED
    assert t.plan_recovery(oid(3), all_there).resubmits


def test_finishing_twice_without_a_rebuild_is_a_caller_bug() -> None:
    t = LineageTable()
    finish(t, 1)
    with pytest.raises(LineageError):
        finish(t, 1)


def test_a_failed_rebuild_spends_the_task() -> None:
    t = LineageTable()
    finish(t, 1)
    assert t.plan_recovery(oid(1), all_there).resubmits
    t.task_failed(tid(1))
    plan = t.plan_recovery(oid(1), all_there)
    assert plan.failure is not None and plan.failure.reason is LossReason.MAX_ATTEMPTS_EXCEEDED
    t.check_invariants()


# --- property test: random DAGs, random losses --------------------------------------------------------

class _World:
    """A model owner: objects (one return per task) in scope or not, available or lost; it follows
    the table's plans the way the shell does and checks the promises."""

    def __init__(self, max_bytes: int) -> None:
        self.table = LineageTable(max_lineage_bytes=max_bytes)
        self.args: dict[int, tuple[int, ...]] = {}
        self.max_retries: dict[int, int] = {}
        self.runs: dict[int, int] = {}
        self.in_scope: set[int] = set()
        self.available: set[int] = set()   # has a copy somewhere
        self.pending: set[int] = set()     # waiting for a rebuild's result
        self.queue: list[int] = []         # resubmitted tasks not run yet
        self.delivered_while_ready = 0
        self.failed: set[int] = set()     # its result holds an error: read as such, never rebuilt

    def submit(self, task: int, args: tuple[int, ...], max_retries: int) -> None:
        # the owner holds the args while the task runs, so they are available at the first run
        self.args[task], self.max_retries[task], self.runs[task] = args, max_retries, 1
        self.in_scope.add(task)
        self.available.add(task)
        self.table.task_finished(tid(task), task, 10, max_retries, (oid(task),), (oid(task),),
                                 tuple(oid(a) for a in args))

    def release(self, task: int) -> None:
        # a resubmitted task holds its arguments (the shell's arg_refs) until it ran
        needed = any(task in self.args[q] for q in self.queue)
        if task in self.in_scope and task not in self.pending and not needed:
            self.in_scope.discard(task)
            self.available.discard(task)
            self.table.object_released(oid(task))

    def lose(self, task: int) -> None:
        self.available.discard(task)

    def get(self, task: int) -> Optional[RecoveryPlan]:
        if task not in self.in_scope or task in self.available or task in self.pending or task in self.failed:
            return None   # a copy exists, a rebuild is on the way, or it failed: never reported lost
        plan = self.table.plan_recovery(oid(task), lambda o: int.from_bytes(o[:4], "big") in self.available
                                        or int.from_bytes(o[:4], "big") in self.pending)
        if plan.failure is not None:
            self.failed.add(task)   # the shell completes the object with the error
        for r in plan.resubmits:
            t = int.from_bytes(r.task_id, "big")
            returns_unavailable = t not in self.available
            assert returns_unavailable, "a task whose result still had a copy was resubmitted"
            self.in_scope.add(t)
            self.pending.add(t)
            self.queue.append(t)
        return plan

    def run_next(self) -> None:
        if not self.queue:
            return
        t = self.queue.pop(0)
        missing = [a for a in self.args[t] if a not in self.available]
        if missing:   # an argument lost after the resubmission: its executor reports it, then waits
            for a in missing:
                plan = self.get(a)
                if (plan is not None and plan.failure is not None) or a in self.failed:
                    self.pending.discard(t)    # the task fails with its argument's error
                    self.failed.add(t)
                    self.table.task_failed(tid(t))
                    return
            self.queue.append(t)
            return
        assert all(a in self.available for a in self.args[t]), "ran before its arguments were rebuilt"
        self.runs[t] += 1
        if t not in self.pending:
            self.delivered_while_ready += 1
        self.pending.discard(t)
        self.available.add(t)
        mr = self.max_retries[t]
        self.table.task_finished(tid(t), t, 10, -1 if mr < 0 else max(0, mr - (self.runs[t] - 1)),
                                 (oid(t),), (oid(t),), ())


_ops = st.lists(st.tuples(st.sampled_from(["submit", "release", "lose", "get", "run", "run"]),
                          st.integers(0, 30), st.integers(-1, 3)), min_size=1, max_size=120)


@settings(max_examples=200, deadline=None)
@given(_ops, st.sampled_from([10_000, 35, 0]))
def test_random_failure_sequences_keep_the_promises(ops: list, max_bytes: int) -> None:
    w = _World(max_bytes)
    next_task = 0
    for op, n, retries in ops:
        live = sorted(w.in_scope)
        if op == "submit":
            args = tuple(sorted({live[(n + i) % len(live)] for i in range(n % 3)})) if live else ()
            args = tuple(a for a in args if a in w.available)
            w.submit(next_task, args, retries)
            next_task += 1
        elif op == "release" and live:
            w.release(live[n % len(live)])
        elif op == "lose" and live:
            w.lose(live[n % len(live)])
        elif op == "get" and live:
            w.get(live[n % len(live)])
        elif op == "run":
            w.run_next()
        w.table.check_invariants()
    while w.queue:
        w.run_next()
        w.table.check_invariants()
    assert w.delivered_while_ready == 0, "a result was delivered to a get twice"
    for t, runs in w.runs.items():
        mr = w.max_retries[t]
        if mr >= 0:
            assert runs <= 1 + mr, f"task {t} ran {runs} times with max_retries={mr}"
    for t in list(w.in_scope):
        w.release(t)
    assert len(w.table) == 0 and w.table.stats().bytes == 0


def test_a_producer_reached_through_two_dependents_is_dropped_once() -> None:
    """Found by the property test: 2 takes 0 and 1, 1 takes 0; dropping 2 reaches 0 twice."""
    t = LineageTable()
    finish(t, 0)
    finish(t, 1, args=(0,))
    finish(t, 2, args=(0, 1))
    for task in (0, 1, 2):
        t.object_released(oid(task))
        t.check_invariants()
    assert len(t) == 0
