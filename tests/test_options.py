"""ember.options: the one option table, its validation rules, resources and merging."""
from __future__ import annotations

from typing import Any

import pytest

from ember import options as O


class FakeStrategy:
    _ember_strategy = "NODE_AFFINITY"


class AppError(Exception):
    pass


# ----------------------------------------------------------------- table and defaults
def test_ray_task_defaults() -> None:
    d = O.defaults("task")
    assert d["num_cpus"] == 1 and d["num_returns"] == 1 and d["max_retries"] == 3
    assert d["retry_exceptions"] is False and d["max_calls"] == 0
    assert d["enable_task_events"] is True and d["scheduling_strategy"] is None
    assert "max_restarts" not in d and "concurrency_group" not in d


def test_ray_actor_defaults() -> None:
    d = O.defaults("actor")
    assert d["num_cpus"] is None  # 1 to schedule, 0 to run: see resolve_actor_resources
    assert d["max_restarts"] == 0 and d["max_task_retries"] == 0
    assert d["max_pending_calls"] == -1 and d["get_if_exists"] is False
    assert d["lifetime"] is None and d["namespace"] is None
    assert "max_retries" not in d and "num_returns" not in d and "max_calls" not in d


def test_method_defaults_inherit_from_actor() -> None:
    d = O.defaults("method")
    assert d["num_returns"] == 1
    assert d["max_task_retries"] is None and d["retry_exceptions"] is None
    assert set(d) == set(O.names_for("method"))
    assert "num_cpus" not in d


def test_every_row_is_consistent() -> None:
    for name, opt in O.OPTIONS.items():
        assert opt.applies_to and opt.applies_to <= {"task", "actor", "method"}, name
        for kind in opt.applies_to:
            default = opt.default_for(kind)  # type: ignore[arg-type]
            if default is not None:
                opt.validate(name, default)  # defaults pass their own checks


def test_with_defaults_treats_none_as_not_given() -> None:
    full = O.with_defaults({"num_cpus": None, "max_retries": 5, "placement_group": None}, "task")
    assert full["num_cpus"] == 1 and full["max_retries"] == 5
    assert full["placement_group"] is None  # explicit "no placement group"


def test_required_option_names_present() -> None:
    task = set(O.names_for("task"))
    assert {"num_returns", "num_cpus", "num_gpus", "memory", "object_store_memory",
            "resources", "accelerator_type", "max_calls", "max_retries",
            "retry_exceptions", "runtime_env", "scheduling_strategy", "name",
            "label_selector", "_metadata", "enable_task_events"} <= task
    actor = set(O.names_for("actor"))
    assert {"max_restarts", "max_task_retries", "max_concurrency", "max_pending_calls",
            "name", "namespace", "lifetime", "get_if_exists", "concurrency_groups",
            "num_cpus", "resources", "runtime_env", "scheduling_strategy"} <= actor


# ------------------------------------------------------------------------ validation
@pytest.mark.parametrize("opts", [
    {},
    {"num_cpus": 0.5, "num_gpus": 0.25, "memory": 1024, "resources": {"disk": 2}},
    {"num_gpus": 2}, {"num_gpus": 2.0}, {"num_cpus": 0},
    {"num_returns": 3}, {"num_returns": 0}, {"num_returns": "streaming"},
    {"num_returns": "dynamic"}, {"num_returns": None},
    {"max_retries": -1}, {"max_retries": 0}, {"retry_exceptions": True},
    {"retry_exceptions": [AppError, ValueError]}, {"retry_exceptions": (KeyError,)},
    {"scheduling_strategy": "SPREAD"}, {"scheduling_strategy": "DEFAULT"},
    {"scheduling_strategy": None}, {"scheduling_strategy": FakeStrategy()},
    {"label_selector": {"region": "us-west", "gpu": "in(a100,h100)"}},
    {"fallback_strategy": [{"label_selector": {"zone": "a"}}]},
    {"runtime_env": {"env_vars": {"A": "1"}}}, {"name": "f"},
    {"_metadata": {"ns": {"k": 1}}}, {"enable_task_events": False},
    {"accelerator_type": "A100"}, {"max_calls": 10},
    {"num_cpus": 0.0001},
])
def test_valid_task_options(opts: dict[str, Any]) -> None:
    O.validate_task_options(opts, in_options=False)


@pytest.mark.parametrize("opts,error,match", [
    ({"num_cpu": 1}, ValueError, "Invalid option keyword num_cpu for remote functions"),
    ({"max_restarts": 1}, ValueError, "Invalid option keyword max_restarts"),
    ({"num_cpus": "1"}, TypeError, "The type of keyword 'num_cpus' must be"),
    ({"num_cpus": True}, TypeError, "num_cpus"),
    ({"num_cpus": -1}, ValueError, "cannot be negative"),
    ({"num_gpus": -0.5}, ValueError, "cannot be negative"),
    ({"memory": -1}, ValueError, "cannot be negative"),
    ({"num_cpus": 0.00001}, ValueError, "precision"),
    ({"num_cpus": float("nan")}, ValueError, "finite"),
    ({"num_gpus": 1.5}, ValueError, "whole number"),
    ({"resources": {"CPU": 1}}, ValueError, "Use the 'num_cpus' keyword"),
    ({"resources": {"GPU": 1}}, ValueError, "Use the 'num_gpus' keyword"),
    ({"resources": {"memory": 10}}, ValueError, "Use the 'memory' keyword"),
    ({"resources": {"custom": -2}}, ValueError, "cannot be negative"),
    ({"resources": {"custom": "2"}}, ValueError, "must be a number"),
    ({"resources": {1: 2}}, ValueError, "must be strings"),
    ({"resources": [("a", 1)]}, TypeError, "resources"),
    ({"num_returns": -1}, ValueError, "num_returns"),
    ({"num_returns": "many"}, ValueError, "num_returns"),
    ({"max_retries": -2}, ValueError, "-1 represents infinity"),
    ({"max_calls": -1}, ValueError, "max_calls"),
    ({"retry_exceptions": [1]}, ValueError, "retry_exceptions must be"),
    ({"retry_exceptions": "yes"}, TypeError, "retry_exceptions"),
    ({"scheduling_strategy": "PACK"}, ValueError, "scheduling_strategy must be"),
    ({"scheduling_strategy": object()}, ValueError, "scheduling_strategy must be"),
    ({"label_selector": {"a": 1}}, ValueError, "label_selector"),
    ({"fallback_strategy": [{"num_cpus": 1}]}, ValueError, "fallback_strategy"),
    ({"runtime_env": "env"}, TypeError, "runtime_env"),
    ({"object_store_memory": 100}, ValueError, "not implemented for tasks"),
    ({"placement_group": "mine"}, ValueError, "placement_group"),
    ({"placement_group": object(), "scheduling_strategy": "SPREAD"}, ValueError,
     "deprecated"),
])
def test_invalid_task_options(opts: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        O.validate_task_options(opts, in_options=False)


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        O.validate_task_options({"bogus": 1}, in_options=False)
    assert "Valid ones are" in str(info.value) and "'num_cpus'" in str(info.value)


def test_max_calls_not_in_options() -> None:
    O.validate_task_options({"max_calls": 1}, in_options=False)
    with pytest.raises(ValueError, match="'max_calls' is not supported in '.options\\(\\)'"):
        O.validate_task_options({"max_calls": 1}, in_options=True)


@pytest.mark.parametrize("opts", [
    {}, {"max_restarts": -1, "max_task_retries": -1}, {"max_restarts": 2},
    {"max_task_retries": 3}, {"max_concurrency": 8}, {"max_pending_calls": 10},
    {"name": "a", "namespace": "ns", "lifetime": "detached", "get_if_exists": True},
    {"lifetime": "non_detached"}, {"lifetime": None},
    {"concurrency_groups": {"io": 2, "compute": 4}}, {"concurrency_groups": ["io"]},
    {"num_cpus": 2, "num_gpus": 1, "resources": {"slot": 1}},
    {"object_store_memory": 10 ** 6}, {"allow_out_of_order_execution": True},
    {"scheduling_strategy": FakeStrategy()},
])
def test_valid_actor_options(opts: dict[str, Any]) -> None:
    O.validate_actor_options(opts, in_options=False)


@pytest.mark.parametrize("opts,error,match", [
    ({"max_retries": 1}, ValueError, "Invalid option keyword max_retries for actors"),
    ({"num_returns": 2}, ValueError, "for actors"),
    ({"max_restarts": -2}, ValueError, "max_restarts"),
    ({"max_task_retries": "3"}, TypeError, "max_task_retries"),
    ({"max_concurrency": 0}, ValueError, "max_concurrency"),
    ({"lifetime": "forever"}, ValueError, "lifetime"),
    ({"get_if_exists": True}, ValueError, "actor name must be specified"),
    ({"namespace": ""}, ValueError, "namespace"),
    ({"name": ""}, ValueError, "empty"),
    ({"name": 3}, TypeError, "name"),
    ({"concurrency_groups": {"io": 0}}, ValueError, "limit >= 1"),
    ({"concurrency_groups": {"": 1}}, ValueError, "non-empty"),
    ({"resources": {"CPU": 2}}, ValueError, "num_cpus"),
    ({"num_gpus": 2.5}, ValueError, "whole number"),
])
def test_invalid_actor_options(opts: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        O.validate_actor_options(opts, in_options=False)


def test_concurrency_groups_not_in_options() -> None:
    with pytest.raises(ValueError, match="'concurrency_groups' is not supported"):
        O.validate_actor_options({"concurrency_groups": {"io": 1}}, in_options=True)


def test_method_options() -> None:
    O.validate_method_options({"num_returns": 2, "concurrency_group": "io",
                               "max_task_retries": 1, "retry_exceptions": [AppError],
                               "name": "m", "enable_task_events": False},
                              in_options=False)
    with pytest.raises(ValueError, match="for actor methods"):
        O.validate_method_options({"num_cpus": 1}, in_options=True)
    with pytest.raises(ValueError, match="num_returns"):
        O.validate_method_options({"num_returns": -3}, in_options=True)


# ------------------------------------------------------------------------- resources
@pytest.mark.parametrize("opts,shape", [
    ({}, {"CPU": 1.0}),
    ({"num_cpus": None}, {"CPU": 1.0}),
    ({"num_cpus": 0}, {}),
    ({"num_cpus": 2, "num_gpus": 0.5}, {"CPU": 2.0, "GPU": 0.5}),
    ({"memory": 1000.9}, {"CPU": 1.0, "memory": 1000.0}),
    ({"resources": {"disk": 3, "zero": 0}}, {"CPU": 1.0, "disk": 3.0}),
    ({"accelerator_type": "A100", "num_gpus": 1},
     {"CPU": 1.0, "GPU": 1.0, "accelerator_type:A100": 0.001}),
])
def test_resolve_task_resources(opts: dict[str, Any], shape: dict[str, float]) -> None:
    assert O.resolve_task_resources(opts) == shape


def test_default_actor_needs_cpu_to_schedule_only() -> None:
    assert O.resolve_actor_resources({}) == ({"CPU": 1.0}, {})
    assert O.resolve_actor_resources({"memory": 100}) == (
        {"CPU": 1.0, "memory": 100.0}, {"memory": 100.0})


@pytest.mark.parametrize("opts,shape", [
    ({"num_cpus": 2}, {"CPU": 2.0}),
    ({"num_cpus": 0}, {}),
    ({"num_gpus": 1}, {"CPU": 1.0, "GPU": 1.0}),
    ({"resources": {"slot": 1}}, {"CPU": 1.0, "slot": 1.0}),
    ({"num_cpus": 0, "resources": {"slot": 1}}, {"slot": 1.0}),
    ({"accelerator_type": "T4"}, {"CPU": 1.0, "accelerator_type:T4": 0.001}),
])
def test_actor_with_resources_holds_them_while_running(
        opts: dict[str, Any], shape: dict[str, float]) -> None:
    placement, running = O.resolve_actor_resources(opts)
    assert placement == shape and running == shape
    assert placement is not running


# --------------------------------------------------------------------------- merging
def test_merge_options_overrides_and_copies() -> None:
    base = {"num_cpus": 1, "resources": {"a": 1}, "name": "f"}
    merged = O.merge_options(base, {"num_cpus": 2, "resources": {"b": 1}})
    assert merged == {"num_cpus": 2, "resources": {"b": 1}, "name": "f"}
    assert base == {"num_cpus": 1, "resources": {"a": 1}, "name": "f"}


def test_merge_options_merges_metadata_per_namespace() -> None:
    base = {"_metadata": {"ns1": {"a": 1, "b": 2}, "ns2": {"x": 0}}}
    over = {"_metadata": {"ns1": {"b": 3}, "ns3": {"y": 1}}}
    merged = O.merge_options(base, over)
    assert merged["_metadata"] == {"ns1": {"a": 1, "b": 3}, "ns2": {"x": 0}, "ns3": {"y": 1}}
    assert base["_metadata"]["ns1"] == {"a": 1, "b": 2}  # untouched


def test_remote_usage_message_names_options() -> None:
    assert "num_returns" in O.REMOTE_DECORATOR_USAGE and "@ray.remote" in O.REMOTE_DECORATOR_USAGE


def test_docs_list_every_option_with_its_defaults() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "options.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line
            for line in doc.splitlines() if line.startswith("| `")}
    assert set(rows) == set(O.OPTIONS)
    for name, opt in O.OPTIONS.items():
        for kind in opt.applies_to:
            assert kind in rows[name].split("|")[3], (name, kind)
            assert repr(opt.default_for(kind)) in rows[name].split("|")[4], name  # type: ignore[arg-type]
