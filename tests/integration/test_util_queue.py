"""ember.util.queue.Queue: Ray's ray.util.queue behaviour, from the driver, tasks and actors."""
from __future__ import annotations

import asyncio
import queue as stdlib_queue

import pytest

import ember
from ember.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.timeout(120)


def test_empty_and_full_are_the_stdlib_exceptions():
    assert issubclass(Empty, stdlib_queue.Empty) and issubclass(Full, stdlib_queue.Full)


def test_fifo_sizes_and_nowait(cluster):
    q = Queue()
    assert q.empty() and q.qsize() == 0 and len(q) == 0 and not q.full()
    for i in range(5):
        q.put(i)
    assert q.size() == 5 and not q.empty()
    assert [q.get() for _ in range(3)] == [0, 1, 2]
    assert q.get_nowait() == 3 and q.get(block=False) == 4
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    q.shutdown()


def test_bounded_queue_blocks_then_raises_full(cluster):
    q = Queue(maxsize=2)
    q.put("a")
    q.put_nowait("b")
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait("c")
    with pytest.raises(Full):
        q.put("c", block=False)
    with pytest.raises(Full):
        q.put("c", timeout=0.2)
    assert q.get() == "a"
    q.put("c", timeout=5)
    assert [q.get(), q.get()] == ["b", "c"]
    with pytest.raises(Empty):
        q.get(timeout=0.2)
    q.shutdown()


def test_bad_timeouts_are_refused(cluster):
    q = Queue()
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=-1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)
    q.shutdown()


def test_batches_are_all_or_nothing(cluster):
    q = Queue(maxsize=3)
    q.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        q.put_nowait_batch([3, 4])
    assert q.qsize() == 2
    with pytest.raises(TypeError, match="Iterable"):
        q.put_nowait_batch(5)
    with pytest.raises(Empty, match="Cannot get 3 items"):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)
    q.shutdown()


def test_blocked_get_is_woken_by_a_put_from_a_task(cluster):
    q = Queue()

    @ember.remote
    def produce(q, items):
        for item in items:
            q.put(item)
        return len(items)

    @ember.remote
    def consume(q, n):
        return [q.get(timeout=30) for _ in range(n)]

    consumers = [consume.remote(q, 10) for _ in range(2)]
    producers = [produce.remote(q, list(range(i * 10, i * 10 + 10))) for i in range(2)]
    assert ember.get(producers) == [10, 10]
    got = ember.get(consumers)
    assert sorted(got[0] + got[1]) == list(range(20))
    for part in got:  # each producer's items keep their order in every consumer's share
        for lo in (0, 10):
            mine = [x for x in part if lo <= x < lo + 10]
            assert mine == sorted(mine)
    assert q.empty()
    q.shutdown()


def test_actors_share_a_queue(cluster):
    q = Queue(maxsize=4)

    @ember.remote(num_cpus=0)
    class Producer:
        def __init__(self, q):
            self.q = q

        def run(self, n):
            for i in range(n):
                self.q.put(i)  # blocks while the queue is full
            return n

    producer = Producer.remote(q)
    done = producer.run.remote(20)
    got = [q.get(timeout=30) for _ in range(20)]
    assert got == list(range(20)) and ember.get(done) == 20
    q.shutdown()
    ember.kill(producer)


def test_async_put_and_get(cluster):
    q = Queue(maxsize=1)

    async def main():
        await q.put_async(1)
        with pytest.raises(Full):
            await q.put_async(2, timeout=0.1)
        with pytest.raises(Full):
            await q.put_async(2, block=False)
        first = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        waiter = asyncio.ensure_future(q.get_async(timeout=10))
        await asyncio.sleep(0.1)
        await q.put_async(3)
        return first, await waiter

    assert asyncio.run(main()) == (1, 3)
    q.shutdown()


def test_async_actor_uses_the_queue(cluster):
    q = Queue()

    @ember.remote(num_cpus=0)
    class AsyncConsumer:
        async def take(self, q, n):
            return [await q.get_async(timeout=30) for _ in range(n)]

    consumer = AsyncConsumer.remote()
    ref = consumer.take.remote(q, 3)
    for i in range(3):
        q.put(i)
    assert ember.get(ref) == [0, 1, 2]
    ember.kill(consumer)
    q.shutdown()


def test_actor_options_and_shutdown(cluster):
    q = Queue(actor_options={"name": "util-queue-test"})
    q.put("x")
    assert ember.get_actor("util-queue-test") == q.actor
    q.shutdown(grace_period_s=5)
    with pytest.raises(RuntimeError, match="shut down"):
        q.put("y")
    q.shutdown()  # twice is harmless
    q2 = Queue()
    q2.shutdown(force=True)
    with pytest.raises(RuntimeError):
        q2.get()
