"""ember.util.multiprocessing.Pool against multiprocessing.Pool's documented behaviour."""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time

import cloudpickle
import pytest

import ember
from ember.util.multiprocessing import Pool, TimeoutError

pytestmark = pytest.mark.timeout(120)
# The pool's processes cannot import this test module: send its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x):
    return x * x


def fails_on_three(x):
    if x == 3:
        raise KeyError("three")
    return x


def pid_of(_):
    return os.getpid()


def init_marker(value):
    os.environ["EMBER_POOL_TEST_MARKER"] = value  # process state that outlives one call


def read_marker(_):
    return os.environ.get("EMBER_POOL_TEST_MARKER")


def test_timeout_error_is_multiprocessings():
    assert TimeoutError is multiprocessing.TimeoutError


def test_map_family(cluster):
    with Pool(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.map(square, range(10), chunksize=3) == [x * x for x in range(10)]
        assert pool.map(square, []) == []
        assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
        assert list(pool.imap(square, range(7), chunksize=2)) == [x * x for x in range(7)]
        assert sorted(pool.imap_unordered(square, range(7))) == sorted(x * x for x in range(7))
        assert pool.apply(divmod, (7, 2)) == (3, 1)
        assert pool.apply(dict, (), {"a": 1}) == {"a": 1}
        assert pool.map_async(square, range(4)).get(timeout=30) == [0, 1, 4, 9]
        assert pool.starmap_async(pow, [(2, 2)]).get(timeout=30) == [4]


def test_work_is_spread_over_the_pools_processes(cluster):
    with Pool(2) as pool:
        pids = set(pool.map(pid_of, range(16), chunksize=1))
        assert len(pids) == 2 and os.getpid() not in pids


def test_errors_are_raised_as_multiprocessing_raises_them(cluster):
    with Pool(2) as pool:
        with pytest.raises(KeyError, match="three") as info:
            pool.map(fails_on_three, range(6))
        assert isinstance(info.value.__cause__, multiprocessing.pool.RemoteTraceback)
        assert "fails_on_three" in str(info.value.__cause__)
        with pytest.raises(KeyError):
            pool.apply(fails_on_three, (3,))
        it = pool.imap(fails_on_three, range(6))
        assert [next(it), next(it), next(it)] == [0, 1, 2]
        with pytest.raises(KeyError):
            next(it)
        result = pool.apply_async(fails_on_three, (3,))
        result.wait(30)
        assert result.ready() and not result.successful()


def test_async_result_and_callbacks(cluster):
    got, errors, called = [], [], threading.Event()
    with Pool(2) as pool:
        slow = pool.apply_async(time.sleep, (0.5,))
        assert not slow.ready()
        with pytest.raises(ValueError, match="not ready"):
            slow.successful()
        with pytest.raises(TimeoutError):
            slow.get(timeout=0.01)
        slow.wait()
        assert slow.ready() and slow.successful() and slow.get() is None
        pool.map_async(square, range(3), callback=lambda v: (got.append(v), called.set())).wait(30)
        assert called.wait(10) and got == [[0, 1, 4]]
        pool.apply_async(fails_on_three, (3,), error_callback=errors.append).wait(30)
        assert len(errors) == 1 and isinstance(errors[0], KeyError)
        it = pool.imap(time.sleep, [0.5])
        with pytest.raises(TimeoutError):
            it.next(timeout=0.01)
        assert it.next(timeout=30) is None
        with pytest.raises(StopIteration):
            next(it)


def test_initializer_runs_in_every_process(cluster):
    with Pool(2, initializer=init_marker, initargs=("set",)) as pool:
        assert pool.map(read_marker, range(6), chunksize=1) == ["set"] * 6


def test_maxtasksperchild_replaces_processes(cluster):
    pool = Pool(1, maxtasksperchild=2)
    pids = pool.map(pid_of, range(6), chunksize=1)
    assert len(set(pids)) == 3 and pids[0] == pids[1] and pids[2] == pids[3]
    pool.close()
    pool.join()


def test_close_join_terminate(cluster):
    pool = Pool(2)
    pending = pool.map_async(square, range(20), chunksize=1)
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    pool.close()
    with pytest.raises(ValueError, match="not running"):
        pool.map(square, [1])
    pool.join()
    assert pending.ready() and pending.get() == [x * x for x in range(20)]
    pool.terminate()

    pool = Pool(2)
    pool.terminate()
    with pytest.raises(ValueError, match="not running"):
        pool.apply(square, (2,))


def test_bad_arguments(cluster):
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0)
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(3)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError, match="initializer"):
        Pool(1, initializer=5)
    with Pool(1) as pool:
        with pytest.raises(ValueError, match="Chunksize"):
            pool.map(square, [1, 2], chunksize=0)
        with pytest.raises(TypeError, match="callable"):
            pool.map(5, [1])


def test_default_size_is_the_clusters_cpus_and_pools_follow_tasks(cluster):
    with Pool() as pool:
        assert pool._processes == 2

    @ember.remote(num_cpus=0)
    def in_a_task():
        with Pool(1) as inner:
            return inner.map(square, range(4))

    assert ember.get(in_a_task.remote()) == [0, 1, 4, 9]
