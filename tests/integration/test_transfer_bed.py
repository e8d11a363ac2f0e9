"""Object transfer between four real hosts (the multi-host bed): every byte of odd sizes
across chunk boundaries, many concurrent pulls of the same and of different objects, a
broadcast whose copies become sources, spilled objects served by the node that spilled
them, a destination store too small, and a holder killed mid-transfer (last: they kill hosts 3
and 2), of an object that can be rebuilt and of one that cannot.

Chunks are 256 KiB here (EMBER_TRANSFER_CHUNK_BYTES) so that objects of a few MiB cross
many chunk boundaries.
"""
from __future__ import annotations

import asyncio
import glob
import hashlib
import threading
import time

import numpy as np
import pytest

import ember
from bed.netbed import HostSpec, NetBed, bed_fixture
from ember.protocol import messages as m
from ember.shells.wire import rpc

pytestmark = pytest.mark.timeout(300)

MiB = 1024 * 1024
CHUNK = 256 * 1024
SMALL_STORE = 80 * MiB

bed = bed_fixture([HostSpec(num_cpus=2, object_store_memory=160 * MiB),
                   HostSpec(num_cpus=2, resources={"h1": 10}),
                   HostSpec(num_cpus=2, resources={"h2": 10}),
                   HostSpec(num_cpus=1, resources={"h3": 10}, object_store_memory=SMALL_STORE)],
                  env={"EMBER_TRANSFER_CHUNK_BYTES": str(CHUNK), "EMBER_HEARTBEAT_TIMEOUT_S": "3"})


@ember.remote(num_cpus=0)
def digest(boxed: list) -> list:
    return [hashlib.sha256(np.ascontiguousarray(v).data).hexdigest() for v in ember.get(boxed, timeout=120)]


@ember.remote(num_cpus=0)
def digest_arg(value: np.ndarray) -> str:  # the ref is a task argument: pulled before the task runs
    return hashlib.sha256(value.data).hexdigest()


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(a.data).hexdigest()


def _array(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _on(host: int):
    return {"resources": {f"h{host}": 1}}


def _daemon_request(bed: NetBed, host: int, msg):
    node = next(n for n in ember.nodes() if n["Alive"] and n["NodeManagerAddress"] == bed.hosts[host].ip)
    address = f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}"

    class _Quiet:
        def handle_message(self, *args):
            pass

        def connection_lost(self, conn):
            pass

    async def ask():
        conn = await rpc.connect(address, bed.token.encode(), _Quiet(), "driver", 10)
        try:
            return await conn.request(msg, 30)
        finally:
            conn.close()
    return asyncio.run(ask())


def test_every_byte_of_odd_sizes_crosses_hosts(bed: NetBed) -> None:
    sizes = [1, 200 * 1024, CHUNK - 100, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 20 * MiB + 3]
    sizes += [CHUNK * 4 - 256 + k for k in range(0, 512, 61)]  # land on and around chunk boundaries
    arrays = [_array(s, i) for i, s in enumerate(sizes)]
    refs = [ember.put(a) for a in arrays]
    assert ember.get(digest.options(**_on(1)).remote(refs), timeout=180) == [_sha(a) for a in arrays]
    assert ember.get(digest_arg.options(**_on(2)).remote(refs[-1]), timeout=120) == _sha(arrays[-1])


def test_many_concurrent_pulls_of_the_same_and_of_different_objects(bed: NetBed) -> None:
    arrays = [_array(3 * MiB + i * 4099, 100 + i) for i in range(6)]
    refs = [ember.put(a) for a in arrays]
    want = [_sha(a) for a in arrays]
    calls = []
    for i in range(8):
        order = list(np.random.default_rng(i).permutation(len(refs)))
        calls.append((order, digest.options(**_on(1 + i % 2)).remote([refs[j] for j in order])))
    for order, call in calls:
        assert ember.get(call, timeout=180) == [want[j] for j in order]


def test_broadcast_copies_become_sources(bed: NetBed) -> None:
    value = _array(24 * MiB + 17, 7)
    ref = ember.put(value)
    results = ember.get([digest.options(**_on(h)).remote([ref]) for h in (1, 2, 3)], timeout=180)
    assert results == [[_sha(value)]] * 3
    where = _daemon_request(bed, 0, m.LocateObject(ref.binary(), "10.255.255.255:1"))
    hosts = {s.rsplit(":", 1)[0] for s in where.sources}
    assert where.total_bytes > value.nbytes
    assert {bed.hosts[1].ip, bed.hosts[2].ip, bed.hosts[3].ip} & hosts, where.sources


def test_a_spilled_object_is_served_by_the_node_that_spilled_it(bed: NetBed) -> None:
    arrays = [_array(30 * MiB, 200 + i) for i in range(7)]
    refs = [ember.put(a) for a in arrays]  # 210 MiB into host 0's 160 MiB store: the first ones spill
    info = _daemon_request(bed, 0, m.GetMemoryInfo(True, 1.0, 1000))
    spilled = [oid for oid, state, _, _ in info.store_entries if state == "SPILLED"]
    index = next(i for i, r in enumerate(refs) if r.binary() in spilled)
    assert ember.get(digest.options(**_on(1)).remote([refs[index]]), timeout=120) == [_sha(arrays[index])]
    info = _daemon_request(bed, 0, m.GetMemoryInfo(True, 1.0, 1000))
    state = {oid: s for oid, s, _, _ in info.store_entries}[refs[index].binary()]
    assert state == "SPILLED"  # read from the spill file, not restored into host 0's store first
    del refs


def test_a_destination_store_too_small_gives_a_clear_error(bed: NetBed) -> None:
    ref = ember.put(_array(SMALL_STORE + 10 * MiB, 9))
    with pytest.raises(ember.exceptions.ObjectStoreFullError, match="larger than this node's object store") as info:
        ember.get(digest.options(**_on(3)).remote([ref]), timeout=120)
    # it cannot fit: its own error at once, not a lost object that recovery tries to rebuild
    assert not isinstance(info.value, ember.exceptions.ObjectLostError), info.value
    assert "GetTimeoutError" not in repr(info.value)
    assert not glob.glob(f"/dev/shm/ember-*-{bed.node_id(3)[:8]}/*.tmp")


@ember.remote(num_cpus=0, max_retries=0)
def make(size: int) -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, size, dtype=np.uint8)


@ember.remote(num_cpus=0, max_retries=1)
def make_again(size: int) -> np.ndarray:
    return np.random.default_rng(11).integers(0, 256, size, dtype=np.uint8)


@ember.remote(max_retries=1)
def make_noted(size: int, log_path: str) -> np.ndarray:
    with open(log_path, "a") as f:
        f.write(ember.get_runtime_context().get_node_id() + "\n")
    return np.random.default_rng(12).integers(0, 256, size, dtype=np.uint8)


def test_a_lost_holder_s_objects_are_rebuilt_or_read_from_a_surviving_copy(bed: NetBed, tmp_path) -> None:
    from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    host3 = NodeAffinitySchedulingStrategy(node_id=bed.node_id(3), soft=True)  # rebuilt elsewhere once it dies
    ref = make_again.options(scheduling_strategy=host3).remote(30 * MiB)
    log_path = str(tmp_path / "copied")
    copied = make_noted.options(scheduling_strategy=host3).remote(4 * MiB, log_path)
    ember.wait([ref, copied], num_returns=2, timeout=60)
    with open(log_path) as f:
        assert f.read().split() == [bed.node_id(3)]
    assert ember.get(digest.options(**_on(2)).remote([copied]), timeout=120) == [_sha(_array(4 * MiB, 12))]
    bed.set_link_rate(3, 40)  # 30 MiB at 40 Mbit/s: about 6 s
    reader = digest.options(**_on(1)).remote([ref])
    time.sleep(1.5)
    bed.kill_host(3)
    # killed mid-transfer, max_retries=1: rebuilt on another host, every byte right
    assert ember.get(reader, timeout=120) == [_sha(_array(30 * MiB, 11))]
    assert not glob.glob(f"/dev/shm/ember-*-{bed.node_id(1)[:8]}/*.tmp")
    # host 2 pulled a copy before host 3 died: it becomes the primary, read without running again
    assert ember.get(digest.options(**_on(1)).remote([copied]), timeout=120) == [_sha(_array(4 * MiB, 12))]
    assert ember.get(copied, timeout=60).nbytes == 4 * MiB
    with open(log_path) as f:
        assert len(f.read().split()) == 1


def test_a_holder_killed_mid_transfer_fails_cleanly(bed: NetBed) -> None:
    ref = make.options(**_on(2)).remote(30 * MiB)
    ember.wait([ref], timeout=60)
    bed.set_link_rate(2, 40)  # 30 MiB at 40 Mbit/s: about 6 s
    reader = digest.options(**_on(1)).remote([ref])
    time.sleep(1.5)
    bed.kill_host(2)
    # max_retries=0: it cannot be rebuilt, so the reader's get fails (as Ray) with
    # ObjectReconstructionFailedMaxAttemptsExceededError (an ObjectLostError), inside the
    # reader's RayTaskError, which is an instance of its cause
    with pytest.raises(ember.exceptions.ObjectReconstructionFailedMaxAttemptsExceededError) as info:
        ember.get(reader, timeout=120)
    assert isinstance(info.value, ember.exceptions.ObjectLostError)
    assert isinstance(info.value, ember.exceptions.RayTaskError)
    node1 = bed.node_id(1)[:8]
    assert not glob.glob(f"/dev/shm/ember-*-{node1}/*.tmp")  # the partial allocation was freed
    assert not glob.glob(f"/dev/shm/ember-*-{node1}/{ref.hex()}")  # nothing sealed half-written
