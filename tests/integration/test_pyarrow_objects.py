"""pyarrow tables travel out-of-band: a table got from the store is a view of shared memory."""
import numpy as np
import pytest

import ember

pa = pytest.importorskip("pyarrow")
pytestmark = pytest.mark.timeout(60)


def _in_shm_mapping(address: int) -> bool:
    for line in open("/proc/self/maps"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= address < hi:
            return "/dev/shm" in line
    return False


def test_table_is_zero_copy_in_driver_and_usable_in_tasks(cluster):
    table = pa.table({"a": np.arange(1_000_000), "b": np.arange(1_000_000) * 2.0})
    ref = ember.put(table)
    got = ember.get(ref)
    assert got.equals(table)
    assert _in_shm_mapping(got.column("a").chunk(0).buffers()[1].address)

    @ember.remote
    def total(t):
        import pyarrow.compute as pc
        return int(pc.sum(t.column("a")).as_py())
    assert ember.get(total.remote(ref)) == int(np.arange(1_000_000).sum())


def test_small_arrow_array_round_trips(cluster):
    arr = pa.array(["x", None, "z"])
    assert ember.get(ember.put(arr)).equals(arr)
