"""joblib on ember: register_ember/register_ray, batches as ember tasks, errors, cancellation."""
from __future__ import annotations

import os
import sys
import time

import cloudpickle
import joblib
import pytest

import ember
from ember.util.joblib import register_ember, register_ray

pytestmark = pytest.mark.timeout(120)
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this module


def square(x):
    return x * x


def fails_on(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def where(_):
    return os.getpid(), ember.get_runtime_context().get_task_id()


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_ember()
    yield


def test_parallel_runs_batches_as_ember_tasks(cluster):
    with joblib.parallel_backend("ember"):
        out = joblib.Parallel(n_jobs=-1)(joblib.delayed(where)(i) for i in range(40))
    pids = {pid for pid, _ in out}
    assert os.getpid() not in pids and all(task_id for _, task_id in out)
    with joblib.parallel_backend("ember"):
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(2000)) == \
            [i * i for i in range(2000)]


def test_effective_n_jobs_is_the_clusters_cpus(cluster):
    with joblib.parallel_backend("ember"):
        assert joblib.effective_n_jobs(-1) == 2
        assert joblib.effective_n_jobs(1) == 1


def test_one_job_runs_in_the_caller(cluster):
    with joblib.parallel_backend("ember", n_jobs=1):
        out = joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(3))
    assert out == [os.getpid()] * 3


def test_errors_reach_the_caller_as_the_original_exception(cluster):
    with joblib.parallel_backend("ember"):
        with pytest.raises(ValueError, match="bad value 7"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(fails_on)(i, 7) for i in range(50))
        # the backend is usable after an abort
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(5)) == [0, 1, 4, 9, 16]


def test_generator_output(cluster):
    with joblib.parallel_backend("ember"):
        gen = joblib.Parallel(n_jobs=2, return_as="generator")(joblib.delayed(square)(i) for i in range(10))
        assert list(gen) == [i * i for i in range(10)]
        unordered = joblib.Parallel(n_jobs=2, return_as="generator_unordered")(
            joblib.delayed(square)(i) for i in range(10))
        assert sorted(unordered) == [i * i for i in range(10)]


def test_ray_name_after_import_ember_as_ray(cluster):
    import ember as ray
    ray.util.joblib.register_ray()
    with joblib.parallel_backend("ray"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(square)(i) for i in range(4)) == [0, 1, 4, 9]
    register_ray()  # idempotent


def test_remote_args_reach_the_batch_tasks(cluster):
    def resources(_):
        return ember.get_runtime_context().get_assigned_resources()

    with joblib.parallel_backend("ember", ray_remote_args={"num_cpus": 0, "resources": {"custom": 1}}):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(resources)(i) for i in range(4))
    assert all(r.get("custom") == 1 and not r.get("CPU") for r in out)


def test_no_cpu_stays_held_after_a_parallel_call(cluster):
    with joblib.parallel_backend("ember"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(time.sleep)(0.2) for _ in range(4))
    deadline = time.monotonic() + 30
    while ember.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ember.available_resources().get("CPU", 0) == 2


def test_grid_search_cv(cluster):
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.1]}
    with joblib.parallel_backend("ember"):
        search = GridSearchCV(SVC(), grid, cv=3, n_jobs=-1).fit(X, y)
    reference = GridSearchCV(SVC(), grid, cv=3, n_jobs=1).fit(X, y)
    assert search.best_params_ == reference.best_params_
    assert search.best_score_ == pytest.approx(reference.best_score_)
