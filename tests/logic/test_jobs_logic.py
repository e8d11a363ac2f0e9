"""The job table and request parsing (pure): events in, states and errors out."""
from __future__ import annotations

import pytest

from ember.logic import runtime_env as rt
from ember.logic.control.jobs import (TRANSITIONS, JobRecord, JobRequestError, JobStatus, JobTable,
                                     failure_message, parse_submit)
from ember.logic.fsm import InvalidTransition
from ember.logic.node import leases as L
from ember.logic.resources import ResourceSet

S = JobStatus


@pytest.fixture
def table():
    t = JobTable()
    yield t
    t.check_invariants()


def test_parse_submit_accepts_ray_fields_and_generates_an_id():
    rec = parse_submit({"entrypoint": "python x.py", "metadata": {"a": "b"}, "entrypoint_num_cpus": 1,
                        "entrypoint_resources": {"special": 2}, "runtime_env": {"env_vars": {"K": "V"}}}, "gen1")
    assert rec.submission_id == "gen1" and rec.status is S.PENDING
    assert rec.entrypoint_num_cpus == 1.0 and rec.entrypoint_resources == {"special": 2.0}
    assert parse_submit({"entrypoint": "x", "job_id": "old-style"}, "g").submission_id == "old-style"
    ray_style = {"entrypoint": "x", "submission_id": None, "runtime_env": None, "metadata": None,
                 "entrypoint_num_cpus": None, "entrypoint_label_selector": None}
    assert parse_submit(ray_style, "g").submission_id == "g"


@pytest.mark.parametrize("body, words", [
    (None, "JSON object"), ({"entrypoint": 3}, "entrypoint"), ({"entrypoint": "x", "zzz": 1}, "unknown field"),
    ({"entrypoint": "x", "submission_id": "a b"}, "submission_id"),
    ({"entrypoint": "x", "metadata": {"a": 1}}, "metadata"),
    ({"entrypoint": "x", "entrypoint_num_gpus": True}, "entrypoint_num_gpus"),
    ({"entrypoint": "x", "entrypoint_resources": {"CPU": 1}}, "entrypoint_num_cpus"),
    ({"entrypoint": "x", "runtime_env": []}, "runtime_env"),
])
def test_parse_submit_rejects_bad_bodies(body, words):
    with pytest.raises(JobRequestError, match=words):
        parse_submit(body, "gen")


def test_lifecycle_moves_and_terminal_jobs_ignore_late_events(table):
    table.add(parse_submit({"entrypoint": "x"}, "j1"), 100.0, "submit")
    assert table.move("j1", S.RUNNING, 101.0, "started", message="running")
    assert table.move("j1", S.SUCCEEDED, 102.0, "exit", exit_code=0)
    rec = table.jobs["j1"]
    assert rec.end_time == 102_000 and rec.driver_exit_code == 0
    assert not table.move("j1", S.STOPPED, 103.0, "late-stop")  # ignored, and logged
    assert [e.cause_id for e in table.story("j1")] == ["submit", "started", "exit", "late-stop"]


def test_illegal_move_raises_naming_both_states(table):
    table.add(parse_submit({"entrypoint": "x"}, "j2"), 1.0, "submit")
    with pytest.raises(InvalidTransition, match="PENDING -> SUCCEEDED"):
        table.move("j2", S.SUCCEEDED, 2.0, "bogus")
    assert (S.PENDING, S.STOPPED) in TRANSITIONS and (S.SUCCEEDED, S.RUNNING) not in TRANSITIONS


def test_duplicate_ids_and_deleting_live_jobs_are_refused(table):
    table.add(parse_submit({"entrypoint": "x"}, "j3"), 1.0, "submit")
    with pytest.raises(JobRequestError, match="already exists"):
        table.add(parse_submit({"entrypoint": "y"}, "j3"), 2.0, "submit")
    with pytest.raises(JobRequestError, match="stop it before deleting"):
        table.remove("j3")
    table.move("j3", S.STOPPED, 3.0, "stop")
    assert table.remove("j3").status is S.STOPPED


def test_record_round_trips_through_json():
    rec = parse_submit({"entrypoint": "x", "metadata": {"k": "v"}}, "j4")
    rec.status = S.FAILED
    back = JobRecord.from_json(rec.to_json())
    assert back == rec and back.to_json()["job_id"] == "j4"


def test_failure_message_has_code_and_tail():
    assert "exit code 2" in failure_message(2, "boom\n") and "boom" in failure_message(2, "boom\n")
    assert "signal 9" in failure_message(-9, "")


def test_runtime_env_validation_and_merge():
    assert rt.validate({"uv": ["a"]}) == {"pip": ["a"]}
    with pytest.raises(ValueError, match="unknown runtime_env field"):
        rt.validate({"workdir": "."})
    with pytest.raises(TypeError, match="env_vars"):
        rt.validate({"env_vars": {"a": 1}})
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        rt.validate({"config": {"setup_timeout_seconds": 0}})
    merged = rt.merge({"env_vars": {"A": "1", "B": "1"}, "working_dir": "w"}, {"env_vars": {"B": "2"}})
    assert merged == {"env_vars": {"A": "1", "B": "2"}, "working_dir": "w"}
    assert rt.env_key({}) == "" and rt.env_key({"a": 1}) == rt.env_key({"a": 1}) != rt.env_key({"a": 2})


def _req(n, env_key=""):
    return L.LeaseRequest(("r", n), "client", b"job1", ResourceSet({"CPU": 1}), ["DEFAULT"], env_key=env_key)


def test_workers_are_pooled_per_env_and_a_failed_env_fails_only_its_requests():
    lm = L.LeaseManager(b"node0000", {"CPU": 4})
    eff = lm.on_lease_requested(_req(1, "envA"))
    start = [e for e in eff if isinstance(e, L.StartWorker)]
    assert len(start) == 1 and start[0].env_key == "envA"
    lm.on_lease_requested(_req(2, "envB"))
    b_worker = [w for w in lm.workers.values() if w.env_key == "envB"][0]
    eff = lm.on_worker_registered(start[0].worker_id, "addrA")
    assert [e.req_id for e in eff if isinstance(e, L.GrantLease)] == [("r", 1)]
    eff = lm.on_worker_start_failed(b_worker.worker_id, "RuntimeEnvSetupError", "pip failed")
    assert [(e.req_id, e.message) for e in eff if isinstance(e, L.FailLease)] == [(("r", 2), "pip failed")]
    assert b_worker.worker_id not in lm.workers
    lm.check_invariants()


def test_actor_setup_failure_makes_a_waiting_actor_dead_without_restart():
    from ember.logic.control import actors as A
    table = A.ActorTable()
    spec = A.ActorSpec(actor_id=b"a1", job_id=b"j", owner_address="o", owner_worker_id=b"w", class_name="C",
                       creation_spec=b"", name="", namespace="", is_detached=False, resources={},
                       scheduling_strategy=["DEFAULT"], max_restarts=3, placement_resources={})
    table.handle(A.ActorRegistered(spec=spec, request_id=1, cause_id="reg"), 0.0)
    table.handle(A.ActorSetupFailed(actor_id=b"a1", message="pip failed", error_bytes=b"x", cause_id="env"), 1.0)
    rec = table.get(b"a1")
    assert rec.state is A.ActorState.DEAD and rec.death.message == "pip failed"
    table.check_invariants()
