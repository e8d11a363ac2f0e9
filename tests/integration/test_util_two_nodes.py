"""The scikit-learn (joblib) and Dask examples on a two-node cluster (two node daemons started
with the CLI on this machine, 1 CPU each), plus a Pool and a Queue spanning both nodes."""
from __future__ import annotations

import sys
import time
from typing import Iterator

import cloudpickle
import dask
import dask.array as da
import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
import pytest

import ember
from cli_harness import CliHarness
from ember.util.dask import ember_dask_get
from ember.util.joblib import register_ember
from ember.util.multiprocessing import Pool
from ember.util.queue import Queue

pytestmark = pytest.mark.timeout(240)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliHarness]:
    if ember.is_initialized():
        ember.shutdown()
    harness = CliHarness(str(tmp_path_factory.mktemp("ember_util_two_nodes")))
    patch = pytest.MonkeyPatch()
    try:
        port = harness.start_head("--num-cpus", "1")
        joined = harness.ember("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1")
        assert joined.returncode == 0, f"{joined.stdout}\n{joined.stderr}"
        patch.setenv("EMBER_CLUSTER_TOKEN", harness.token())
        patch.delenv("EMBER_ADDRESS", raising=False)
        patch.delenv("RAY_ADDRESS", raising=False)
        ember.init(address=f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while len([n for n in ember.nodes() if n["Alive"]]) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield harness
    finally:
        ember.shutdown()
        patch.undo()
        stopped = harness.ember("stop")
        leftovers = harness.kill_leftovers()
        assert stopped.returncode == 0, stopped.stderr
        assert not leftovers, f"processes left after ember stop: {leftovers}"


def node_after(seconds):
    time.sleep(seconds)
    return ember.get_runtime_context().get_node_id()


def nodes_used(run, attempts=5):
    """The node ids ``run()`` reports; tried again while it saw one node only: where a task
    lands depends on the load each node daemon last saw of the other, which lags a second or
    more behind a busy spell (a full node then keeps its work instead of spilling it)."""
    seen: set = set()
    for _ in range(attempts):
        seen = set(run())
        if len(seen) == 2:
            break
        time.sleep(1.0)
    return seen


def test_pool_and_queue_span_both_nodes(two_nodes):
    # First in the module, on an idle cluster: an actor created while the nodes are still busy
    # with earlier work can stay pending on a full node although the other has room (a bug of
    # actor placement, reported; see docs/util.md).
    with Pool() as pool:
        assert pool._processes == 2  # one actor per CPU: the two cannot share a 1-CPU node
        assert len(set(pool.map(node_after, [0.2] * 4, chunksize=1))) == 2

    q = Queue()

    @ember.remote(num_cpus=1)
    def produce(q, i):
        time.sleep(0.5)
        q.put((i, ember.get_runtime_context().get_node_id()))

    def probe():
        refs = [produce.remote(q, i) for i in range(4)]
        items = [q.get(timeout=60) for _ in range(4)]
        ember.get(refs)
        assert sorted(i for i, _ in items) == [0, 1, 2, 3]
        return [node for _, node in items]

    assert len(nodes_used(probe)) == 2
    q.shutdown()


def test_grid_search_cv_on_two_nodes(two_nodes):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    register_ember()
    def probe():
        with joblib.parallel_backend("ember"):
            return joblib.Parallel(n_jobs=-1, batch_size=1)(joblib.delayed(node_after)(0.5) for _ in range(4))

    assert len(nodes_used(probe)) == 2, "joblib's batches ran on one node only"

    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    grid = {"C": [1.0, 10.0], "gamma": [0.001, 0.01]}
    with joblib.parallel_backend("ember"):
        search = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)
    reference = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(X, y)
    assert search.best_params_ == reference.best_params_
    assert search.best_score_ == pytest.approx(reference.best_score_)


def test_dask_on_two_nodes(two_nodes):
    @dask.delayed
    def slow_node(i):
        return node_after(0.5)

    def probe():
        return dask.compute(*[slow_node(i) for i in range(4)], scheduler=ember_dask_get)

    assert len(nodes_used(probe)) == 2, "the graph's tasks ran on one node only"

    df = pd.DataFrame({"k": np.arange(5000) % 13, "x": np.arange(5000, dtype=np.float64)})
    ddf = dd.from_pandas(df, npartitions=8)
    got = ddf.groupby("k").x.mean().compute(scheduler=ember_dask_get)
    pd.testing.assert_series_equal(got.sort_index(), df.groupby("k").x.mean())

    x = da.random.default_rng(0).random((2000, 500), chunks=(250, 500))
    total, reference = dask.compute(x.sum(axis=0), x, scheduler=ember_dask_get)
    assert np.allclose(total, reference.sum(axis=0))
