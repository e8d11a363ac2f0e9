"""Streams each worker's stdout/stderr log files to the drivers of its job.

The node daemon polls the files of its live workers every ``log_poll_interval_s`` and
publishes new complete lines through the control store (channel "logs", key job id);
drivers subscribed to their job print them with a ``(pid=..., node=...)`` prefix.
"""
from __future__ import annotations

import asyncio
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


class LogMonitor:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.tails: dict[bytes, _Tail] = {}

    def add(self, worker_id: bytes, job_id: bytes, base: str) -> None:
        self.tails[worker_id] = _Tail(job_id, base)

    def set_pid(self, worker_id: bytes, pid: int) -> None:
        t = self.tails.get(worker_id)
        if t is not None:
            t.pid = pid

    def worker_exited(self, worker_id: bytes) -> None:
        t = self.tails.get(worker_id)
        if t is not None:
            t.is_alive = False

    def job_finished(self, job_id: bytes) -> None:
        for t in self.tails.values():
            if t.job_id == job_id:
                t.is_alive = False

    def _poll_one(self, worker_id: bytes, t: _Tail, final: bool) -> None:
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
            data = t.partial[idx] + data
            lines = data.split(b"\n")
            t.partial[idx] = lines.pop()
            if final and t.partial[idx]:
                lines.append(t.partial[idx])
                t.partial[idx] = b""
            if lines:
                self._publish(t, idx == 1, [ln.decode(errors="replace") for ln in lines])

    def _publish(self, t: _Tail, is_err: bool, lines: list[str]) -> None:
        gcs = self.daemon.gcs
        if gcs is None or gcs.closed:
            return
        gcs.send(m.LogLines(t.job_id, t.pid, self.daemon.node_id, is_err, lines))

    def poll(self) -> None:
        for worker_id, t in list(self.tails.items()):
            self._poll_one(worker_id, t, final=not t.is_alive)
            if not t.is_alive:
                del self.tails[worker_id]

    def flush_all(self) -> None:
        for t in self.tails.values():
            t.is_alive = False
        self.poll()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CONFIG.log_poll_interval_s)
            self.poll()
