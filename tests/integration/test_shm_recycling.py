"""Recycling of store files with real files and processes: readers' flocks block
recycling, a recycled file is written through a kept mapping, deleted files are
emptied so that kept mappings hold no pages."""
import os
import signal

import numpy as np
import pytest

from ember.shells.shared import shm_store
from ember.shells.shared.serialization import deserialize, serialize
from ember.shells.shared.shm_store import ShmStore

pytestmark = pytest.mark.timeout(60)

MiB = 1024 * 1024


@pytest.fixture
def store(tmp_path):
    directory = "/dev/shm" if os.path.isdir("/dev/shm") else str(tmp_path)
    s = ShmStore(os.path.join(directory, f"ember-test-recycle-{os.getpid()}"))
    s.create_dir()
    yield s
    s.remove_dir()


def oid(n: int) -> bytes:
    return bytes([n]) * 28


def _array(value: int, nbytes: int = 2 * MiB) -> np.ndarray:
    return np.full(nbytes // 8, value, dtype=np.int64)


def _put(store: ShmStore, n: int, value, recycled_name: str = "") -> int:
    return store.write(oid(n), serialize(value), recycled_name)


def test_a_mapped_file_is_not_recycled_and_the_reader_keeps_its_values(store):
    _put(store, 1, _array(7))
    got = deserialize(store.open(oid(1)))
    assert not store.recycle(oid(1), 1)  # the reader's lock
    assert not store.contains(oid(1)) and store.list_pool_files() == []
    _put(store, 2, _array(9))  # a new file: nothing to reuse
    assert int(got[0]) == 7 and int(got[-1]) == 7


def test_an_unmapped_file_is_pooled_then_written_in_place(store):
    _put(store, 1, _array(7))
    view = store.open(oid(1))
    inode = os.stat(store.path_of(oid(1))).st_ino
    del view  # the mapping (and its lock) go with the last view
    assert store.recycle(oid(1), 5)
    assert store.list_pool_files() == [5] and not store.contains(oid(1))
    name = store.take_pool_file(5, oid(2))
    assert name == f"{oid(2).hex()}.r5.tmp" and store.list_pool_files() == []
    obj = serialize(_array(3, 3 * MiB))
    assert store.write(oid(2), obj, name) == obj.total_bytes
    assert os.stat(store.path_of(oid(2))).st_ino == inode  # the same pages
    assert store.size_of(oid(2)) == obj.total_bytes
    assert bytes(store.open(oid(2))) == obj.to_bytes()
    assert len(store.write_mappings) == 1


def test_recycled_writes_overwrite_every_byte_padding_included(store):
    garbage = b"\xff" * (4 * MiB)
    store.write_bytes(oid(1), garbage)
    assert store.recycle(oid(1), 1)
    name = store.take_pool_file(1, oid(2))
    value = {"a": np.arange(300_000, dtype=np.int8), "b": np.arange(200_000, dtype=np.int16)}
    obj = serialize(value)
    store.write(oid(2), obj, name)
    assert bytes(store.open(oid(2))) == obj.to_bytes()  # padding between buffers is zero


def test_kept_mapping_is_reused_and_dropped_when_the_file_is_deleted(store):
    _put(store, 1, _array(1))
    assert store.recycle(oid(1), 1)
    _put(store, 2, _array(2), store.take_pool_file(1, oid(2)))
    assert len(store.write_mappings) == 1
    assert store.recycle(oid(2), 2)
    _put(store, 3, _array(3), store.take_pool_file(2, oid(3)))
    assert len(store.write_mappings) == 1  # the same inode: the same mapping
    assert int(deserialize(store.open(oid(3)))[5]) == 3
    assert store.recycle(oid(3), 3)
    assert store.trim_pool_file(3)  # emptied, then unlinked
    assert store.write_mappings.prune() == 0


def test_delete_empties_an_unmapped_file_but_not_a_mapped_one(store):
    _put(store, 1, _array(1))
    assert store.recycle(oid(1), 1)
    _put(store, 2, _array(2), store.take_pool_file(1, oid(2)))
    path = store.path_of(oid(2))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert store.delete(oid(2))
        assert os.fstat(fd).st_size == 0  # nobody read it: its pages are gone
    finally:
        os.close(fd)
    _put(store, 3, _array(3))
    got = deserialize(store.open(oid(3)))
    assert store.delete(oid(3))
    assert int(got[-1]) == 3  # a reader keeps its pages


def test_reader_racing_with_recycling_sees_the_object_as_gone(store, monkeypatch):
    _put(store, 1, _array(1))
    real_flock = shm_store.fcntl.flock

    def recycle_first(fd, op):  # the daemon pools the file between the reader's open and lock
        monkeypatch.setattr(shm_store.fcntl, "flock", real_flock)
        assert store.recycle(oid(1), 1)
        return real_flock(fd, op)

    monkeypatch.setattr(shm_store.fcntl, "flock", recycle_first)
    assert store.open(oid(1)) is None
    assert store.list_pool_files() == [1]


def test_a_dead_readers_lock_is_released(store):
    _put(store, 1, _array(1))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: map the object, say so, wait to be killed
        try:
            view = store.open(oid(1))
            os.write(write_fd, b"1" if view is not None else b"0")
            signal.pause()
        finally:
            os._exit(0)
    try:
        assert os.read(read_fd, 1) == b"1"
        assert not _can_lock(store.path_of(oid(1)))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_fd)
        os.close(write_fd)
    assert store.recycle(oid(1), 1)


def _can_lock(path: str) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        shm_store.fcntl.flock(fd, shm_store.fcntl.LOCK_EX | shm_store.fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_missing_recycled_file_falls_back_to_a_new_one(store):
    obj = serialize(_array(4))
    assert store.write(oid(1), obj, f"{oid(1).hex()}.r9.tmp") == obj.total_bytes
    assert int(deserialize(store.open(oid(1)))[0]) == 4
    assert store.take_pool_file(9, oid(2)) == ""


def test_pull_writes_into_a_recycled_file(store):
    _put(store, 1, _array(1))
    assert store.recycle(oid(1), 1)
    data = serialize(_array(6)).to_bytes()
    pending = store.create_for_write(oid(2), len(data), store.take_pool_file(1, oid(2)))
    pending.write_at(0, data)
    store.seal(oid(2))
    assert bytes(store.open(oid(2))) == data
