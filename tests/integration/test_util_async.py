"""``await ref``, ``asyncio.gather`` over refs and ``ref.future()`` on the driver and in async actors."""
from __future__ import annotations

import asyncio
import concurrent.futures

import numpy as np
import pytest

import ember

pytestmark = pytest.mark.timeout(120)


@ember.remote
def plus_one(x):
    return x + 1


@ember.remote
def fail(msg):
    raise ValueError(msg)


@ember.remote
def big(n):
    return np.ones(n)


def test_driver_await_and_gather(cluster):
    async def main():
        one = await plus_one.remote(1)
        many = await asyncio.gather(*[plus_one.remote(i) for i in range(20)])
        put = await ember.put({"k": 1})
        arr = await big.remote(200_000)  # from the shared-memory store
        with pytest.raises(ValueError, match="boom"):
            await fail.remote("boom")
        waited = await asyncio.wait_for(plus_one.remote(5), timeout=30)
        wrapped = await asyncio.wrap_future(plus_one.remote(7).future())
        return one, many, put, float(arr.sum()), waited, wrapped

    one, many, put, total, waited, wrapped = asyncio.run(main())
    assert one == 2 and many == list(range(1, 21)) and put == {"k": 1}
    assert total == 200_000.0 and waited == 6 and wrapped == 8


def test_future_is_a_concurrent_future(cluster):
    fut = plus_one.remote(41).future()
    assert isinstance(fut, concurrent.futures.Future) and fut.result(timeout=30) == 42
    bad = fail.remote("via future").future()
    with pytest.raises(ValueError, match="via future"):
        bad.result(timeout=30)
    done = concurrent.futures.wait([plus_one.remote(i).future() for i in range(10)], timeout=30)
    assert sorted(f.result() for f in done.done) == list(range(1, 11))


def test_async_actor_awaits_refs(cluster):
    @ember.remote
    class Gatherer:
        async def own_tasks(self, n):
            return sum(await asyncio.gather(*[plus_one.remote(i) for i in range(n)]))

        async def borrowed(self, refs):
            return await asyncio.gather(*refs)  # refs owned by the driver

        async def error(self):
            try:
                await fail.remote("inside")
            except ValueError as e:
                return str(e)

        async def future_of(self, refs):
            return await asyncio.wrap_future(refs[0].future())

        async def put_and_await(self):
            return await ember.put("mine")

    g = Gatherer.remote()
    assert ember.get(g.own_tasks.remote(10)) == sum(range(1, 11))
    refs = [plus_one.remote(i) for i in range(5)]
    assert ember.get(g.borrowed.remote(refs)) == [1, 2, 3, 4, 5]
    assert ember.get(g.borrowed.remote([ember.put(np.arange(50_000))]))[0].sum() == np.arange(50_000).sum()
    assert "inside" in ember.get(g.error.remote())
    assert ember.get(g.future_of.remote([plus_one.remote(9)])) == 10
    assert ember.get(g.put_and_await.remote()) == "mine"
    ember.kill(g)


def test_sync_actor_and_task_use_future(cluster):
    @ember.remote
    def via_future(refs):
        return refs[0].future().result(timeout=30)

    assert ember.get(via_future.remote([plus_one.remote(1)])) == 2

    @ember.remote(max_concurrency=2)
    class Threaded:
        def wait_on(self, refs):
            return [f.result(timeout=30) for f in [r.future() for r in refs]]

    t = Threaded.remote()
    assert ember.get(t.wait_on.remote([plus_one.remote(i) for i in range(3)])) == [1, 2, 3]
    ember.kill(t)


def test_replies_sent_before_an_actor_exits_are_kept(cluster):
    """The replies of calls an actor answered before ``__ray_terminate__`` travel on its socket,
    the news of its exit on the control store's: the caller must not fail those calls when the
    news comes first.  (Waiter threads on the futures slow the caller's I/O thread; before the
    fix the news won about one round in four in a script like this one; under pytest the race
    shows less often, so this test guards the behaviour more than it reproduces the race.)"""
    @ember.remote(num_cpus=1)
    class Short:
        def run(self, fn, x):
            return fn(x)

    def identity(x):  # a local function: shipped by value with every call
        return x

    for _ in range(8):
        a = Short.remote()
        refs = [a.run.remote(identity, i) for i in range(2)]
        futures = [r.future() for r in refs]
        end = a.__ray_terminate__.remote()
        assert [f.result(timeout=30) for f in futures] == [0, 1]
        with pytest.raises(ember.exceptions.RayActorError):
            ember.get(end, timeout=30)
        with pytest.raises(ember.exceptions.RayActorError):
            ember.get(a.run.remote(identity, 9), timeout=30)
