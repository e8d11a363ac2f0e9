"""Remote functions against a real local cluster."""
import os
import time

import numpy as np
import pytest

import ember
from ember import exceptions as exc

pytestmark = pytest.mark.timeout(60)


@ember.remote
def plus_1(x):
    return x + 1


def test_plus_1(cluster):
    assert ember.get(plus_1.remote(10)) == 11


def test_many_tasks_and_list_get(cluster):
    assert ember.get([plus_1.remote(i) for i in range(200)]) == list(range(1, 201))


def test_kwargs_and_defaults(cluster):
    @ember.remote
    def f(a, b=2, *, c=3):
        return (a, b, c)
    assert ember.get(f.remote(1, c=5)) == (1, 2, 5)


def test_ref_args_resolved_and_nested_refs_stay_refs(cluster):
    x = ember.put(41)

    @ember.remote
    def g(v, lst):
        assert isinstance(lst[0], ember.ObjectRef)
        return v + ember.get(lst[0])
    assert ember.get(g.remote(x, [x])) == 82


def test_chain_of_dependent_tasks(cluster):
    r = plus_1.remote(0)
    for _ in range(30):
        r = plus_1.remote(r)
    assert ember.get(r) == 31


def test_tasks_submit_tasks_and_get(cluster):
    @ember.remote
    def fan(n):
        return sum(ember.get([plus_1.remote(i) for i in range(n)]))

    # More nested getters than CPUs: blocked workers lend their CPU.
    assert ember.get([fan.remote(5) for _ in range(4)]) == [15] * 4


def test_num_returns(cluster):
    @ember.remote(num_returns=3)
    def three():
        return 1, 2, 3
    a, b, c = three.remote()
    assert ember.get([a, b, c]) == [1, 2, 3]
    assert ember.get(three.options(num_returns=1).remote()) == (1, 2, 3)


def test_exception_is_task_error_and_user_class(cluster):
    class MyError(Exception):
        pass

    @ember.remote
    def boom():
        raise MyError("kaput")
    with pytest.raises(MyError) as info:
        ember.get(boom.remote())
    assert isinstance(info.value, exc.RayTaskError)
    assert "kaput" in str(info.value) and "boom" in str(info.value)


def test_error_propagates_through_dependencies(cluster):
    @ember.remote
    def boom():
        raise ValueError("first")
    with pytest.raises(ValueError, match="first"):
        ember.get(plus_1.remote(boom.remote()))


def test_retry_exceptions(cluster, tmp_path):
    marker = tmp_path / "tries"

    @ember.remote(max_retries=2, retry_exceptions=True)
    def flaky(path):
        n = int(open(path).read()) if os.path.exists(path) else 0
        open(path, "w").write(str(n + 1))
        if n < 2:
            raise RuntimeError("not yet")
        return n
    assert ember.get(flaky.remote(str(marker))) == 2


def test_get_timeout(cluster):
    @ember.remote
    def slow():
        time.sleep(3)
    with pytest.raises(exc.GetTimeoutError):
        ember.get(slow.remote(), timeout=0.2)


def test_wait(cluster):
    @ember.remote
    def sleepy(t):
        time.sleep(t)
        return t
    refs = [sleepy.remote(0), sleepy.remote(2)]
    ready, not_ready = ember.wait(refs, num_returns=1, timeout=1.5)
    assert ready == [refs[0]] and not_ready == [refs[1]]
    ready, not_ready = ember.wait(refs, num_returns=2)
    assert len(ready) == 2 and not not_ready
    with pytest.raises(ValueError):
        ember.wait([refs[0], refs[0]])


def test_put_get_objects(cluster):
    for value in [None, 1, "s", b"b" * 10, {"a": [1, 2]}, (1, 2), np.arange(10)]:
        got = ember.get(ember.put(value))
        if isinstance(value, np.ndarray):
            assert (got == value).all()
        else:
            assert got == value


def test_large_array_put_is_zero_copy_and_read_only(cluster):
    a = np.arange(5_000_000, dtype=np.int64)
    b = ember.get(ember.put(a))
    assert b.flags.writeable is False and (b[-3:] == a[-3:]).all()


def test_large_arguments_and_returns(cluster):
    @ember.remote
    def total(x):
        return float(x.sum())

    @ember.remote
    def make(n):
        return np.ones(n)
    a = np.ones(3_000_000)
    assert ember.get(total.remote(a)) == 3_000_000.0
    assert ember.get(make.remote(2_000_000)).shape == (2_000_000,)
    assert ember.get(total.remote(make.remote(2_000_000))) == 2_000_000.0


def test_small_objects_are_immutable(cluster):
    r = ember.put([1, 2, 3])
    first = ember.get(r)
    first.append(4)
    assert ember.get(r) == [1, 2, 3]


def test_unserializable_argument_fails_at_remote_and_cluster_lives_on(cluster):
    import threading
    lock = threading.Lock()
    with pytest.raises(TypeError, match="lock"):
        plus_1.remote(lock)
    with pytest.raises(TypeError, match="lock"):
        ember.put(lock)
    assert ember.get(plus_1.remote(1)) == 2


def test_remote_function_cannot_be_called_directly(cluster):
    with pytest.raises(TypeError, match=r"plus_1.remote\(\)"):
        plus_1(1)


def test_object_ref_basics(cluster):
    import pickle
    r = ember.put(5)
    assert hash(r) == hash(pickle.loads(pickle.dumps(r))) and r == pickle.loads(pickle.dumps(r))
    assert "ObjectRef(" in repr(r)
    assert ember.get(r.future().result(timeout=10)) if False else r.future().result(timeout=10) == 5


def test_object_ref_awaitable(cluster):
    import asyncio

    async def main():
        return await plus_1.remote(1), await asyncio.wrap_future(plus_1.remote(2).future())
    assert asyncio.run(main()) == (2, 3)


def test_custom_and_fractional_resources(cluster):
    @ember.remote(resources={"custom": 0.5}, num_cpus=0.5)
    def res():
        return ember.get_runtime_context().get_assigned_resources()
    assert ember.get(res.remote()) == {"custom": 0.5, "CPU": 0.5}


def test_infeasible_task_warns_instead_of_hanging(cluster, capfd):
    r = plus_1.options(resources={"nonexistent": 1}).remote(1)
    with pytest.raises(exc.GetTimeoutError):
        ember.get(r, timeout=1.5)
    err = capfd.readouterr().err
    assert "cannot be scheduled" in err and "nonexistent" in err


def test_runtime_context(cluster):
    @ember.remote
    def ctx():
        c = ember.get_runtime_context()
        return c.get_job_id(), c.get_node_id(), c.get_task_id(), os.getpid(), c.namespace
    job, node, task, pid, ns = ember.get(ctx.remote())
    here = ember.get_runtime_context()
    assert job == here.get_job_id() and node == here.get_node_id()
    assert task and pid != os.getpid() and ns == here.namespace


def test_worker_output_is_streamed_to_driver(cluster, capfd):
    @ember.remote
    def talk():
        print("hello-from-a-worker")
        return os.getpid()
    pid = ember.get(talk.remote())
    deadline = time.time() + 5
    out = ""
    while time.time() < deadline:
        out += capfd.readouterr().out
        if "hello-from-a-worker" in out:
            break
        time.sleep(0.1)
    assert f"(pid={pid}, node=" in out and "hello-from-a-worker" in out


def test_cluster_and_available_resources(cluster):
    assert ember.cluster_resources()["CPU"] == 2.0
    assert ember.cluster_resources()["custom"] == 2.0
    assert len(ember.nodes()) == 1 and ember.nodes()[0]["Alive"]


def test_memory_is_a_schedulable_resource(cluster):
    assert ember.cluster_resources()["memory"] > 100 * 1024 ** 2

    @ember.remote(memory=100 * 1024 ** 2)
    def with_memory():
        return ember.get_runtime_context().get_assigned_resources()["memory"]
    assert ember.get(with_memory.remote(), timeout=30) == 100 * 1024 ** 2
