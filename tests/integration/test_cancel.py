"""ember.cancel on queued, waiting and running tasks."""
import time

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
