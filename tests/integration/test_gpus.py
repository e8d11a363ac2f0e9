"""GPU ids: assigned per task, visible as CUDA_VISIBLE_DEVICES and get_gpu_ids().

The node declares GPUs it may not have (as Ray allows with --num-gpus); the scheduling and
environment are what is tested here.
"""
import os

import pytest

import ember

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def gpu_cluster():
    ember.init(num_cpus=4, num_gpus=2)
    yield
    ember.shutdown()


@ember.remote(num_gpus=1)
def one_gpu():
    import time
    time.sleep(0.5)
    return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@ember.remote(num_gpus=0.5)
def half_gpu():
    return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@ember.remote
def no_gpu():
    return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_whole_gpus_are_distinct(gpu_cluster):
    results = ember.get([one_gpu.remote(), one_gpu.remote()])
    ids = sorted(r[0][0] for r in results)
    assert ids == [0, 1]
    for gpu_ids, env in results:
        assert env == ",".join(str(g) for g in gpu_ids)


def test_fractional_gpu_gets_one_id(gpu_cluster):
    gpu_ids, env = ember.get(half_gpu.remote())
    assert len(gpu_ids) == 1 and env == str(gpu_ids[0])


def test_cpu_task_sees_no_gpu(gpu_cluster):
    gpu_ids, env = ember.get(no_gpu.remote())
    assert gpu_ids == [] and env is None


def test_gpu_totals(gpu_cluster):
    assert ember.cluster_resources()["GPU"] == 2.0
    with pytest.raises(ember.exceptions.GetTimeoutError):
        ember.get(one_gpu.options(num_gpus=3).remote(), timeout=1)
