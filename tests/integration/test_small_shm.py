"""A shared-memory filesystem smaller than the configured store (issue 8): the capacity
is capped at start with a warning; a write that runs out of room (ENOSPC) spills others
or raises ObjectStoreFullError, never a raw OSError, and gives its reservation back.

Needs root to mount a 64 MiB tmpfs (skipped otherwise); the store is pointed at it with
EMBER_SHM_DIR.
"""
from __future__ import annotations

import gc
import os
import subprocess
import tempfile

import numpy as np
import pytest

import ember
from ember import exceptions as exc
from store_probe import node_stats as _stats
from store_probe import wait_for

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
TMPFS_BYTES = 64 * MiB
ASKED_BYTES = 200 * MiB
OBJECT_BYTES = 10 * MiB


@pytest.fixture(scope="module")
def small_shm():
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    root = tempfile.mkdtemp(prefix="ember-small-shm-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", root],
                          capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(root)
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    old = os.environ.get("EMBER_SHM_DIR")
    os.environ["EMBER_SHM_DIR"] = root
    try:
        if ember.is_initialized():
            ember.shutdown()
        ctx = ember.init(address="local", num_cpus=1, object_store_memory=ASKED_BYTES)
        yield root, ctx
    finally:
        if ember.is_initialized():
            ember.shutdown()
        if old is None:
            os.environ.pop("EMBER_SHM_DIR", None)
        else:
            os.environ["EMBER_SHM_DIR"] = old
        subprocess.run(["umount", "-l", root], check=False)
        os.rmdir(root)


def _array(i, nbytes=OBJECT_BYTES):
    return np.full(nbytes // 8, i, dtype=np.int64)


def _wait_drained():
    def drained():
        gc.collect()
        s = _stats()
        return s.store_used_bytes == 0 and s.store_objects == 0
    wait_for(drained, what="the store to free dropped objects")


def _fill(root, nbytes):
    """Someone else's file on the tmpfs, with real pages."""
    path = os.path.join(root, "filler")
    with open(path, "wb") as f:
        f.write(b"\x01" * nbytes)
    return path


def test_capacity_is_capped_at_the_tmpfs_with_a_warning(small_shm):
    root, ctx = small_shm
    capacity = _stats().store_capacity_bytes
    assert 0 < capacity < TMPFS_BYTES
    with open(os.path.join(ctx["session_dir"], "logs", "node_daemon_head.err")) as f:
        log = f.read()
    assert f"asked for {ASKED_BYTES} bytes but {root} has only" in log


def test_more_than_the_tmpfs_spills_and_reads_back(small_shm):
    refs = [ember.put(_array(i)) for i in range(8)]  # 80 MiB through a ~60 MiB store
    assert _stats().store_spilled_objects >= 2
    assert [int(ember.get(r)[-1]) for r in refs] == list(range(8))
    del refs
    _wait_drained()


def test_getting_back_more_than_the_store_holds_stays_within_its_capacity(small_shm):
    """One get of a list of spilled objects (issue 20): the values are mapped from their
    spill files, so the tmpfs never holds more than the store's capacity (each used to be
    restored into shm and stay mapped there: here that ran out of tmpfs)."""
    root, _ = small_shm
    capacity = _stats().store_capacity_bytes
    refs = [ember.put(_array(i)) for i in range(10)]  # 100 MiB through a ~60 MiB store
    values = ember.get(refs)
    assert [int(v[:: 4096 // 8].sum() // (OBJECT_BYTES // 4096)) for v in values] == list(range(10))
    st = os.statvfs(root)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert used <= capacity, f"{used} bytes of the tmpfs in use, capacity {capacity}"
    del values, refs
    _wait_drained()


def test_out_of_space_write_spills_others_instead_of_failing(small_shm):
    root, _ = small_shm
    capacity = _stats().store_capacity_bytes
    filler = _fill(root, 28 * MiB)  # the store still thinks it has ~60 MiB
    try:
        refs = [ember.put(_array(i)) for i in range(5)]  # 50 MiB: the tmpfs cannot hold them
        s = _stats()
        assert s.store_capacity_bytes < capacity  # lowered to what it held at the ENOSPC
        assert s.store_spilled_objects >= 1
        assert [int(ember.get(r)[0]) for r in refs] == list(range(5))
        del refs
        _wait_drained()
    finally:
        os.unlink(filler)


def test_out_of_space_with_nothing_to_spill_is_store_full_and_gives_the_bytes_back(small_shm):
    """Others filled the tmpfs: even after trimming its pooled files the store has no room
    for the object, so the retry after the ENOSPC is refused."""
    root, _ = small_shm
    store_dir = _store_dir(root)
    pooled = sum(os.stat(os.path.join(store_dir, n)).st_size for n in os.listdir(store_dir)
                 if n.startswith("pool."))
    st = os.statvfs(root)
    filler = _fill(root, st.f_bavail * st.f_frsize - 1 * MiB)
    nbytes = min(pooled + 6 * MiB, _stats().store_capacity_bytes - 64 * 1024)
    assert nbytes > pooled + 2 * MiB, "the store's capacity leaves no room for this test"
    try:
        with pytest.raises(exc.ObjectStoreFullError) as info:
            ember.put(_array(1, nbytes))
        assert not isinstance(info.value, OSError)
        _wait_drained()  # the failed put's reservation is not counted as used
        assert [n for n in os.listdir(store_dir) if n.endswith(".tmp")] == []
    finally:
        os.unlink(filler)
    ref = ember.put(_array(7, 2 * MiB))  # room came back: the capacity grows again
    assert int(ember.get(ref)[3]) == 7
    assert _stats().store_capacity_bytes > 2 * MiB


def _store_dir(root):
    (name,) = [n for n in os.listdir(root) if n.startswith("ember-")]
    return os.path.join(root, name)
