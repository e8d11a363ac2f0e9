"""The node's object store with real processes: capacity, spilling, restore, free,
zero-copy reads, and pulls of spilled objects between two nodes."""
import gc
import glob
import json
import os
import shutil
import signal

import numpy as np
import pytest

import ember
from ember import lifecycle
from ember import exceptions as exc
from ember.shells.shared import local_cluster
from ember.shells.wire import session
from ember.config import spill_root_from_config
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from store_probe import core_worker as _cw
from store_probe import node_stats as _stats
from store_probe import wait_for

pytestmark = pytest.mark.timeout(90)

MiB = 1024 * 1024
CAPACITY_BYTES = 200 * MiB
NODE_B_CAPACITY_BYTES = 100 * MiB
OBJECT_BYTES = 40 * MiB


@pytest.fixture(scope="module")
def store_cluster():
    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2, object_store_memory=CAPACITY_BYTES)
    yield ctx
    ember.shutdown()


def _spill_files(session_dir):
    return [p for p in glob.glob(os.path.join(session_dir, "spill", "ember-spill-*", "*"))
            if not p.endswith("owner.pid")]


def _array(i, nbytes=OBJECT_BYTES):
    return np.full(nbytes // 8, i, dtype=np.int64)


def _wait_for(cond, timeout_s=20.0, what="condition"):
    return wait_for(cond, what=what, timeout_s=timeout_s)


def _wait_store_drained(session_dir, keep_bytes=0):
    """Owners free objects every 100 ms once their last ref is gone: poll with a deadline."""
    def drained():
        gc.collect()  # refs caught in reference cycles (e.g. a test frame held by a traceback)
        s = _stats()
        return s.store_used_bytes <= keep_bytes and s.store_spilled_bytes == 0 and not _spill_files(session_dir)
    try:
        _wait_for(drained, what="the store to free dropped objects")
    except AssertionError:
        raise AssertionError(f"store not drained: {_stats()}; spill files {_spill_files(session_dir)}") from None


def test_put_more_than_capacity_spills_and_restores(store_cluster):
    session_dir = store_cluster["session_dir"]
    refs = []
    for i in range(8):  # 320 MiB into a 200 MiB store
        refs.append(ember.put(_array(i)))
        s = _stats()
        assert s.store_capacity_bytes == CAPACITY_BYTES
        assert s.store_used_bytes <= CAPACITY_BYTES
    s = _stats()
    assert s.store_spilled_objects >= 3 and s.store_spilled_bytes >= 3 * OBJECT_BYTES
    assert len(_spill_files(session_dir)) >= s.store_spilled_objects
    # Reading restores transparently, in any order, and usage stays bounded.
    for i in [0, 7, 1, 6, 2, 5, 3, 4]:
        value = ember.get(refs[i])
        assert value.shape == (OBJECT_BYTES // 8,) and value[0] == i and value[-1] == i
        del value
        assert _stats().store_used_bytes <= CAPACITY_BYTES
    del refs
    _wait_store_drained(session_dir)


def test_task_reads_spilled_argument_and_returns_large_value(store_cluster):
    refs = [ember.put(_array(i)) for i in range(7)]
    assert _stats().store_spilled_objects >= 2

    @ember.remote
    def total(a, i):
        assert a[0] == i
        return int(a[:4].sum()), np.full(OBJECT_BYTES // 8, i + 100, dtype=np.int64)

    results = ember.get([total.remote(refs[i], i) for i in range(7)])
    assert [r[0] for r in results] == [4 * i for i in range(7)]
    assert [int(r[1][-1]) for r in results] == [i + 100 for i in range(7)]
    assert _stats().store_used_bytes <= CAPACITY_BYTES
    del refs, results
    _wait_store_drained(store_cluster["session_dir"])


def test_single_object_larger_than_capacity_fails_naming_sizes(store_cluster):
    with pytest.raises(exc.ObjectStoreFullError) as info:
        ember.put(np.zeros((CAPACITY_BYTES + 20 * MiB) // 8))
    err = info.value
    assert err.object_size_bytes > CAPACITY_BYTES
    assert err.capacity_bytes == CAPACITY_BYTES
    assert err.used_bytes is not None and 0 <= err.used_bytes <= CAPACITY_BYTES
    text = str(err)
    assert str(err.object_size_bytes) in text and str(CAPACITY_BYTES) in text
    assert "MiB" in text
    # the cluster keeps working: a smaller put and a task both succeed
    ref = ember.put(_array(3, 8 * MiB))
    assert ember.get(ref)[5] == 3

    @ember.remote
    def add_one(x):
        return x + 1
    assert ember.get(add_one.remote(1)) == 2


def test_dropping_refs_frees_memory_and_spill_files(store_cluster):
    session_dir = store_cluster["session_dir"]
    refs = [ember.put(_array(i)) for i in range(8)]
    s = _stats()
    assert s.store_spilled_objects > 0 and _spill_files(session_dir)
    assert s.store_used_bytes > 100 * MiB
    del refs
    _wait_store_drained(session_dir)
    assert _stats().store_objects == 0


def test_zero_copy_in_driver_and_in_task(store_cluster):
    def mapped_in(store_dir, array):
        """(first, last) byte of ``array`` lie in a mapping of a file in ``store_dir``.
        Nested, so a task gets it by value."""
        try:
            from numpy.lib.array_utils import byte_bounds as bounds
        except ImportError:  # numpy < 2
            from numpy import byte_bounds as bounds
        first, end = bounds(array)
        found = []
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith(store_dir + "/"):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    found.append((lo, hi))
        return tuple(any(lo <= a < hi for lo, hi in found) for a in (first, end - 1))

    cw = _cw()
    store_dir = cw.shm.directory
    ref = ember.put(_array(7, 16 * MiB))
    value = ember.get(ref)
    assert value.flags.writeable is False
    assert mapped_in(store_dir, value) == (True, True)
    with pytest.raises(ValueError):
        value[0] = 1

    @ember.remote
    def check(a):
        from ember.shells.worker import core_worker
        sdir = core_worker.get_core_worker().shm.directory
        return bool(a.flags.writeable), mapped_in(sdir, a), int(a[0])

    # (A ref nested in an argument would be kept forever: borrowers are not tracked yet.)
    assert ember.get(check.remote(ref)) == (False, (True, True), 7)


# --- recycling freed files ------------------------------------------------------------------


def _pool_files():
    """(file id, size) of the pooled files in the head node's store directory."""
    shm = _cw().shm
    return [(fid, os.stat(os.path.join(shm.directory, f"pool.{fid}")).st_size)
            for fid in shm.list_pool_files()]


def _inode(ref):
    return os.stat(_cw().shm.path_of(ref._id)).st_ino


def _wait_pooled(min_size_bytes, timeout_s=20.0):
    """Wait for a pooled file of at least ``min_size_bytes`` (the free of a dropped ref)."""
    def pooled():
        gc.collect()
        return any(size >= min_size_bytes for _fid, size in _pool_files())
    try:
        _wait_for(pooled, timeout_s=timeout_s, what="the freed object's file to be pooled")
    except AssertionError:
        raise AssertionError(f"not pooled: {_pool_files()}, {_stats()}") from None


def _put_and_free_until_pooled(nbytes):
    """Put an object, drop it and wait for its file to be pooled; the inode of that file."""
    ref = ember.put(_array(1, nbytes))
    inode = _inode(ref)
    del ref
    _wait_pooled(nbytes)
    return inode


def test_freed_file_is_recycled_for_the_next_put(store_cluster):
    _wait_store_drained(store_cluster["session_dir"])
    nbytes = 24 * MiB + 123 * 4096  # a size no other test leaves in the pool
    inode = _put_and_free_until_pooled(nbytes)
    ref = ember.put(_array(2, nbytes))
    assert _inode(ref) == inode  # the same pages, written again
    assert all(size <= nbytes for _fid, size in _pool_files())
    value = ember.get(ref)
    assert int(value[0]) == 2 and int(value[-1]) == 2
    del value, ref
    _wait_store_drained(store_cluster["session_dir"])


def test_a_free_that_overtakes_the_seal_still_pools_the_file(store_cluster):
    """The cause of the old flake of the test above: the owner's free (sent by its I/O
    thread from the queue of dropped refs) can reach the node daemon before the seal
    (posted by the putting thread); the daemon then deleted the file instead of pooling
    it.  Here the free is sent first on purpose."""
    from ember.protocol import messages as m
    from ember.shells.shared.serialization import serialize
    _wait_store_drained(store_cluster["session_dir"])
    cw = _cw()
    nbytes = 20 * MiB + 321 * 4096  # a size no other test leaves in the pool
    ser = serialize(_array(4, nbytes))
    oid = cw.new_id() + b"\x00\x00\x00\x00"
    reply = cw.run_sync(cw.raylet.request(m.CreateObject(oid, ser.total_bytes, cw.address)))
    cw.shm.write(oid, ser, reply.recycled_name)
    inode = os.stat(cw.shm.path_of(oid)).st_ino

    def free_then_seal():
        cw.raylet.send(m.FreeObjects([oid]))
        cw.raylet.send(m.ObjectSealed(oid, ser.total_bytes, cw.address))

    cw.post(free_then_seal)
    _wait_pooled(ser.total_bytes)
    pooled = [fid for fid, size in _pool_files() if size == ser.total_bytes]
    assert len(pooled) == 1
    assert os.stat(os.path.join(cw.shm.directory, f"pool.{pooled[0]}")).st_ino == inode
    _wait_store_drained(store_cluster["session_dir"])


def test_zero_copy_values_survive_frees_and_new_puts(store_cluster):
    """No recycling of mapped files: a reader's array keeps its values after the object
    was freed and new objects of the same size were put, in the driver and in an actor."""
    session_dir = store_cluster["session_dir"]
    _wait_store_drained(session_dir)
    nbytes = 20 * MiB

    @ember.remote(num_cpus=0)
    class Holder:
        def hold(self, boxed):
            self.value = ember.get(boxed[0])  # zero copy; the ref in `boxed` is dropped on return
            return int(self.value[0])

        def bounds(self):
            return int(self.value.min()), int(self.value.max())

    holder = Holder.remote()
    ref = ember.put(_array(5, nbytes))
    value = ember.get(ref)
    held = ember.put(_array(6, nbytes))
    assert ember.get(holder.hold.remote([held])) == 6
    pooled_before = {fid for fid, _ in _pool_files()}
    del ref, held
    _wait_for(lambda: _stats().store_objects == 0, what="both objects to be freed")
    assert {fid for fid, _ in _pool_files()} <= pooled_before  # mapped: deleted, not pooled
    refs = [ember.put(_array(100 + i, nbytes)) for i in range(3)]
    assert [int(ember.get(r)[-1]) for r in refs] == [100, 101, 102]
    assert int(value.min()) == 5 and int(value.max()) == 5
    assert ember.get(holder.bounds.remote()) == (6, 6)
    ember.kill(holder)
    del refs, value
    _wait_store_drained(session_dir)


def test_pooled_files_make_room_before_anything_is_spilled(store_cluster):
    session_dir = store_cluster["session_dir"]
    _wait_store_drained(session_dir)
    _put_and_free_until_pooled(30 * MiB)
    # 3 x 62 MiB + the pooled 30 MiB do not fit in 200 MiB; 30 MiB is too small to take
    refs = [ember.put(_array(i, 62 * MiB)) for i in range(3)]
    s = _stats()
    assert s.store_spilled_bytes == 0 and s.store_used_bytes <= CAPACITY_BYTES
    assert not any(size > 30 * MiB for _fid, size in _pool_files())
    assert [int(ember.get(r)[3]) for r in refs] == [0, 1, 2]
    del refs
    _wait_store_drained(session_dir)


# --- two nodes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_b(store_cluster, tmp_path_factory):
    """A second node daemon (1 CPU, a 100 MiB store) spilling to its own --spill-dir."""
    cluster = lifecycle._local_cluster
    spill_root = str(tmp_path_factory.mktemp("node_b_spill"))
    args = local_cluster.node_args(num_cpus=1, num_gpus=None, resources={"node_b": 1},
                                   object_store_memory=NODE_B_CAPACITY_BYTES, spill_dir=spill_root)
    proc, port = local_cluster.start_node(cluster.gcs_address, cluster.session_dir,
                                          session.token_path(cluster.session_dir), host="127.0.0.1",
                                          is_head=False, tied_to_parent=True, extra=args)
    address = f"127.0.0.1:{port}"
    node = _wait_for(lambda: next((n for n in ember.nodes() if n["NodeManagerPort"] == port and n["Alive"]),
                                  None), what="node B to register")
    spill_dirs = glob.glob(os.path.join(spill_root, "ember-spill-*"))
    assert len(spill_dirs) == 1 and spill_dirs[0].endswith(node["NodeID"][:8])
    yield node["NodeID"], address, spill_dirs[0]
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except Exception:
        proc.kill()
        proc.wait(timeout=5)
    proc.stdout.close()
    assert not os.path.exists(spill_dirs[0])  # removed at shutdown


def test_pull_of_spilled_object_to_another_node_is_a_secondary_copy(store_cluster, node_b):
    node_id, address, _ = node_b
    refs = [ember.put(_array(i)) for i in range(7)]  # 280 MiB: the first ones are spilled
    head = _stats()
    assert head.store_spilled_objects >= 2

    on_b = NodeAffinitySchedulingStrategy(node_id, soft=False)

    @ember.remote(scheduling_strategy=on_b)
    def read(a):
        from ember.shells.worker import core_worker
        return int(a[0]), int(a[-1]), core_worker.get_core_worker().node_id.hex()

    assert ember.get(read.remote(refs[0])) == (0, 0, node_id)  # pulled while spilled on the head
    b = _stats(address)
    assert b.store_objects == 1 and b.store_used_bytes >= OBJECT_BYTES and b.store_spilled_bytes == 0
    # A second task on B reuses the copy (still one object there).
    assert ember.get(read.remote(refs[0]))[:2] == (0, 0)
    assert _stats(address).store_objects == 1

    # Room on B for a primary of 80 MiB: the secondary copy is deleted, not spilled.
    @ember.remote(scheduling_strategy=on_b)
    def put_big_on_b():
        ref = ember.put(np.ones(80 * MiB // 8, dtype=np.int64))
        return int(ember.get(ref)[3])

    assert ember.get(put_big_on_b.remote()) == 1
    _wait_for(lambda: _stats(address).store_objects == 0, what="node B's store to empty")
    b = _stats(address)
    assert b.store_spilled_bytes == 0 and b.store_used_bytes == 0
    del refs
    _wait_store_drained(store_cluster["session_dir"])


def test_spilling_on_a_node_with_its_own_spill_dir_then_disk_full(store_cluster, node_b):
    node_id, address, spill_dir = node_b
    on_b = NodeAffinitySchedulingStrategy(node_id, soft=False)

    @ember.remote(scheduling_strategy=on_b)
    def fill(n, tag):
        """Put n objects of 30 MiB on node B, read them all back; report the first failure."""
        try:
            refs = [ember.put(np.full(30 * MiB // 8, tag + i, dtype=np.int64)) for i in range(n)]
            return [int(ember.get(r)[-1]) for r in refs]
        except exc.ObjectStoreFullError as e:
            return str(e), e.object_size_bytes, e.capacity_bytes, e.used_bytes

    # 150 MiB into B's 100 MiB store: spills into B's own --spill-dir, reads restore
    assert ember.get(fill.remote(5, 0)) == [0, 1, 2, 3, 4]
    _wait_for(lambda: _stats(address).store_objects == 0, what="node B to free the task's objects")

    # Every spill on B now fails (its spill directory is a file): the put that needs
    # room fails with ObjectStoreFullError naming the sizes and the spill failure.
    shutil.rmtree(spill_dir)
    open(spill_dir, "w").close()
    try:
        message, size, capacity, used = ember.get(fill.remote(4, 10))
    finally:
        os.unlink(spill_dir)
        os.makedirs(spill_dir)
    assert size > 30 * MiB and capacity == NODE_B_CAPACITY_BYTES and used >= 90 * MiB
    assert "spilling to" in message and spill_dir in message
    _wait_for(lambda: _stats(address).store_objects == 0, what="node B to free the task's objects")
    # ... and once the directory is back, spilling works again.
    assert ember.get(fill.remote(4, 20)) == [20, 21, 22, 23]


def test_spill_directory_from_ray_config_forms():
    assert spill_root_from_config(None, None) is None
    assert spill_root_from_config({}, "/x") == "/x"
    ray_form = {"object_spilling_config": json.dumps(
        {"type": "filesystem", "params": {"directory_path": "/tmp/spill"}})}
    assert spill_root_from_config(ray_form) == "/tmp/spill"
    assert spill_root_from_config(ray_form, "/y") == "/y"  # the plain option wins
    listed = {"object_spilling_config": {"type": "filesystem", "params": {"directory_path": ["/a", "/b"]}}}
    assert spill_root_from_config(listed) == "/a"
    with pytest.raises(ValueError, match="not supported"):
        spill_root_from_config({"object_spilling_config": '{"type": "smart_open", "params": {}}'})
    with pytest.raises(ValueError, match="JSON"):
        spill_root_from_config({"object_spilling_config": "{nope"})
    args = local_cluster.node_args(num_cpus=1, num_gpus=None, resources=None,
                                   object_store_memory=100 * MiB, spill_dir="/tmp/s")
    assert args[-2:] == ["--spill-dir", "/tmp/s"] and "--object-store-memory" in args
