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


def test_node_counts_gpus_from_cuda_visible_devices_and_tasks_see_its_device_names(tmp_path):
    """No num_gpus: the node takes its GPUs from CUDA_VISIBLE_DEVICES (as Ray); two tasks that hold one GPU
    each at the same time see the node's device names, not indices."""
    import subprocess
    import sys
    code = (
        "import os, ember\n"
        "ember.init(address='local', num_cpus=2)\n"
        "@ember.remote(num_gpus=1)\n"
        "def f(meet):\n"
        "    import time\n"
        "    open(os.path.join(meet, str(os.getpid())), 'w').close()\n"
        "    deadline = time.monotonic() + 60\n"
        "    while len(os.listdir(meet)) < 2 and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    return os.environ['CUDA_VISIBLE_DEVICES']\n"
        "print('GPU', ember.cluster_resources().get('GPU'))\n"
        f"print('SEEN', sorted(ember.get([f.remote({str(tmp_path)!r}), f.remote({str(tmp_path)!r})])))\n"
        "ember.shutdown()\n")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="5,7")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "GPU 2.0" in done.stdout
    assert "SEEN ['5', '7']" in done.stdout
