"""Reference counting with real processes: objects live exactly as long as someone can reach
them (local refs, refs inside other objects, borrowers in other processes), then their
memory is freed; owners that die make get() raise OwnerDiedError."""
import gc
import signal
import threading
import time

import numpy as np
import pytest

import ember
from ember import lifecycle
from ember import exceptions as exc
from ember.shells.shared import local_cluster
from ember.shells.wire import session
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from store_probe import core_worker as _cw
from store_probe import node_stats as _stats
from store_probe import wait_for

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
STORE_BYTES = 256 * MiB


@pytest.fixture(scope="module")
def cluster():
    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2, object_store_memory=STORE_BYTES)
    yield ctx
    ember.shutdown()


def _wait_for(cond, what, timeout_s=20.0):
    return wait_for(cond, what=what, timeout_s=timeout_s, poll_s=0.05, collect_garbage=True)


def _wait_store_empty(what):
    def empty():
        s = _stats()
        return s.store_objects == 0 and s.store_used_bytes == 0
    _wait_for(empty, what)


def _tracked(object_id):
    """Whether the driver's reference table still counts the object (read on the I/O thread)."""
    cw = _cw()

    async def ask():
        cw.refs.drain()
        return object_id in cw.refs.table

    return cw.run_sync(ask())


def _big(fill):
    return np.full(MiB // 8, fill, dtype=np.int64)


@ember.remote
def identity(value):
    return value


@ember.remote
def make_owned(fill):
    return [ember.put(np.full(MiB // 8, fill, dtype=np.int64))]


@ember.remote
def total_of_first(refs):
    return int(ember.get(refs[0]).sum())


@ember.remote
def slow_big(delay_s, fill):
    time.sleep(delay_s)
    return np.full(MiB // 8, fill, dtype=np.int64)


@ember.remote
def slow_small(delay_s):
    time.sleep(delay_s)
    return delay_s


@ember.remote
class Holder:
    def __init__(self):
        self.kept = None

    def keep(self, refs):
        self.kept = refs
        return len(refs)

    def total(self):
        return int(ember.get(self.kept[0]).sum())

    def drop(self):
        self.kept = None
        return True

    def make(self, fill):
        return [ember.put(np.full(MiB // 8, fill, dtype=np.int64))]

    def make_pending(self, delay_s):
        return [slow_small.remote(delay_s)]


def test_put_and_drop_loop_keeps_store_flat(cluster):
    _wait_store_empty("an empty store at the start")
    value = _big(1)
    peak_bytes = 0
    for i in range(10_000):  # issue 4: 10,000 large objects put and dropped
        ref = ember.put(value)
        del ref
        if i % 250 == 0:
            s = _stats()
            peak_bytes = max(peak_bytes, s.store_used_bytes)
            assert s.store_spilled_bytes == 0
    assert peak_bytes <= 64 * MiB, f"store grew to {peak_bytes / MiB:.0f} MiB while dropping every put"
    _wait_store_empty("the last puts to be freed")


def test_object_put_inside_another_lives_until_outer_is_dropped(cluster):
    inner = ember.put(_big(2))
    inner_id = inner.binary()
    outer = ember.put([inner])
    del inner
    gc.collect()
    time.sleep(0.3)
    assert _tracked(inner_id)
    assert int(ember.get(ember.get(outer)[0]).sum()) == 2 * MiB // 8
    assert _stats().store_objects == 1
    del outer
    _wait_for(lambda: not _tracked(inner_id), "the inner object to be released")
    _wait_store_empty("the inner object's store file to be freed")


def test_nested_arg_stays_readable_after_driver_drops_it(cluster):
    inner = ember.put(_big(3))
    assert ember.get(total_of_first.remote([inner])) == 3 * MiB // 8
    returned = identity.remote([inner])  # the task hands the ref back inside its return value
    inner_id = inner.binary()
    del inner
    gc.collect()
    (back,) = ember.get(returned)
    assert back.binary() == inner_id
    del back
    gc.collect()
    time.sleep(0.3)
    assert int(ember.get(ember.get(returned)[0]).sum()) == 3 * MiB // 8
    del returned
    _wait_for(lambda: not _tracked(inner_id), "the returned ref's object to be released")
    _wait_store_empty("the object to be freed after its outer return was dropped")


def test_ref_owned_by_a_worker_is_freed_when_the_driver_drops_it(cluster):
    (ref,) = ember.get(make_owned.remote(4))  # a worker owns it; the driver borrows it
    time.sleep(0.3)
    assert int(ember.get(ref).sum()) == 4 * MiB // 8
    assert _stats().store_objects == 1
    del ref
    _wait_store_empty("the worker-owned object to be freed once the driver dropped it")


def test_actor_state_keeps_a_borrowed_object_alive(cluster):
    holder = Holder.remote()
    inner = ember.put(_big(5))
    inner_id = inner.binary()
    assert ember.get(holder.keep.remote([inner])) == 1
    del inner
    gc.collect()
    time.sleep(0.5)
    assert _tracked(inner_id)
    assert ember.get(holder.total.remote()) == 5 * MiB // 8
    assert ember.get(holder.drop.remote()) is True
    _wait_for(lambda: not _tracked(inner_id), "the actor's RemoveBorrower")
    _wait_store_empty("the object to be freed after the actor dropped it")
    ember.kill(holder)


def test_dead_borrower_releases_its_borrow(cluster):
    holder = Holder.remote()
    inner = ember.put(_big(6))
    inner_id = inner.binary()
    assert ember.get(holder.keep.remote([inner])) == 1
    del inner
    gc.collect()
    time.sleep(0.5)
    assert _tracked(inner_id)
    ember.kill(holder)
    _wait_for(lambda: not _tracked(inner_id), "the dead actor's borrow to be dropped")
    _wait_store_empty("the object to be freed after its only borrower died")


def test_result_of_a_dropped_ref_is_freed_when_it_arrives(cluster):
    _wait_store_empty("an empty store")
    ref = slow_big.remote(0.5, 7)
    object_id = ref.binary()
    del ref
    small = slow_small.remote(0.5)
    small_id = small.binary()
    del small
    gc.collect()
    time.sleep(1.0)
    _wait_store_empty("the late result to be freed")
    cw = _cw()
    _wait_for(lambda: object_id not in cw.store and small_id not in cw.store,
              "the late results to leave the driver's memory store")


def test_many_tasks_leave_no_records_behind(cluster):
    cw = _cw()
    gc.collect()
    _wait_for(lambda: _tracked(b"") is False, "a drain")
    records_before, entries_before = len(cw.refs.table), len(cw.store)
    ember.get([identity.remote(i) for i in range(500)])
    for i in range(200):
        assert ember.get(identity.remote(i)) == i
    _wait_for(lambda: _tracked(b"") is False and len(cw.refs.table) <= records_before
              and len(cw.store) <= entries_before, "task results to be released")



def test_ref_returned_by_an_actor_is_freed_when_the_driver_drops_it(cluster):
    holder = Holder.remote()
    _wait_store_empty("an empty store")
    (ref,) = ember.get(holder.make.remote(10))  # the actor owns it and held it for the reply
    assert int(ember.get(ref).sum()) == 10 * MiB // 8
    del ref
    _wait_store_empty("the actor-owned object to be freed once the driver dropped it")
    ember.kill(holder)

@pytest.fixture(scope="module")
def node_b(cluster):
    """A second node daemon on this machine (1 CPU, resource "node_b")."""
    local = lifecycle._local_cluster
    args = local_cluster.node_args(num_cpus=1, num_gpus=None, resources={"node_b": 1},
                                   object_store_memory=128 * MiB)
    proc, port = local_cluster.start_node(local.gcs_address, local.session_dir,
                                          session.token_path(local.session_dir), host="127.0.0.1",
                                          is_head=False, tied_to_parent=True, extra=args)
    node = _wait_for(lambda: next((n for n in ember.nodes() if n["NodeManagerPort"] == port and n["Alive"]),
                                  None), "node B to register")
    yield node["NodeID"], f"127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except Exception:
        proc.kill()
        proc.wait(timeout=5)
    proc.stdout.close()


def test_object_stored_on_another_node_is_freed_there_and_here(cluster, node_b):
    node_id, address = node_b
    _wait_store_empty("an empty head store")
    on_b = NodeAffinitySchedulingStrategy(node_id, soft=False)
    ref = slow_big.options(scheduling_strategy=on_b).remote(0.0, 9)
    assert int(ember.get(ref).sum()) == 9 * MiB // 8  # read here: pulled to the head's store
    assert _stats(address).store_objects == 1
    del ref
    _wait_for(lambda: _stats(address).store_objects == 0, "node B to delete the primary copy")
    _wait_store_empty("the head to delete the pulled copy")


def test_get_after_the_owner_died_raises_owner_died(cluster):
    holder = Holder.remote()
    (ref,) = ember.get(holder.make.remote(8))
    ember.kill(holder)
    time.sleep(0.5)
    with pytest.raises(exc.OwnerDiedError) as info:
        ember.get(ref, timeout=30)
    assert "owner" in str(info.value)


def test_owner_dying_while_a_borrower_waits_raises_owner_died(cluster):
    holder = Holder.remote()
    (ref,) = ember.get(holder.make_pending.remote(20))
    killer = threading.Timer(1.0, ember.kill, args=(holder,))
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(exc.OwnerDiedError):
            ember.get(ref, timeout=60)
    finally:
        killer.join()
    assert time.monotonic() - started < 15



def test_objects_of_a_dead_owner_are_freed_from_the_store(cluster):
    holder = Holder.remote()
    (ref,) = ember.get(holder.make.remote(9))  # a 1 MiB object the actor owns, in the store
    _wait_for(lambda: _stats().store_objects >= 1, "the actor's object to be stored")
    ember.kill(holder)
    _wait_store_empty("the node daemon to free the dead owner's object")
    del ref
