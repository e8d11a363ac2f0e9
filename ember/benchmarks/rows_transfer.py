"""Object transfer between two node daemons on this machine (issue 12): one large array
pulled by a task on a second node, and 1,000 objects of 1 MiB pulled by one task.

The rows add a second node daemon to the shared runtime's local cluster (ember only; on
another runtime they are skipped: ``benchmarks/transfer.py`` runs them on Ray between two
``ray start`` nodes).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from .footprint import MIB
from .registry import RowSkipped, row, scaled, scaled_bytes

_NODE_RESOURCE = "transfer_node_b"
_LARGE_BYTES = 256 * MIB


class _SecondNode:
    def __init__(self, rt: Any) -> None:
        if getattr(rt, "__name__", "") != "ember":
            raise RowSkipped("needs a second ember node daemon (benchmarks/transfer.py runs it on Ray)")
        from ember import lifecycle
        from ember.shells.shared import local_cluster
        from ember.shells.wire import session
        cluster = lifecycle._local_cluster
        if cluster is None:
            raise RowSkipped("needs a local cluster started by init")
        args = local_cluster.node_args(num_cpus=1, num_gpus=None, resources={_NODE_RESOURCE: 100},
                                       object_store_memory=None)
        self.proc, self.port = local_cluster.start_node(
            cluster.gcs_address, cluster.session_dir, session.token_path(cluster.session_dir),
            host="127.0.0.1", is_head=False, tied_to_parent=True, extra=args)
        deadline = time.monotonic() + 60
        while not any(n["Alive"] and n["NodeManagerPort"] == self.port for n in rt.nodes()):
            if time.monotonic() > deadline:
                raise RuntimeError("the second node daemon did not register within 60 s")
            time.sleep(0.1)
        time.sleep(1.0)  # the driver's node daemon learns of it with the next heartbeats

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _reader(rt: Any) -> Any:
    @rt.remote(num_cpus=0, resources={_NODE_RESOURCE: 1})
    def read(boxed: list) -> float:
        start = time.perf_counter()
        values = rt.get(boxed)
        took_s = time.perf_counter() - start
        assert all(int(v[-1]) == 7 for v in values)
        return took_s
    return read


@row("transfer_cross_node_get_gigabytes", "GB/s",
     note="a task on a second node daemon gets a 256 MiB array (median of 3 after a first)")
def transfer_cross_node_get(rt: Any, scale: float) -> float:
    import numpy as np
    node = _SecondNode(rt)
    try:
        read = _reader(rt)
        size = scaled_bytes(_LARGE_BYTES, scale)
        source = np.full(size, 7, dtype=np.uint8)
        times = []
        for _ in range(4):
            ref = rt.put(source)
            times.append(rt.get(read.remote([ref])))
            del ref
        return size / sorted(times[1:])[1] / 1e9
    finally:
        node.close()


@row("transfer_1000_1mib_objects_gigabytes", "GB/s",
     note="one task on a second node daemon gets 1,000 objects of 1 MiB")
def transfer_many_small(rt: Any, scale: float) -> float:
    import numpy as np
    node = _SecondNode(rt)
    try:
        read = _reader(rt)
        rt.get(read.remote([rt.put(np.full(8, 7, dtype=np.uint8))]))
        count = scaled(1000, scale)
        refs = [rt.put(np.full(MIB, 7, dtype=np.uint8)) for _ in range(count)]
        return count * MIB / rt.get(read.remote(refs)) / 1e9
    finally:
        node.close()
