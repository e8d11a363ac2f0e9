"""This process's user metrics (``ember.util.metrics``), sent to its node daemon about once a second.

Recording is a dict update under a lock (``logic/metrics_table.MetricsBuffer``); nothing is
sent per call.  The first record after a report schedules the next one on the I/O thread,
``metrics_report_interval_s`` later, so an idle process sends nothing.
"""
from __future__ import annotations

import threading
from typing import Any

from ember.config import CONFIG
from ember.logic.metrics_table import MetricsBuffer
from ember.protocol import messages as m

_create_lock = threading.Lock()


class UserMetrics:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.buffer = MetricsBuffer()
        self._lock = threading.Lock()
        self._is_scheduled = False

    def record(self, name: str, kind: str, description: str, tag_keys: tuple, boundaries: tuple, tags: tuple,
               value: float) -> None:
        """Any thread."""
        with self._lock:
            self.buffer.record(name, kind, description, tag_keys, boundaries, tags, value)
            is_scheduled, self._is_scheduled = self._is_scheduled, True
        if not is_scheduled and not self.cw.is_shutdown:
            self.cw.post(self._schedule)

    def _schedule(self) -> None:
        if not self.cw.is_shutdown:
            self.cw.loop.call_later(CONFIG.metrics_report_interval_s, self.flush)

    def flush(self) -> None:
        """I/O thread: send what accumulated."""
        with self._lock:
            entries = self.buffer.take()
            self._is_scheduled = False
        raylet = self.cw.raylet
        if entries and raylet is not None and not raylet.closed:
            raylet.send(m.MetricsReport(entries))


def of(cw: Any) -> UserMetrics:
    """The process's ``UserMetrics`` (made on first use)."""
    um = getattr(cw, "user_metrics", None)
    if um is None:
        with _create_lock:
            um = getattr(cw, "user_metrics", None)
            if um is None:
                um = cw.user_metrics = UserMetrics(cw)
    return um
