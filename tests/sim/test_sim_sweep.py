"""A short seed sweep of the simulator at small sizes, faults on (docs/scale.md, "The simulator").

Every run drives ember's shipping logic (lease managers, control-store tables, owners' key
queues and reference tables, the autoscaler planner) with the invariants checked after every
event; a failure message carries the seed and the command that reproduces it.  The longer
sweep is ``python -m ember.sim --workload W --nodes 200 --seeds 50`` (docs/scale.md).
"""
import pytest

from ember.sim import faults as F
from ember.sim.run import RunSpec, repro_line, run, shrink

SIZES = {"tasks": 600, "actors": 150, "pgs": 25, "autoscaler": 120}


def _check(spec):
    r = run(spec)
    assert r.ok, f"seed {spec.seed}: {r.error}\nrepro: {repro_line(spec, r.faults)}"
    return r


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workload", sorted(SIZES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seed_sweep(workload, seed):
    spec = RunSpec(workload=workload, nodes=8, seed=seed, size=SIZES[workload], fault_rate=0.4, loss=1e-4,
                   until_s=900.0)
    r = _check(spec)
    assert r.events > 0 and r.makespan_s > 0


@pytest.mark.timeout(300)
def test_same_seed_same_run():
    spec = RunSpec(workload="tasks", nodes=8, seed=11, size=400, fault_rate=0.5, loss=1e-4)
    a, b = run(spec), run(spec)
    assert (a.events, a.makespan_s, a.head_msgs, a.trace) == (b.events, b.makespan_s, b.head_msgs, b.trace)


@pytest.mark.timeout(300)
def test_head_failover_and_a_paused_head_are_fenced():
    """A paused head that runs again after a standby took the lease must not write (epoch fencing)."""
    plan = [F.Fault(3.0, "pause", 0, 8.0)]
    r = _check(RunSpec(workload="actors", nodes=8, seed=4, size=120, faults=plan, loss=0.0))
    assert r.extra["heads"] == 2
    assert r.extra["fenced writes refused"] >= 1


@pytest.mark.timeout(300)
def test_pg_cancel_to_a_node_not_yet_back_after_failover_is_not_lost():
    """Found by the simulator (seed 3, one failover): a group removed right after a takeover,
    before its nodes re-registered, left its bundles held on them for ever."""
    _check(RunSpec(workload="pgs", nodes=30, seed=3, loss=0.0, faults=[F.Fault(4.042, "failover", 20, 0.0)]))


@pytest.mark.timeout(300)
def test_actor_created_during_failover_is_not_stuck_or_run_twice():
    """Found by the simulator (seed 3, one failover): an actor whose __init__ was under way at the
    takeover stayed PENDING_CREATION, and a kill with restart then ran it twice at once."""
    _check(RunSpec(workload="actors", nodes=30, seed=3, loss=0.0, faults=[F.Fault(4.042, "failover", 20, 0.0)]))


@pytest.mark.timeout(300)
def test_a_broken_invariant_is_reported_with_its_seed_and_shrunk(monkeypatch):
    """Break the owner on purpose (end a task twice): the run fails naming the invariant, and
    shrinking keeps a plan that still fails the same way."""
    from ember.sim import owner as O
    real = O.SimOwner._end

    def twice(self, task, state, error):
        real(self, task, state, error)
        if state == O.FINISHED and task.task_id.endswith((7).to_bytes(8, "big")):
            real(self, task, state, error)

    monkeypatch.setattr(O.SimOwner, "_end", twice)
    spec = RunSpec(workload="tasks", nodes=6, seed=2, size=60, fault_rate=0.5)
    r = run(spec)
    assert not r.ok and "ended twice" in r.error
    small_spec, small = shrink(spec, r, budget=8)
    assert not small.ok and "ended twice" in small.error and len(small.faults) <= len(r.faults)
    assert "--seed 2" in repro_line(small_spec, small.faults)


@pytest.mark.timeout(300)
def test_kill_with_restart_during_a_partition_never_runs_the_actor_twice():
    """Found by the simulator (actors, 12 nodes, seed 11, one partition): a kill with restart
    scheduled the new incarnation at once while the kill was held by the partition."""
    _check(RunSpec(workload="actors", nodes=12, seed=11, loss=1e-5, faults=[F.Fault(1.195, "partition", 6, 13.025)]))
