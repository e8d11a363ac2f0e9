"""Actor concurrency groups (issue #16), with Ray's API and rules."""
import asyncio
import threading
import time

import pytest

import ember

pytestmark = pytest.mark.timeout(120)


@ember.remote(concurrency_groups={"io": 2, "compute": 1})
class AsyncGrouped:
    def __init__(self):
        self.running = {"io": 0, "compute": 0, "default": 0}
        self.peak = {"io": 0, "compute": 0, "default": 0}

    async def _track(self, group, delay_s):
        self.running[group] += 1
        self.peak[group] = max(self.peak[group], self.running[group])
        await asyncio.sleep(delay_s)
        self.running[group] -= 1
        return threading.current_thread().name

    @ember.method(concurrency_group="io")
    async def io(self, delay_s=0.2):
        return await self._track("io", delay_s)

    @ember.method(concurrency_group="compute")
    async def compute(self, delay_s=0.2):
        return await self._track("compute", delay_s)

    async def default(self, delay_s=0.2):
        return await self._track("default", delay_s)

    async def peaks(self):
        return self.peak


def test_async_groups_limit_their_methods_and_run_on_their_own_loops(cluster):
    a = AsyncGrouped.remote()
    refs = [a.io.remote() for _ in range(6)] + [a.compute.remote() for _ in range(3)] + \
           [a.default.remote() for _ in range(5)]
    threads = ember.get(refs, timeout=60)
    assert set(threads[:6]) == {"ember-actor-io"}
    assert set(threads[6:9]) == {"ember-actor-compute"}
    assert set(threads[9:]) == {"ember-actor-loop"}
    assert ember.get(a.peaks.remote()) == {"io": 2, "compute": 1, "default": 5}


def test_a_call_can_choose_its_group_with_options(cluster):
    a = AsyncGrouped.remote()
    assert ember.get(a.default.options(concurrency_group="io").remote(0)) == "ember-actor-io"


@ember.remote(concurrency_groups={"health": 1})
class Busy:
    def __init__(self):
        self.lock = threading.Lock()

    def work(self, delay_s):
        time.sleep(delay_s)
        return threading.current_thread().name

    @ember.method(concurrency_group="health")
    def ping(self):
        return threading.current_thread().name


def test_a_threaded_actors_group_answers_while_the_default_group_is_busy(cluster):
    b = Busy.remote()
    slow = b.work.remote(20.0)                  # the default group (max_concurrency 1) is busy
    assert ember.get(b.ping.remote(), timeout=30).startswith("ember-actor-health")
    ready, _ = ember.wait([slow], timeout=0)
    assert not ready                            # the health group answered while the slow call ran
    ember.kill(b)


def test_undefined_groups_are_refused_with_ray_style_errors(cluster):
    @ember.remote(concurrency_groups={"io": 1})
    class Wrong:
        @ember.method(concurrency_group="missing")
        def f(self):
            return 1

    with pytest.raises(ValueError, match="missing"):
        Wrong.remote()
    b = Busy.remote()
    with pytest.raises(ValueError, match="nope"):
        b.work.options(concurrency_group="nope").remote(0)
    with pytest.raises(ValueError):
        @ember.remote(concurrency_groups={"io": 0})
        class Zero:
            pass
        Zero.remote()
