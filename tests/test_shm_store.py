"""ember.shells.shared.shm_store on the real /dev/shm."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import psutil
import pytest

from ember.shells.shared.serialization import deserialize, serialize
from ember.shells.shared.shm_store import (
    OWNER_FILE,
    ShmStore,
    default_capacity_bytes,
    node_store_directory,
    sweep_stale,
)

pytestmark = pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")


def oid(n: int) -> bytes:
    return n.to_bytes(4, "big") * 7


@pytest.fixture
def store():
    directory = node_store_directory(f"test{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    s = ShmStore(directory)
    s.create_dir()
    yield s
    s.remove_dir()
    assert not os.path.exists(directory)


def test_directory_layout(store):
    assert store.directory.startswith("/dev/shm/ember-test")
    with open(os.path.join(store.directory, OWNER_FILE)) as f:
        assert int(f.read().split()[0]) == os.getpid()
    assert store.list_objects() == []


def test_write_open_roundtrip(store):
    value = {"a": [1, 2, 3], "b": b"x" * 100_000}
    obj = serialize(value)
    assert store.write(oid(1), obj) == obj.total_bytes
    assert store.contains(oid(1)) and store.size_of(oid(1)) == obj.total_bytes
    view = store.open(oid(1))
    assert bytes(view) == obj.to_bytes()
    assert deserialize(view) == value
    assert store.open(oid(2)) is None and store.size_of(oid(2)) is None
    assert not store.contains(oid(2))
    assert store.list_objects() == [oid(1)]


def test_zero_copy_get_of_50mb_array(store):
    arr = np.arange(50_000_000 // 8, dtype=np.float64)
    store.write(oid(1), serialize(arr))
    view = store.open(oid(1))
    assert view.readonly
    out = deserialize(view)
    assert out.flags.writeable is False
    mapping = np.frombuffer(view, dtype=np.uint8)
    assert np.shares_memory(out, mapping)
    start = mapping.__array_interface__["data"][0]
    out_start = out.__array_interface__["data"][0]
    assert start <= out_start and out_start + out.nbytes <= start + mapping.nbytes
    assert out_start % 64 == 0
    assert np.array_equal(out, arr)
    with pytest.raises(ValueError):
        out[0] = 1.0


def test_reader_keeps_pages_after_delete(store):
    arr = np.arange(1000, dtype=np.int64)
    store.write(oid(1), serialize(arr))
    out = deserialize(store.open(oid(1)))
    assert store.delete(oid(1)) is True
    assert store.delete(oid(1)) is False
    assert not store.contains(oid(1))
    assert int(out.sum()) == sum(range(1000))  # mapping outlives the unlink


def test_write_bytes_and_in_place_write(store):
    obj = serialize(np.ones(10_000))
    data = obj.to_bytes()
    store.write_bytes(oid(1), data)
    assert bytes(store.open(oid(1))) == data

    pending = store.create_for_write(oid(2), len(data))
    with pytest.raises(ValueError):
        store.create_for_write(oid(2), len(data))
    half = len(data) // 2
    pending.write_at(0, data[:half])
    assert not store.contains(oid(2))
    assert oid(2) not in store.list_objects()  # the .tmp file is invisible
    pending.buffer[half:] = data[half:]
    with pytest.raises(ValueError):
        pending.write_at(len(data), b"x")
    assert store.seal(oid(2)) == len(data)
    assert store.contains(oid(2))
    assert np.array_equal(deserialize(store.open(oid(2))), np.ones(10_000))

    store.create_for_write(oid(3), 10)
    store.abort(oid(3))
    assert not store.contains(oid(3))
    assert not [n for n in os.listdir(store.directory) if n.endswith(".tmp")]


def test_empty_object(store):
    store.write_bytes(oid(1), b"")
    assert store.open(oid(1)).nbytes == 0


def test_spill_and_restore(store, tmp_path):
    value = np.arange(100_000)
    store.write(oid(1), serialize(value))
    path = store.spill(oid(1), str(tmp_path / "spill"))
    assert not store.contains(oid(1)) and os.path.exists(path)
    assert store.restore(oid(1), path) == os.path.getsize(path)
    assert np.array_equal(deserialize(store.open(oid(1))), value)
    assert ShmStore.delete_spill_file(path) is True
    assert ShmStore.delete_spill_file(path) is False


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_sweep_stale_removes_only_dead_owners():
    tag = uuid.uuid4().hex[:8]
    prefix = f"/dev/shm/ember-sweep{tag}-"
    alive_dir, dead_dir, reused_dir, no_owner_dir = (prefix + s for s in ("a", "b", "c", "d"))
    try:
        ShmStore(alive_dir).create_dir()
        os.makedirs(dead_dir)
        with open(os.path.join(dead_dir, OWNER_FILE), "w") as f:
            f.write(f"{_dead_pid()} 1.0\n")
        os.makedirs(reused_dir)  # our pid but another start time: a reused pid
        with open(os.path.join(reused_dir, OWNER_FILE), "w") as f:
            f.write(f"{os.getpid()} {psutil.Process().create_time() - 1000}\n")
        os.makedirs(no_owner_dir)
        removed = sweep_stale(prefix)
        assert sorted(removed) == [dead_dir, reused_dir]
        assert os.path.isdir(alive_dir) and os.path.isdir(no_owner_dir)
    finally:
        for d in (alive_dir, dead_dir, reused_dir, no_owner_dir):
            shutil.rmtree(d, ignore_errors=True)


def test_default_capacity_bytes():
    capacity = default_capacity_bytes()
    assert capacity > 0
    assert capacity <= max(int(psutil.virtual_memory().total * 0.3), 75 * 1024 * 1024) + 1
    assert capacity <= shutil.disk_usage("/dev/shm").free
