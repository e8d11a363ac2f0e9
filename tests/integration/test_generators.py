"""Streaming generators (issue #16): tasks that yield, consumed through an ObjectRefGenerator."""
import asyncio
import os
import time

import pytest

import ember
from ember.exceptions import TaskCancelledError

pytestmark = pytest.mark.timeout(120)


@ember.remote
def count(n, delay_s=0.0):
    for i in range(n):
        time.sleep(delay_s)
        yield i * 10


def test_values_arrive_in_order(cluster):
    gen = count.remote(5)
    assert type(gen).__name__ == "ObjectRefGenerator"
    assert [ember.get(r) for r in gen] == [0, 10, 20, 30, 40]


def test_each_value_is_available_as_soon_as_it_is_yielded(cluster):
    gen = count.remote(3, 1.0)
    first = next(gen)
    assert ember.get(first) == 0
    assert not gen.is_finished()        # the task is still sleeping before its second value
    assert [ember.get(r) for r in gen] == [10, 20]
    assert gen.is_finished()
    assert ember.get(gen.completed()) is None


def test_large_values_go_through_the_store(cluster):
    np = pytest.importorskip("numpy")

    @ember.remote
    def arrays(n):
        for i in range(n):
            yield np.full(300_000, i, dtype=np.int64)

    assert [int(ember.get(r)[0]) for r in arrays.remote(3)] == [0, 1, 2]


def test_an_error_surfaces_at_the_iteration_where_it_happened(cluster):
    @ember.remote(max_retries=0)
    def breaks(n):
        yield from range(n)
        raise ValueError("broke after the values")

    gen = breaks.remote(2)
    assert ember.get(next(gen)) == 0
    assert ember.get(next(gen)) == 1
    with pytest.raises(ValueError, match="broke after the values"):
        ember.get(next(gen))
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(ValueError):
        ember.get(gen.completed())


def test_async_iteration_and_async_generator_functions(cluster):
    @ember.remote
    async def agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def consume():
        return [await r async for r in agen.remote(4)]

    assert asyncio.run(consume()) == [0, 1, 2, 3]


def test_dynamic_returns_one_ref_listing_the_values(cluster):
    @ember.remote(num_returns="dynamic")
    def dyn(n):
        yield from range(n)

    ref = dyn.remote(4)
    gen = ember.get(ref)
    assert type(gen).__name__ == "DynamicObjectRefGenerator"
    assert [ember.get(r) for r in gen] == [0, 1, 2, 3]


def test_backpressure_pauses_a_producer_that_is_too_far_ahead(cluster, tmp_path):
    progress = tmp_path / "progress"

    @ember.remote(_generator_backpressure_num_objects=2)
    def producer(path):
        for i in range(20):
            with open(path, "w") as f:
                f.write(str(i + 1))
            yield i

    gen = producer.remote(str(progress))
    assert ember.get(next(gen)) == 0
    time.sleep(1.5)                          # an unthrottled producer would finish all 20 by now
    assert int(progress.read_text()) <= 1 + 2 + 1
    assert [ember.get(r) for r in gen] == list(range(1, 20))


def test_cancel_stops_the_producer(cluster):
    @ember.remote(max_retries=0)
    def forever():
        i = 0
        while True:
            time.sleep(0.05)
            yield i
            i += 1

    gen = forever.remote()
    assert ember.get(next(gen)) == 0
    ember.cancel(gen)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            ember.get(ref, timeout=30)
    with pytest.raises(TaskCancelledError):
        ember.get(gen.completed(), timeout=30)


def test_a_retried_generator_yields_no_duplicates(cluster, tmp_path):
    marker = tmp_path / "crashed"

    @ember.remote(max_retries=1)
    def crashes_once(path):
        for i in range(5):
            if i == 3 and not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)               # the worker dies after yielding 0, 1, 2
            yield i

    assert [ember.get(r) for r in crashes_once.remote(str(marker))] == [0, 1, 2, 3, 4]


def test_a_dropped_generator_frees_its_values_and_releases_its_producer(cluster):
    @ember.remote(_generator_backpressure_num_objects=1)
    def producer():
        yield from range(10)
        return

    gen = producer.remote()
    done = gen.completed()
    del gen                                  # never consumed: the producer must still finish
    assert ember.get(done, timeout=60) is None


def test_generator_functions_default_to_streaming_and_plain_num_returns_still_work(cluster):
    @ember.remote(num_returns=2)
    def two():
        return 1, 2

    assert ember.get(two.remote()) == [1, 2]
    assert type(count.remote(1)).__name__ == "ObjectRefGenerator"


@ember.remote
class Producer:
    def __init__(self):
        self.calls = 0

    def items(self, n):
        self.calls += 1
        for i in range(n):
            yield (self.calls, i)

    def plain(self):
        return "plain"


@ember.remote
class AsyncProducer:
    async def items(self, n):
        for i in range(n):
            await asyncio.sleep(0.01)
            yield i


def test_actor_generator_methods_stream(cluster):
    p = Producer.remote()
    gen = p.items.remote(3)
    assert type(gen).__name__ == "ObjectRefGenerator"
    assert [ember.get(r) for r in gen] == [(1, 0), (1, 1), (1, 2)]
    assert ember.get(p.plain.remote()) == "plain"
    threaded = Producer.options(max_concurrency=4).remote()
    assert [ember.get(r)[1] for r in threaded.items.remote(4)] == [0, 1, 2, 3]


def test_async_actor_generator_methods_stream(cluster):
    a = AsyncProducer.remote()
    gens = [a.items.remote(3) for _ in range(3)]   # concurrent streams on one actor
    assert [[ember.get(r) for r in g] for g in gens] == [[0, 1, 2]] * 3

    async def consume():
        return [await r async for r in a.items.remote(2)]

    assert asyncio.run(consume()) == [0, 1]
