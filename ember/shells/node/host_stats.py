"""What this node's machine and its worker processes use, for the dashboard (``GetHostStats``).

CPU percentages are psutil's: the use since the previous call for the same process (the
machine's, the daemon's, each worker's), so the first answer says 0.0 and the next ones
cover the time between two asks of the dashboard's sampler.  The ``psutil.Process`` objects
are kept between calls for that reason and forgotten when their worker is gone.
"""
from __future__ import annotations

import os

import psutil

from ember.protocol import messages as m

_procs: dict[int, psutil.Process] = {}


def _usage(pid: int) -> tuple[float, int]:
    proc = _procs.get(pid)
    try:
        if proc is None:
            proc = _procs[pid] = psutil.Process(pid)
        with proc.oneshot():
            return proc.cpu_percent(interval=None), proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        _procs.pop(pid, None)
        return 0.0, 0


def host_stats(node_id: bytes, worker_pids: dict[bytes, int], worker_jobs: dict[bytes, bytes]) -> m.HostStats:
    mem = psutil.virtual_memory()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = [0.0, 0.0, 0.0]
    workers = []
    for worker_id, pid in list(worker_pids.items()):
        cpu, rss = _usage(pid)
        workers.append([worker_id, pid, worker_jobs.get(worker_id, b""), cpu, rss])
    if worker_pids:  # asked with the workers: forget the processes of workers gone
        live = set(worker_pids.values()) | {os.getpid()}
        for pid in [p for p in _procs if p not in live]:
            del _procs[pid]
    cpu, rss = _usage(os.getpid())
    return m.HostStats(node_id, psutil.cpu_percent(interval=None), psutil.cpu_count() or 1, mem.total,
                       mem.total - mem.available, load, workers, [os.getpid(), cpu, rss])
