"""GPUs of the machine, not declared ones: runs only where ``nvidia-smi`` works (skips elsewhere).

The node is started without ``num_gpus``, so it also checks that real GPUs are detected.
Recorded results of runs on GPU machines are in docs/runtime.md ("Real GPUs").
"""
import os
import shutil
import subprocess

import pytest

import ember


def _nvidia_smi_gpus() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln for ln in done.stdout.splitlines() if ln.startswith("GPU ")] if done.returncode == 0 else []


GPUS = _nvidia_smi_gpus()
pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not GPUS, reason="no NVIDIA GPU here (nvidia-smi missing or failing)")]


@pytest.fixture(scope="module")
def real_gpu_cluster():
    ember.init(address="local", num_cpus=4)
    yield
    ember.shutdown()


@ember.remote(num_gpus=1)
def whole_gpu():
    return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@ember.remote(num_gpus=0.5)
def half_gpu(meeting_dir):
    """Waits (at most 60 s) until both halves run at once: the two tasks shared the GPU concurrently."""
    import time
    open(os.path.join(meeting_dir, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(meeting_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"), len(os.listdir(meeting_dir))


@ember.remote(num_gpus=1)
def device_name():
    visible = os.environ["CUDA_VISIBLE_DEVICES"]
    done = subprocess.run(["nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader", "-i", visible],
                          capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout.strip().splitlines()


@ember.remote(num_gpus=1)
class GpuActor:
    def ids(self):
        return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_real_gpus_are_detected(real_gpu_cluster):
    assert ember.cluster_resources().get("GPU") == float(len(GPUS))


def test_task_sees_its_gpu(real_gpu_cluster):
    gpu_ids, visible = ember.get(whole_gpu.remote())
    assert len(gpu_ids) == 1 and 0 <= gpu_ids[0] < len(GPUS)
    assert visible == str(gpu_ids[0])
    code, names = ember.get(device_name.remote())
    assert code == 0 and len(names) == 1, "the task's CUDA_VISIBLE_DEVICES names a real GPU"


def test_two_half_gpu_tasks_share_one_gpu(real_gpu_cluster, tmp_path):
    if len(GPUS) != 1:
        pytest.skip("sharing is only forced on a one-GPU machine")
    a, b = ember.get([half_gpu.remote(str(tmp_path)), half_gpu.remote(str(tmp_path))])
    assert a[0] == b[0] == [0] and a[1] == b[1] == "0"
    assert a[2] == b[2] == 2, "the two halves ran at the same time on the same GPU"


def test_gpu_actor(real_gpu_cluster):
    actor = GpuActor.remote()
    gpu_ids, visible = ember.get(actor.ids.remote())
    assert len(gpu_ids) == 1 and visible == str(gpu_ids[0])
    ember.kill(actor)
