"""ember.cancel on queued, waiting and running tasks, their children (recursive) and actor calls."""
import asyncio
import os
import time

import psutil
import pytest

import ember
from ember import exceptions as exc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def one_cpu():
    ember.init(num_cpus=1)
    yield
    ember.shutdown()


@ember.remote
def sleeper(t):
    time.sleep(t)
    return "finished"


@ember.remote
def plus_1(x):
    return x + 1


def test_cancel_running_task_interrupts_it(one_cpu):
    r = sleeper.remote(30)
    time.sleep(0.5)
    ember.cancel(r)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(r, timeout=10)
    assert ember.get(plus_1.remote(1), timeout=10) == 2


def test_cancel_queued_task(one_cpu):
    blocker = sleeper.remote(1.5)
    queued = plus_1.remote(1)
    ember.cancel(queued)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(queued, timeout=10)
    assert ember.get(blocker, timeout=10) == "finished"


def test_cancel_task_waiting_for_arguments(one_cpu):
    dep = sleeper.remote(1)
    waiting = plus_1.remote(dep)
    ember.cancel(waiting)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(waiting, timeout=10)
    assert ember.get(dep, timeout=10) == "finished"


def test_force_cancel_kills_the_worker_and_does_not_retry(one_cpu):
    r = sleeper.options(max_retries=3).remote(30)
    time.sleep(0.5)
    ember.cancel(r, force=True)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(r, timeout=10)
    assert ember.get(plus_1.remote(2), timeout=20) == 3


def test_cancel_rejects_non_refs(one_cpu):
    with pytest.raises(TypeError):
        ember.cancel("not a ref")


def test_cancelling_a_finished_task_is_a_no_op(one_cpu):
    r = plus_1.remote(1)
    assert ember.get(r, timeout=10) == 2
    ember.cancel(r)
    ember.cancel(r, force=True)
    assert ember.get(r, timeout=10) == 2
    assert ember.get(plus_1.remote(2), timeout=10) == 3


def _wait_file(path, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@ember.remote
def child(marker_dir, sleep_s):
    with open(os.path.join(marker_dir, "child_started"), "w") as f:
        f.write(str(os.getpid()))
    try:
        time.sleep(sleep_s)
    except KeyboardInterrupt:
        open(os.path.join(marker_dir, "child_cancelled"), "w").close()
        raise
    open(os.path.join(marker_dir, "child_finished"), "w").close()
    return "child done"


@ember.remote
def parent(marker_dir, sleep_s):
    return ember.get(child.remote(marker_dir, sleep_s))


@pytest.mark.parametrize("force", [False, True])
def test_recursive_cancel_cancels_the_children(one_cpu, tmp_path, force):
    p = parent.remote(str(tmp_path), 30)
    _wait_file(str(tmp_path / "child_started"))
    pid = int((tmp_path / "child_started").read_text())
    ember.cancel(p, force=force)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(p, timeout=20)
    if force:   # force reaches the children too: their workers are killed
        deadline = time.monotonic() + 30
        while _alive(pid):
            assert time.monotonic() < deadline, "the child's worker outlived a forced recursive cancel"
            time.sleep(0.05)
    else:   # KeyboardInterrupt inside the child
        _wait_file(str(tmp_path / "child_cancelled"))
    assert ember.get(plus_1.remote(3), timeout=20) == 4


def test_non_recursive_cancel_leaves_the_children(one_cpu, tmp_path):
    p = parent.remote(str(tmp_path), 1.0)
    _wait_file(str(tmp_path / "child_started"))
    ember.cancel(p, recursive=False)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(p, timeout=20)
    _wait_file(str(tmp_path / "child_finished"))
    assert not os.path.exists(tmp_path / "child_cancelled")


@ember.remote(num_cpus=0)
class AsyncWorker:
    async def long(self):
        await asyncio.sleep(30)
        return "not cancelled"

    async def ping(self):
        return "pong"


@ember.remote(num_cpus=0)
class SyncWorker:
    def slow(self, t):
        time.sleep(t)
        return "slow done"

    def quick(self):
        return "quick done"


def test_cancel_running_async_actor_method(one_cpu):
    a = AsyncWorker.remote()
    assert ember.get(a.ping.remote(), timeout=30) == "pong"
    r = a.long.remote()
    time.sleep(0.5)
    ember.cancel(r)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(r, timeout=10)
    assert ember.get(a.ping.remote(), timeout=10) == "pong"   # the actor lives on


def test_cancel_queued_sync_actor_call(one_cpu):
    a = SyncWorker.remote()
    assert ember.get(a.quick.remote(), timeout=30) == "quick done"
    slow = a.slow.remote(1.5)
    queued = a.quick.remote()
    ember.cancel(queued)
    with pytest.raises(exc.TaskCancelledError):
        ember.get(queued, timeout=10)
    assert ember.get(slow, timeout=10) == "slow done"
    assert ember.get(a.quick.remote(), timeout=10) == "quick done"
