"""Dask on ember: graphs run as ember tasks, results travel as ember objects."""
from __future__ import annotations

import os
import sys

import cloudpickle
import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import ember
from ember.util.dask import (disable_dask_on_ember, disable_dask_on_ray, ember_dask_get, enable_dask_on_ember,
                             enable_dask_on_ray, ray_dask_get)

pytestmark = pytest.mark.timeout(120)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_ray_names_are_the_same_functions():
    assert ray_dask_get is ember_dask_get
    assert enable_dask_on_ray is enable_dask_on_ember and disable_dask_on_ray is disable_dask_on_ember


def test_array_reduction(cluster):
    x = da.arange(2_000_000, chunks=250_000, dtype=np.float64)
    assert (x * 2).sum().compute(scheduler=ember_dask_get) == 2 * np.arange(2_000_000, dtype=np.float64).sum()
    y = da.ones((400, 400), chunks=(100, 100))
    assert np.array_equal(y.dot(y.T).compute(scheduler=ember_dask_get), np.full((400, 400), 400.0))


def test_dataframe_groupby(cluster):
    df = pd.DataFrame({"k": np.arange(3000) % 11, "x": np.arange(3000, dtype=np.int64), "y": np.ones(3000)})
    ddf = dd.from_pandas(df, npartitions=6)
    got = ddf.groupby("k").agg({"x": "sum", "y": "count"}).compute(scheduler=ember_dask_get)
    expected = df.groupby("k").agg({"x": "sum", "y": "count"})
    pd.testing.assert_frame_equal(got.sort_index(), expected)


def test_tasks_run_in_ember_workers(cluster):
    @dask.delayed
    def where(i):
        return os.getpid(), ember.get_runtime_context().get_task_id()

    out = dask.compute(*[where(i) for i in range(6)], scheduler=ember_dask_get)
    assert all(task_id for _, task_id in out) and os.getpid() not in {pid for pid, _ in out}


def test_results_travel_as_zero_copy_objects(cluster):
    @dask.delayed
    def big(n):
        return np.arange(n, dtype=np.float64)

    @dask.delayed
    def inspect(arr):
        # a value read from the node's shared-memory store is a read-only view, not a copy
        return arr.flags.writeable, float(arr.sum())

    writeable, total = inspect(big(1_000_000)).compute(scheduler=ember_dask_get)
    assert writeable is False and total == float(np.arange(1_000_000, dtype=np.float64).sum())


def test_nested_keys_and_literal_data(cluster):
    a = dask.delayed(sum)([1, 2, 3])
    b = dask.delayed(lambda v: v * 10)(a)
    assert dask.compute({"a": a, "pair": [a, b]}, scheduler=ember_dask_get) == ({"a": 6, "pair": [6, 60]},)
    graph = {"x": 1, "y": (lambda v: v + 1, "x"), "z": "y"}
    assert ember_dask_get(graph, ["z", ["x", "y"]]) == [2, [1, 2]]
    assert ember_dask_get(graph, "y") == 2


def test_errors_reach_the_caller(cluster):
    @dask.delayed
    def boom(_):
        raise KeyError("dask-task")

    with pytest.raises(KeyError, match="dask-task"):
        boom(1).compute(scheduler=ember_dask_get)


def test_persist_keeps_object_refs_and_remote_args(cluster):
    @dask.delayed
    def custom():
        return ember.get_runtime_context().get_assigned_resources()

    (refs,) = dask.compute(custom(), scheduler=ember_dask_get, ray_persist=True,
                           ray_remote_args={"num_cpus": 0, "resources": {"custom": 1}})
    assert isinstance(refs, ember.ObjectRef)
    assert ember.get(refs) == {"custom": 1.0}


def test_enable_dask_on_ember(cluster):
    x = da.ones(1000, chunks=100)
    with enable_dask_on_ember():
        assert dask.config.get("scheduler") is ember_dask_get
        assert x.sum().compute() == 1000
    assert dask.config.get("scheduler", None) is not ember_dask_get
    enable_dask_on_ray()
    try:
        assert dask.config.get("scheduler") is ember_dask_get
    finally:
        disable_dask_on_ray()
    assert dask.config.get("scheduler", None) is None
