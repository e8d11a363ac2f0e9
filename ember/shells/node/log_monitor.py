"""Streams each worker's stdout/stderr log files to the drivers of its job.

The node daemon polls the files of its live workers and publishes new complete lines
through the control store (channel "logs", key job id); drivers subscribed to their job
print them with a ``(pid=..., node=...)`` prefix.

A worker whose files grew is polled again after ``log_poll_interval_s``; each poll that finds
nothing new doubles its interval, up to ``log_poll_idle_max_s``.  Polling every file of every
worker at the base rate cost the node daemon about a quarter of its time with 400-700 idle
actors (two stat calls per worker every 100 ms), which slowed actor creation as actors
accumulated; idle workers now cost a few stat calls a second in all.
"""
from __future__ import annotations

import asyncio
import heapq
import os
from dataclasses import dataclass, field
from typing import Any

from ember.config import CONFIG
from ember.protocol import messages as m


@dataclass
class _Tail:
    job_id: bytes
    base: str
    pid: int = 0
    offsets: list = field(default_factory=lambda: [0, 0])
    partial: list = field(default_factory=lambda: [b"", b""])
    is_alive: bool = True
    interval_s: float = 0.0      # the current poll interval (0: the base one)
    next_poll_s: float = 0.0     # loop time of the next poll
    due_seq: int = 0             # the tail's live entry in the monitor's heap (older ones are stale)


class LogMonitor:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.tails: dict[bytes, _Tail] = {}
        self._due: list[tuple[float, int, bytes]] = []   # (poll at, seq, worker id), a heap
        self._seq = 0

    def add(self, worker_id: bytes, job_id: bytes, base: str) -> None:
        t = self.tails[worker_id] = _Tail(job_id, base)
        self._schedule(worker_id, t, 0.0)

    def _schedule(self, worker_id: bytes, t: _Tail, at_s: float) -> None:
        self._seq += 1
        t.due_seq, t.next_poll_s = self._seq, at_s
        heapq.heappush(self._due, (at_s, self._seq, worker_id))

    def set_pid(self, worker_id: bytes, pid: int) -> None:
        t = self.tails.get(worker_id)
        if t is not None:
            t.pid = pid

    def worker_exited(self, worker_id: bytes) -> None:
        t = self.tails.get(worker_id)
        if t is not None:
            t.is_alive = False
            self._schedule(worker_id, t, 0.0)   # its last lines go out at the next poll

    def job_finished(self, job_id: bytes) -> None:
        for worker_id, t in self.tails.items():
            if t.job_id == job_id:
                t.is_alive = False
                self._schedule(worker_id, t, 0.0)

    def _poll_one(self, worker_id: bytes, t: _Tail, final: bool) -> bool:
        """Publish what the worker's files gained; whether they gained anything."""
        grew = False
        for idx, suffix in enumerate((".out", ".err")):
            path = t.base + suffix
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            if size <= t.offsets[idx]:
                continue
            with open(path, "rb") as f:
                f.seek(t.offsets[idx])
                data = f.read(min(size - t.offsets[idx], 1 << 20))
            t.offsets[idx] += len(data)
            grew = True
            data = t.partial[idx] + data
            lines = data.split(b"\n")
            t.partial[idx] = lines.pop()
            if final and t.partial[idx]:
                lines.append(t.partial[idx])
                t.partial[idx] = b""
            if lines:
                self._publish(t, idx == 1, [ln.decode(errors="replace") for ln in lines])
        return grew

    def _publish(self, t: _Tail, is_err: bool, lines: list[str]) -> None:
        gcs = self.daemon.gcs
        if gcs is None or gcs.closed:
            return
        gcs.send(m.LogLines(t.job_id, t.pid, self.daemon.node_id, is_err, lines))

    def poll(self, now_s: float) -> None:
        """Poll the workers whose turn has come by ``now_s`` (dead ones for the last time)."""
        base_s, idle_max_s = CONFIG.log_poll_interval_s, CONFIG.log_poll_idle_max_s
        due = self._due
        while due and due[0][0] <= now_s:
            _, seq, worker_id = heapq.heappop(due)
            t = self.tails.get(worker_id)
            if t is None or t.due_seq != seq:
                continue   # a stale entry: the tail was rescheduled or is gone
            grew = self._poll_one(worker_id, t, final=not t.is_alive)
            if not t.is_alive:
                del self.tails[worker_id]
                continue
            t.interval_s = base_s if grew else min(max(t.interval_s, base_s) * 2, idle_max_s)
            self._schedule(worker_id, t, now_s + t.interval_s)

    def flush_all(self) -> None:
        for worker_id, t in list(self.tails.items()):
            self._poll_one(worker_id, t, final=True)
        self.tails.clear()
        self._due.clear()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CONFIG.log_poll_interval_s)
            self.poll(loop.time())
