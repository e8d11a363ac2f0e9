"""Object-store bandwidth next to this machine's memcpy, measured in one run.

Rows (each as GiB/s and as a ratio to the memcpy of the same run):

- ``memcpy``: numpy copy of the array into an already-touched buffer (the physical limit);
- ``shm first touch``: the same copy into a freshly mapped /dev/shm file (page faults
  included): what a store that maps new pages for every object pays;
- ``put`` / ``get`` of a numpy array of 100 MiB and 1 GiB (``first put`` is the first
  put of the run, before the store had any memory to recycle); ``get`` is zero copy, so
  its time is also printed in microseconds;
- ``put that spills`` (a put into a full store: one object of the same size goes to disk
  first) and ``get of a spilled object`` (its spill file mapped, every page read), in a
  cluster with a small ``object_store_memory``;
- ``get N x S back through a store``: four times the store's capacity put, then one
  ``get`` of the whole list and every page of every value read (issue 20's "8 GiB
  through a 4 GiB store", scaled to the small size);
- ``cross-node get``: a task pinned to a second node daemon on this machine reads an
  object the driver put on the head node (the second node pulls it in chunks).

The machine is shared and noisy: every row repeats (``--repeat``) and reports the
median and the best.  Cluster processes are started by ``ember.init`` and
``local_cluster.start_node`` and stopped before the next part starts.

    python benchmarks/object_store.py            # 100 MiB and 1 GiB, 7 repeats
    python benchmarks/object_store.py --quick    # 16 MiB and 128 MiB, 3 repeats
    python benchmarks/object_store.py --json out.json
"""
from __future__ import annotations

import argparse
import gc
import json
import mmap
import os
import signal
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

import ember  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
WAIT_MAX_S = 60.0

Row = dict[str, Any]


# --- timing -----------------------------------------------------------------------------
def _row(name: str, size_bytes: int, times_s: list[float]) -> Row:
    median_s = statistics.median(times_s)
    return {"row": name, "size_bytes": size_bytes, "runs": len(times_s),
            "median_gib_s": size_bytes / GiB / median_s, "best_gib_s": size_bytes / GiB / min(times_s),
            "median_us": median_s * 1e6, "best_us": min(times_s) * 1e6}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _wait_for(cond: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_MAX_S
    while time.monotonic() < deadline:
        gc.collect()
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


# --- the machine ------------------------------------------------------------------------
def memcpy_row(source: np.ndarray, repeat: int) -> Row:
    target = np.empty_like(source)
    np.copyto(target, source)  # touch every page first
    return _row("memcpy (numpy copy into a warm buffer)", source.nbytes,
                [_timed(lambda: np.copyto(target, source)) for _ in range(repeat)])


def first_touch_row(source: np.ndarray, repeat: int) -> Row:
    times = []
    for _ in range(repeat):
        fd, path = tempfile.mkstemp(prefix="ember-bench-", dir="/dev/shm")
        try:
            os.ftruncate(fd, source.nbytes)
            with mmap.mmap(fd, source.nbytes) as mapped:
                view = np.frombuffer(mapped, dtype=source.dtype)
                times.append(_timed(lambda: np.copyto(view, source)))
                del view
        finally:
            os.close(fd)
            os.unlink(path)
    return _row("shm first touch (copy into fresh /dev/shm pages)", source.nbytes, times)


# --- one node ---------------------------------------------------------------------------
def _store_used_bytes() -> int:
    from ember.protocol import messages as m
    from ember.shells.worker.core_worker import get_core_worker

    cw = get_core_worker()

    async def ask() -> Any:
        assert cw.raylet is not None
        return await cw.raylet.request(m.NodeStats(), timeout_s=10)

    return int(cw.run_sync(ask()).store_used_bytes)


def put_get_rows(source: np.ndarray, repeat: int) -> list[Row]:
    """put, get (zero copy), drop; the first put is reported apart."""
    size = source.nbytes
    label = _size_label(size)
    put_s, get_s = [], []
    first_put_s = 0.0
    for i in range(repeat + 1):
        start = time.perf_counter()
        ref = ember.put(source)
        took_s = time.perf_counter() - start
        start = time.perf_counter()
        value = ember.get(ref)
        got_s = time.perf_counter() - start
        assert value.shape == source.shape and value[-1] == source[-1]
        if i == 0:
            first_put_s = took_s
        else:
            put_s.append(took_s)
            get_s.append(got_s)
        del value, ref
        _wait_for(lambda: _store_used_bytes() == 0, "the store to free the object")
    return [_row(f"first put {label} (no recycled memory yet)", size, [first_put_s]),
            _row(f"put {label}", size, put_s),
            _row(f"get {label} (zero copy)", size, get_s)]


# --- spilling ---------------------------------------------------------------------------
def spill_rows(source: np.ndarray, repeat: int) -> list[Row]:
    """A store that holds a few objects: one more put spills the oldest; getting that one
    back maps its spill file, and every page of the value is read."""
    size = source.nbytes
    label = _size_label(size)
    object_bytes = size + 64 * 1024  # the encoding adds a header
    capacity = max(3 * object_bytes + MiB, 80 * MiB)  # ember.init refuses less than 75 MiB
    fits = capacity // object_bytes
    ember.init(address="local", num_cpus=1, object_store_memory=capacity, include_dashboard=False)
    spill_s, restore_s = [], []
    try:
        for _ in range(repeat):
            refs = [ember.put(source) for _ in range(fits)]
            start = time.perf_counter()
            extra = ember.put(source)  # spills refs[0]
            spill_s.append(time.perf_counter() - start)
            del extra
            _wait_for(lambda: _store_used_bytes() <= (fits - 1) * object_bytes, "the extra object to be freed")
            start = time.perf_counter()
            value = ember.get(refs[0])  # its spill file, mapped (no copy into the store)
            int(value[:: 4096 // value.itemsize].sum())  # every page read
            restore_s.append(time.perf_counter() - start)
            assert value[-1] == source[-1]
            del value, refs
            _wait_for(lambda: _store_used_bytes() == 0, "the store to free every object")
    finally:
        ember.shutdown()
    return [_row(f"put {label} that spills {label} first", size, spill_s),
            _row(f"get {label} of a spilled object (every page read)", size, restore_s)]


def spill_through_rows(source: np.ndarray, repeat: int) -> list[Row]:
    """Four times the store's capacity put, then all got back in one ``get`` of the list
    and every page of every value read (issue 20's "8 GiB through a 4 GiB store", scaled)."""
    size = source.nbytes
    label = _size_label(size)
    object_bytes = size + 64 * 1024
    capacity = max(4 * object_bytes + MiB, 80 * MiB)
    count = 4 * (capacity // object_bytes)
    ember.init(num_cpus=1, object_store_memory=capacity, include_dashboard=False)
    times_s = []
    try:
        for _ in range(repeat):
            refs = [ember.put(source) for _ in range(count)]
            start = time.perf_counter()
            values = ember.get(refs)
            pages = sum(int(v[:: 4096 // v.itemsize].sum() != 0) for v in values)  # one read per page
            times_s.append(time.perf_counter() - start)
            assert pages == count
            del values, refs
            _wait_for(lambda: _store_used_bytes() == 0, "the store to free every object")
    finally:
        ember.shutdown()
    row = _row(f"get {count} x {label} back through a store of {capacity // MiB} MiB (one get, "
               f"every page read)", size * count, times_s)
    return [row]


# --- two nodes --------------------------------------------------------------------------
def cross_node_rows(source: np.ndarray, repeat: int) -> list[Row]:
    from ember import lifecycle
    from ember.shells.shared import local_cluster
    from ember.shells.wire import session
    from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    size = source.nbytes
    store_bytes = 3 * size + 64 * MiB
    ember.init(address="local", num_cpus=1, object_store_memory=store_bytes, include_dashboard=False)
    proc: Optional[Any] = None
    try:
        cluster = lifecycle._local_cluster
        args = local_cluster.node_args(num_cpus=1, num_gpus=None, resources={"node_b": 1},
                                       object_store_memory=store_bytes)
        proc, port = local_cluster.start_node(cluster.gcs_address, cluster.session_dir,
                                              session.token_path(cluster.session_dir), host="127.0.0.1",
                                              is_head=False, tied_to_parent=True, extra=args)
        node_id = _wait_for(lambda: next((n["NodeID"] for n in ember.nodes()
                                          if n["NodeManagerPort"] == port and n["Alive"]), None),
                            "the second node to register")

        @ember.remote(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        def read(boxed: list) -> tuple[float, int]:
            start = time.perf_counter()
            value = ember.get(boxed[0])
            took_s = time.perf_counter() - start
            return took_s, int(value[-1])

        ember.get(read.remote([ember.put(np.zeros(4, dtype=np.uint8))]))  # the worker is up
        times = []
        for _ in range(repeat):
            ref = ember.put(source)
            took_s, last = ember.get(read.remote([ref]))
            assert last == int(source[-1])
            times.append(took_s)
            del ref
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        ember.shutdown()
    return [_row(f"cross-node get {_size_label(size)} (pull between two node daemons)", size, times)]


# --- driver -----------------------------------------------------------------------------
def _size_label(size_bytes: int) -> str:
    return f"{size_bytes // GiB} GiB" if size_bytes >= GiB else f"{size_bytes // MiB} MiB"


def _array(size_bytes: int) -> np.ndarray:
    source = np.arange(size_bytes // 8, dtype=np.int64)
    return source


def run(small: int, large: int, repeat: int) -> list[Row]:
    rows: list[Row] = []
    big = _array(large)
    rows.append(memcpy_row(big, max(repeat, 5)))
    rows.append(first_touch_row(big, repeat))
    ember.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        for size in (small, large):
            rows.extend(put_get_rows(big[: size // 8], repeat))
    finally:
        ember.shutdown()
    rows.extend(spill_rows(big[: small // 8], repeat))
    rows.extend(spill_through_rows(big[: small // 8], repeat))
    rows.extend(cross_node_rows(big, repeat))
    memcpy = rows[0]["median_gib_s"]
    for row in rows:
        row["ratio_to_memcpy"] = row["median_gib_s"] / memcpy
    return rows


def format_table(rows: list[Row]) -> str:
    lines = ["| row | median GiB/s | best GiB/s | median time | median / memcpy |",
             "|---|---|---|---|---|"]
    for row in rows:
        us = row["median_us"]
        when = f"{us:,.0f} us" if us < 10_000 else f"{us / 1000:,.1f} ms"
        lines.append(f"| {row['row']} | {row['median_gib_s']:,.2f} | {row['best_gib_s']:,.2f} | {when} "
                     f"| {row['ratio_to_memcpy']:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB and 128 MiB arrays, 3 repeats")
    parser.add_argument("--repeat", type=int, default=0, help="runs per row (default 7, --quick 3)")
    parser.add_argument("--sizes-mib", default="", help="the two array sizes, e.g. 4,8 (overrides --quick)")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 7)
    small, large = (16 * MiB, 128 * MiB) if args.quick else (100 * MiB, GiB)
    if args.sizes_mib:
        small, large = (int(x) * MiB for x in args.sizes_mib.split(","))
    load = os.getloadavg()[0]
    rows = run(small, large, repeat)
    print(f"# object store, {repeat} runs per row, load average at start {load:.1f} "
          f"({os.cpu_count()} cores, shared)")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"repeat": repeat, "quick": args.quick, "load_average": load, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
