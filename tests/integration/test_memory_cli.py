"""``ember memory`` and the object-store lines of ``ember status``, against a real cluster.

The driver is this pytest process (module-scoped cluster, call sites recorded); the CLI runs
in subprocesses with the cluster token in EMBER_CLUSTER_TOKEN.  The pure joining and
formatting code is tested first, with hand-made node answers.
"""
import gc
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import ember
from ember.cli import memory as mem
from ember.cli.status import format_status
from ember.protocol import messages as m
from ember.shells.worker import core_worker as cwmod

from cli_harness import free_port

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
CAPACITY_BYTES = 100 * MiB
SMALL = b"s" * 100
LARGE_BYTES = 8 * MiB
_CLEARED_ENV = ("EMBER_ADDRESS", "RAY_ADDRESS", "EMBER_CLUSTER_TOKEN", "EMBER_RECORD_REF_CREATION_SITES")


# --- pure code: joining and formatting -------------------------------------------------------
def _node(n: int) -> m.NodeInfo:
    return m.NodeInfo(bytes([n]) * 16, f"10.0.0.{n}:7000", {"CPU": 1.0}, {"CPU": 1.0}, True, n == 1, "", {}, [],
                      0, 0)


def _answers():
    """Two nodes: the driver (pid 10) on node 1 owns an inline, a stored and a spilled object;
    a worker (pid 20) on node 2 borrows the stored one; node 2's store holds the spilled one."""
    inline, stored, spilled = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20
    driver = m.ProcessObjects(10, "10.0.0.1:9001", "driver", 3, [
        [inline, "10.0.0.1:9001", 120, "READY", True, "", "LOCAL_REFERENCE", "(put object) a.py:3"],
        [stored, "10.0.0.1:9001", 5_000_000, "READY", False, "10.0.0.1:7000", "USED_BY_PENDING_TASK",
         "(put object) a.py:4"],
        [spilled, "10.0.0.1:9001", 7_000_000, "READY", False, "10.0.0.2:7000", "LOCAL_REFERENCE", "(disabled)"],
    ])
    worker = m.ProcessObjects(20, "10.0.0.2:9002", "worker", 5, [
        [stored, "10.0.0.1:9001", 0, "", False, "", "LOCAL_REFERENCE", ""],
    ])
    info1 = m.NodeMemoryInfo(bytes([1]) * 16, "10.0.0.1:7000", 5_000_000, 100_000_000, 1, 0, 0,
                             [[stored, "SEALED", 5_000_000, True]], [driver], [])
    info2 = m.NodeMemoryInfo(bytes([2]) * 16, "10.0.0.2:7000", 0, 100_000_000, 1, 7_000_000, 1,
                             [[spilled, "SPILLED", 7_000_000, True]], [worker],
                             [[30, "10.0.0.2:9003", "worker", "no answer within 1s"]])
    return [(_node(1), info1), (_node(2), info2), (_node(3), "unreachable (refused)")]


def test_report_joins_owner_rows_into_borrower_rows_and_store_states():
    report = mem.build_report(_answers())
    rows = {(r.pid, r.object_id[:2]): r for r in report.rows}
    assert rows[(10, "01")].location == "INLINE" and rows[(10, "01")].store_node == ""
    assert rows[(10, "02")].location == "STORE" and rows[(10, "02")].store_node == "10.0.0.1:7000"
    assert rows[(10, "03")].location == "SPILLED" and rows[(10, "03")].call_site == "(disabled)"
    borrowed = rows[(20, "02")]
    assert (borrowed.size_bytes, borrowed.location, borrowed.owner_pid) == (5_000_000, "STORE", 10)
    assert borrowed.call_site == "(put object) a.py:4" and borrowed.kind == "worker"
    assert report.silent_nodes == [("10.0.0.3:7000", "unreachable (refused)")]
    assert report.silent_processes == [("10.0.0.2:7000", 30, "worker", "10.0.0.2:9003", "no answer within 1s")]
    assert report.cut_processes == [(20, 1, 5)]


def test_format_groups_sorts_and_converts_units():
    report = mem.build_report(_answers())
    text = mem.format_objects(report, units="MB", now_s=0.0)
    assert "--- Summary for node address: 10.0.0.1:7000 ---" in text
    assert "5.00 MB" in text and "7.00 MB" in text
    assert "Process 30 (worker 10.0.0.2:9003, node 10.0.0.2:7000) did not answer: no answer within 1s" in text
    assert "Node 10.0.0.3:7000 did not answer" in text
    assert "Note: process 20 has 5 objects; its 1 largest are listed." in text
    by_site = mem.format_objects(report, group_by="STACK_TRACE", no_format=True)
    assert "--- Object references for call site: (put object) a.py:4 ---" in by_site
    sizes = [r.size_bytes for _, rows in mem.group_rows(report.rows, "NODE_ADDRESS", "OBJECT_SIZE") for r in rows]
    assert sizes[:3] == [7_000_000, 5_000_000, 120]
    pids = [r.pid for _, rows in mem.group_rows(report.rows, "STACK_TRACE", "PID") for r in rows]
    assert len(pids) == 4
    assert mem.format_size(1_500, "KB") == "1.50 KB" and mem.format_size(77, "B") == "77 B"


def test_stats_sum_nodes_and_name_silent_ones():
    text = mem.format_stats(mem.build_report(_answers()))
    assert "10.0.0.1:7000 (node_" in text and "(5.0% full), 1 objects" in text
    assert "10.0.0.3:7000: did not answer (unreachable (refused))" in text
    assert "Store memory usage 4.77MiB of 190.73MiB (2.5% full), 2 objects" in text
    assert "Spilled 6.68MiB, 1 objects on disk only" in text


def test_status_formats_store_object_counts_and_spilled_bytes():
    node = _node(1)
    stats = {node.node_id: m.NodeStatsReply(node.node_id, 2, 0, 10 * MiB, 4, 100 * MiB, 3 * MiB, 1)}
    text = format_status([node], 0.0, "10.0.0.1:6379", stats)
    assert " 4 objects in object stores; 3.00MiB spilled (1 objects on disk only)" in text
    assert "objects in object stores" not in format_status([node], 0.0)


# --- real cluster ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def memory_cluster():
    if ember.is_initialized():
        ember.shutdown()
    old = os.environ.get("EMBER_RECORD_REF_CREATION_SITES")
    os.environ["EMBER_RECORD_REF_CREATION_SITES"] = "1"
    try:
        ember.init(num_cpus=2, object_store_memory=CAPACITY_BYTES)
    finally:
        if old is None:
            del os.environ["EMBER_RECORD_REF_CREATION_SITES"]
        else:
            os.environ["EMBER_RECORD_REF_CREATION_SITES"] = old
    yield cwmod.get_core_worker()
    ember.shutdown()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
    env.update(extra)
    return env


def _ember(*args, env=None, timeout_s=60):
    return subprocess.run([sys.executable, "-m", "ember.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s)


def _memory(cw, *args):
    done = _ember("memory", "--address", cw.gcs_address, *args, env=_env(EMBER_CLUSTER_TOKEN=cw.token.decode()))
    assert done.returncode == 0, f"ember memory failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _rows(text):
    """--no-format rows: PID, Type, Object ID, Size, Owner, Location, Node, Reference Type, Call Site."""
    out = []
    for line in text.splitlines():
        cells = line.split("\t")
        if len(cells) == 9 and cells[0].isdigit():
            out.append(cells)
    return out


def _size_bytes(cell):
    number, unit = cell.split()
    return float(number) * mem.UNITS[unit]


def _put_line(marker):
    """The line of this file that holds ``marker`` (to check recorded call sites)."""
    with open(__file__) as f:
        for i, line in enumerate(f, 1):
            if marker in line and "_put_line(" not in line:
                return i
    raise AssertionError(marker)


@ember.remote
def _hold(refs, started_path, release_path):
    """Hold a borrowed ref (inside a list, so not resolved) until told to finish."""
    with open(started_path, "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(release_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(refs)


def _wait_for(path, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.05)


def test_lists_small_and_large_objects_with_sizes_locations_and_holders(memory_cluster, tmp_path):
    cw = memory_cluster
    small = ember.put(SMALL)  # marker: small put
    large = ember.put(np.zeros(LARGE_BYTES, dtype=np.uint8))  # marker: large put
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    task = _hold.remote([large], started, release)
    try:
        _wait_for(started)
        rows = _rows(_memory(cw, "--no-format"))
    finally:
        open(release, "w").close()
    assert ember.get(task, timeout=30) == 1
    by_key = {(r[0], r[2]): r for r in rows}
    me = str(os.getpid())
    small_row, large_row = by_key[(me, small.hex())], by_key[(me, large.hex())]
    assert small_row[1] == "DRIVER" and small_row[5] == "INLINE" and small_row[6] == "-"
    assert 100 <= _size_bytes(small_row[3]) < 1000
    assert large_row[5] == "STORE" and large_row[6] == cw.node_address
    assert _size_bytes(large_row[3]) >= LARGE_BYTES
    assert small_row[4] == large_row[4] == f"{os.getpid()} ({cw.address})"
    assert small_row[7] == "LOCAL_REFERENCE"
    assert large_row[7] in ("LOCAL_REFERENCE", "USED_BY_PENDING_TASK")
    assert small_row[8] == f"(put object) {__file__}:{_put_line('marker: small put')}"
    assert large_row[8] == f"(put object) {__file__}:{_put_line('marker: large put')}"
    # the task's worker borrows the large object: its row names the driver as owner
    borrowed = [r for r in rows if r[2] == large.hex() and r[1] == "WORKER"]
    assert len(borrowed) == 1 and borrowed[0][0] != me
    assert borrowed[0][4] == large_row[4] and borrowed[0][5] == "STORE" and borrowed[0][7] == "LOCAL_REFERENCE"
    # the task's own return is listed while pending or after, with its call site
    task_row = by_key[(me, task.hex())]
    assert task_row[8].startswith("(task call) ") and task_row[5] in ("PENDING", "INLINE")
    del small, large


def test_reference_types_pinned_and_captured(memory_cluster):
    cw = memory_cluster
    large = ember.put(np.arange(LARGE_BYTES // 8, dtype=np.int64))
    value = ember.get(large)  # a zero-copy view of the store: the object is pinned in memory
    inner = ember.put(b"i" * 10)
    inner_id = inner.hex()
    outer = ember.put([inner])
    del inner  # now only held inside outer's value
    gc.collect()
    types = {r[2]: r[7] for r in _rows(_memory(cw, "--no-format")) if r[0] == str(os.getpid())}
    assert types[large.hex()] == "PINNED_IN_MEMORY"
    assert types[inner_id] == "CAPTURED_IN_OBJECT"
    assert types[outer.hex()] == "LOCAL_REFERENCE"
    assert value[-1] == LARGE_BYTES // 8 - 1
    del large, value, outer


def test_stats_only_shows_the_store_usage(memory_cluster):
    cw = memory_cluster
    ref = ember.put(np.ones(LARGE_BYTES, dtype=np.uint8))
    text = _memory(cw, "--stats-only")
    assert "Object references" not in text
    line = next(ln for ln in text.splitlines() if ln.startswith(cw.node_address))
    assert f"node_{cw.node_id.hex()}" in line and "of 100.00MiB" in line
    used_mib = float(line.split(": ", 1)[1].split("MiB used")[0])
    assert used_mib >= LARGE_BYTES / MiB
    assert "Store memory usage" in text and "Spilled " in text
    del ref


def test_group_by_stack_trace_sort_by_and_units(memory_cluster):
    cw = memory_cluster
    refs = [ember.put(np.zeros(n * MiB, dtype=np.uint8)) for n in (1, 3, 2)]  # marker: sized puts
    text = _memory(cw, "--group-by", "STACK_TRACE", "--units", "MB")
    site = f"(put object) {__file__}:{_put_line('marker: sized puts')}"
    assert f"--- Summary for call site: {site} ---" in text
    group = text.split(f"--- Object references for call site: {site} ---")[1].split("\n\n")[0]
    sizes = [float(ln.split(" MB")[0].split()[-1]) for ln in group.splitlines()[1:] if " MB" in ln]
    assert len(sizes) == 3 and sizes == sorted(sizes, reverse=True) and sizes[0] >= 3 * MiB / 1e6
    by_pid = _rows(_memory(cw, "--no-format", "--sort-by", "PID", "--group-by", "NODE_ADDRESS"))
    pids = [int(r[0]) for r in by_pid]
    assert pids == sorted(pids) and str(os.getpid()) in {r[0] for r in by_pid}
    by_type = _rows(_memory(cw, "--no-format", "--sort-by", "REFERENCE_TYPE"))
    types = [r[7] for r in by_type]
    assert types == sorted(types)
    limited = _rows(_memory(cw, "--no-format", "--num-entries", "2"))
    assert len(limited) == 2
    cw.call_sites, saved = None, cw.call_sites  # as if EMBER_RECORD_REF_CREATION_SITES were unset here
    try:
        disabled = _memory(cw, "--group-by", "STACK_TRACE")
    finally:
        cw.call_sites = saved
    assert "--- Summary for call site: (disabled) ---" in disabled and site not in disabled
    del refs


def test_a_process_that_does_not_answer_is_listed_not_waited_for(memory_cluster):
    cw = memory_cluster

    @ember.remote
    class Pid:
        def pid(self):
            return os.getpid()

    actor = Pid.remote()
    pid = ember.get(actor.pid.remote(), timeout=30)
    kept = ember.put(b"k" * 10)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        text = _memory(cw, "--process-timeout", "1")
        took_s = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert f"Process {pid} (worker " in text and "did not answer: no answer within 1s" in text
    assert took_s < 30
    assert kept.hex() in text  # the others are listed
    assert ember.get(actor.pid.remote(), timeout=30) == pid
    ember.kill(actor)
    del kept


def _wait_store_empty(cw, timeout_s=20):
    """Dropped refs are freed by their owner within ~100 ms: wait so that only new puts count."""
    async def used_bytes():
        return (await cw.raylet.request(m.NodeStats(), timeout_s=10)).store_used_bytes

    deadline = time.monotonic() + timeout_s
    while cw.run_sync(used_bytes()) > 0:
        assert time.monotonic() < deadline, "the store did not drain"
        gc.collect()
        time.sleep(0.1)


def test_spilled_objects_are_listed_as_spilled(memory_cluster):
    cw = memory_cluster
    _wait_store_empty(cw)
    refs = [ember.put(np.full(30 * MiB, i, dtype=np.uint8)) for i in range(4)]  # 120 MiB > 100 MiB
    rows = _rows(_memory(cw, "--no-format"))
    locations = {r[2]: r[5] for r in rows if r[0] == str(os.getpid())}
    assert locations[refs[0].hex()] == "SPILLED"
    assert locations[refs[3].hex()] == "STORE"
    stats = _memory(cw, "--stats-only")
    line = next(ln for ln in stats.splitlines() if ln.startswith(cw.node_address))
    assert "spilled 0B" not in line
    del refs
    gc.collect()


def test_status_shows_object_counts(memory_cluster):
    cw = memory_cluster
    ref = ember.put(np.zeros(2 * MiB, dtype=np.uint8))
    done = _ember("status", "--address", cw.gcs_address, env=_env(EMBER_CLUSTER_TOKEN=cw.token.decode()))
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if "objects in object stores" in ln)
    assert int(line.split()[0]) >= 1 and "spilled" in line
    del ref


def test_clear_error_without_a_cluster(tmp_path):
    env = _env(EMBER_TMPDIR=str(tmp_path))
    done = _ember("memory", env=env)
    assert done.returncode != 0
    assert "no ember cluster is running" in done.stderr and "ember start --head" in done.stderr
    done = _ember("memory", "--address", f"127.0.0.1:{free_port()}", env=dict(env, EMBER_CLUSTER_TOKEN="x"))
    assert done.returncode != 0 and "could not reach the ember control store" in done.stderr
