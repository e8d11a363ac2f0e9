"""Async actors (one event loop, many calls at once) and awaiting actor calls."""
import asyncio

import pytest

import ember
from ember import exceptions as exc

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def actor_cluster():
    if ember.is_initialized():
        ember.shutdown()
    ember.init(num_cpus=2)
    yield
    ember.shutdown()


@ember.remote
class Sleeper:
    def __init__(self):
        self.running = 0
        self.most_at_once = 0

    async def nap(self, seconds, value):
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(seconds)
        self.running -= 1
        return value

    async def peak(self):
        return self.most_at_once

    def sync_method(self):
        return "sync on the loop"

    async def fail(self):
        await asyncio.sleep(0)
        raise RuntimeError("async failure")


def test_async_actor_runs_100_sleeping_calls_at_once(actor_cluster):
    s = Sleeper.remote()
    assert ember.get([s.nap.remote(1.0, i) for i in range(100)]) == list(range(100))
    assert ember.get(s.peak.remote()) == 100
    assert ember.get(s.sync_method.remote()) == "sync on the loop"


def test_async_max_concurrency_limits_calls(actor_cluster):
    s = Sleeper.options(max_concurrency=3).remote()
    assert ember.get([s.nap.remote(0.2, i) for i in range(12)]) == list(range(12))
    assert ember.get(s.peak.remote()) == 3


def test_async_method_error_fails_only_that_call(actor_cluster):
    s = Sleeper.remote()
    with pytest.raises(RuntimeError, match="async failure") as info:
        ember.get(s.fail.remote())
    assert isinstance(info.value, exc.RayTaskError)
    assert ember.get(s.nap.remote(0, "alive")) == "alive"


def test_await_actor_calls_inside_an_async_actor(actor_cluster):
    @ember.remote
    class Caller:
        def __init__(self, target):
            self.target = target

        async def gather(self, n):
            refs = [self.target.nap.remote(0.5, i) for i in range(n)]
            return sum(await asyncio.gather(*refs))

        async def one(self):
            return await self.target.nap.remote(0, "awaited")

    target = Sleeper.remote()
    caller = Caller.remote(target)
    assert ember.get(caller.one.remote()) == "awaited"
    assert ember.get(caller.gather.remote(20)) == sum(range(20))


def test_await_actor_calls_in_an_async_driver(actor_cluster):
    s = Sleeper.remote()

    async def main():
        first = await s.nap.remote(0, "first")
        rest = await asyncio.gather(*[s.nap.remote(0.2, i) for i in range(10)])
        return first, rest

    first, rest = asyncio.run(main())
    assert first == "first" and rest == list(range(10))


def test_exit_actor_inside_an_async_actor(actor_cluster):
    @ember.remote
    class Quitter:
        async def quit(self):
            ember.actor.exit_actor()

        async def hello(self):
            return "hello"

    q = Quitter.remote()
    assert ember.get(q.hello.remote()) == "hello"
    with pytest.raises(exc.ActorDiedError, match="exit_actor"):
        ember.get(q.quit.remote(), timeout=30)
    with pytest.raises(exc.ActorDiedError):
        ember.get(q.hello.remote(), timeout=30)
