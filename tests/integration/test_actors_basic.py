"""Actors against a real local cluster: state, methods, handles, ordering, resources."""
import threading
import time

import numpy as np
import pytest

import ember
from ember import exceptions as exc
from ember.actor import ActorHandle

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def actor_cluster():
    if ember.is_initialized():
        ember.shutdown()
    ember.init(num_cpus=2, resources={"slot": 1})
    yield
    ember.shutdown()


@ember.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self, by=1):
        self.n += by
        return self.n

    def get(self):
        return self.n

    @ember.method(num_returns=2)
    def pair(self):
        return self.n, -self.n

    def fail(self, message):
        raise KeyError(message)


def test_state_lives_between_calls(actor_cluster):
    c = Counter.remote(10)
    assert ember.get([c.inc.remote() for _ in range(5)]) == [11, 12, 13, 14, 15]
    assert ember.get(c.inc.remote(by=100)) == 115
    assert ember.get(c.get.remote()) == 115


def test_num_returns_by_decorator_and_by_options(actor_cluster):
    c = Counter.remote(3)
    a, b = c.pair.remote()
    assert ember.get([a, b]) == [3, -3]
    refs = c.inc.options(num_returns=1).remote()
    assert ember.get(refs) == 4


def test_method_error_fails_only_that_call(actor_cluster):
    c = Counter.remote()
    bad = c.fail.remote("nope")
    good = c.inc.remote()
    with pytest.raises(KeyError) as info:
        ember.get(bad)
    assert isinstance(info.value, exc.RayTaskError)
    assert "nope" in str(info.value)
    assert ember.get(good) == 1
    assert ember.get(c.inc.remote()) == 2


def test_calling_directly_is_a_clear_error(actor_cluster):
    with pytest.raises(TypeError, match=r"Counter.remote\(\)"):
        Counter()
    c = Counter.remote()
    with pytest.raises(TypeError, match=r"inc.remote\(\)"):
        c.inc()
    with pytest.raises(AttributeError):
        c.no_such_method


def test_handles_compare_print_and_hash(actor_cluster):
    c = Counter.remote()
    d = Counter.remote()
    assert c != d and c == c
    assert repr(c).startswith("Actor(Counter, ")
    assert c._actor_id.hex() in repr(c)
    assert len({c, d, c}) == 2


def test_handles_passed_to_tasks_and_inside_objects(actor_cluster):
    c = Counter.remote()

    @ember.remote
    def bump(handles, times):
        for _ in range(times):
            ember.get(handles["counter"].inc.remote())
        return "ok"

    assert ember.get([bump.remote({"counter": c}, 5) for _ in range(3)]) == ["ok"] * 3
    assert ember.get(c.get.remote()) == 15


def test_handle_stored_in_another_actor(actor_cluster):
    @ember.remote
    class Holder:
        def __init__(self, handles):
            self.counter = handles[0]

        def bump_twice(self):
            ember.get(self.counter.inc.remote())
            return ember.get(self.counter.inc.remote())

        def the_handle(self):
            return self.counter

    c = Counter.remote(100)
    h = Holder.remote([c])
    assert ember.get(h.bump_twice.remote()) == 102
    returned = ember.get(h.the_handle.remote())
    assert isinstance(returned, ActorHandle) and returned == c
    assert ember.get(returned.get.remote()) == 102


@ember.remote
class ParameterServer:
    def __init__(self, size):
        self.params = np.zeros(size)

    def get_params(self):
        return self.params

    def update_params(self, grad):
        self.params += grad


def test_parameter_server(actor_cluster):
    ps = ParameterServer.remote(10)

    @ember.remote
    def worker(ps, steps):
        for _ in range(steps):
            params = ember.get(ps.get_params.remote())
            assert params.shape == (10,)
            ember.get(ps.update_params.remote(np.ones(10)))
        return True

    assert ember.get([worker.remote(ps, 20) for _ in range(3)]) == [True] * 3
    np.testing.assert_array_equal(ember.get(ps.get_params.remote()), np.full(10, 60.0))


def test_large_arguments_and_returns(actor_cluster):
    big = np.arange(2_000_000, dtype=np.float64)  # 16 MB: travels through the object store
    ps = ParameterServer.remote(big.size)
    ember.get(ps.update_params.remote(big))
    np.testing.assert_array_equal(ember.get(ps.get_params.remote()), big)


@ember.remote
class Log:
    def __init__(self):
        self.entries = []

    def add(self, caller, i):
        self.entries.append((caller, i))

    def entries_of(self):
        return self.entries


def test_ordering_under_many_concurrent_callers(actor_cluster):
    log = Log.remote()
    calls_each = 100

    @ember.remote
    def caller(log, name):
        refs = [log.add.remote(name, i) for i in range(calls_each)]
        ember.get(refs)
        return name

    tasks = [caller.remote(log, f"task{k}") for k in range(3)]
    threads = [threading.Thread(target=lambda k=k: ember.get([log.add.remote(f"thread{k}", i)
                                                              for i in range(calls_each)]))
               for k in range(2)]
    for t in threads:
        t.start()
    driver_refs = [log.add.remote("driver", i) for i in range(calls_each)]
    for t in threads:
        t.join()
    ember.get(tasks + driver_refs)
    entries = ember.get(log.entries_of.remote())
    assert len(entries) == 6 * calls_each
    by_caller = {}
    for name, i in entries:
        by_caller.setdefault(name, []).append(i)
    assert sorted(by_caller) == ["driver", "task0", "task1", "task2", "thread0", "thread1"]
    for name, seen in by_caller.items():
        assert seen == list(range(calls_each)), name


def test_init_error_fails_calls_with_the_cause(actor_cluster):
    @ember.remote
    class Broken:
        def __init__(self):
            raise ZeroDivisionError("bad init value")

        def f(self):
            return 1

    b = Broken.remote()
    with pytest.raises(exc.ActorDiedError) as info:
        ember.get(b.f.remote(), timeout=30)
    assert info.value.actor_init_failed
    assert "bad init value" in str(info.value)
    assert "ZeroDivisionError" in str(info.value)
    with pytest.raises(exc.RayActorError):  # later calls too
        ember.get(b.f.remote(), timeout=30)


def test_runtime_context_inside_an_actor(actor_cluster):
    @ember.remote
    class Who:
        def ids(self):
            ctx = ember.get_runtime_context()
            return ctx.get_actor_id(), ctx.namespace, ctx.current_actor

    w = Who.remote()
    actor_id, namespace, me = ember.get(w.ids.remote())
    assert actor_id == w._actor_id.hex()
    assert namespace == ember.get_runtime_context().namespace
    assert me == w
    assert ember.get_runtime_context().get_actor_id() is None


def _available(resource):
    return ember.available_resources().get(resource, 0.0)


def _wait_for(predicate, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_actor_resources_are_accounted(actor_cluster):
    assert _wait_for(lambda: _available("slot") == 1.0)
    holder = Counter.options(resources={"slot": 1}).remote()
    assert ember.get(holder.inc.remote()) == 1
    assert _wait_for(lambda: _available("slot") == 0.0)  # held while it lives (heartbeats)
    free_cpus = _available("CPU")
    idle = [Counter.remote() for _ in range(4)]  # 1 CPU to place, 0 held: more actors than CPUs
    assert ember.get([a.inc.remote() for a in idle]) == [1] * 4
    assert _wait_for(lambda: _available("CPU") == free_cpus)
    ember.kill(holder)
    assert _wait_for(lambda: _available("slot") == 1.0)


def test_threaded_actor_runs_calls_at_once(actor_cluster):
    @ember.remote(max_concurrency=4)
    class Gate:
        def __init__(self):
            self.barrier = threading.Barrier(4, timeout=30)

        def meet(self):
            return self.barrier.wait()

    g = Gate.remote()
    assert sorted(ember.get([g.meet.remote() for _ in range(4)])) == [0, 1, 2, 3]


def test_actor_pool(actor_cluster):
    @ember.remote
    class Square:
        def sq(self, v):
            return v * v

    pool = ember.util.ActorPool([Square.remote() for _ in range(2)])
    assert list(pool.map(lambda a, v: a.sq.remote(v), range(6))) == [0, 1, 4, 9, 16, 25]
    assert sorted(pool.map_unordered(lambda a, v: a.sq.remote(v), range(6))) == [0, 1, 4, 9, 16, 25]
    for v in range(5):
        pool.submit(lambda a, v: a.sq.remote(v), v)
    assert not pool.has_free()  # 3 submits wait for an actor
    assert [pool.get_next() for _ in range(5)] == [0, 1, 4, 9, 16]
    assert not pool.has_next() and pool.has_free()
    with pytest.raises(StopIteration):
        pool.get_next()
    first, second = pool.pop_idle(), pool.pop_idle()
    assert isinstance(first, ActorHandle) and pool.pop_idle() is None
    pool.push(first)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(first)
    pool.push(second)
    pool.submit(lambda a, v: a.sq.remote(v), 7)
    assert pool.get_next_unordered(timeout=30) == 49


def test_max_pending_calls_refuses_extra_calls(actor_cluster):
    @ember.remote(max_pending_calls=2)
    class Slow:
        def nap(self, seconds):
            time.sleep(seconds)
            return seconds

    s = Slow.remote()
    ember.get(s.nap.remote(0))
    first, second = s.nap.remote(0.5), s.nap.remote(0)
    with pytest.raises(exc.PendingCallsLimitExceeded, match="max_pending_calls"):
        s.nap.remote(0)
    assert ember.get([first, second]) == [0.5, 0]
    assert ember.get(s.nap.remote(0)) == 0  # room again
