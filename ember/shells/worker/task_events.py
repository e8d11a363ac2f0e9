"""This process's task events: state changes recorded on any thread, flushed about once a second.

Recording costs a clock read and a dict update, so the task path sends nothing per task: the
I/O thread sends what accumulated as one ``TaskEventBatch`` to the control store every
``task_events_report_interval_s`` (0 turns events off).  Events of one task attempt between two
flushes travel as one entry (a short task's four owner-side states cost the control store one
fold, not four: with one entry per event the control store's folding took a visible share of
this 2-core machine at 10k tasks/s).  A full buffer drops new tasks and counts them; the count
travels with the next batch so ``list_tasks`` can say what is missing.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Optional

import msgpack

from ember.config import CONFIG
from ember.protocol import messages as m

log = logging.getLogger(__name__)
_BATCH_MAX = 10_000


class TaskEvents:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.is_enabled = CONFIG.task_events_report_interval_s > 0
        # (task, attempt) -> [task, attempt, {state: t}, fields, more fields...]: dicts are appended, not
        # merged, and the first one is often shared by every task of a function (never copied here)
        self._buf: dict[tuple[bytes, int], list] = {}
        self._lock = threading.Lock()
        self._dropped = 0
        self._is_scheduled = False

    def record(self, task_id: bytes, attempt: int, state: int, fields: Optional[dict] = None) -> None:
        """Any thread: note that the task entered ``state`` (a ``logic.task_states`` code) now."""
        if not self.is_enabled:
            return
        now = time.time()
        key = (task_id, attempt)
        with self._lock:
            entry = self._buf.get(key)
            if entry is None:
                if len(self._buf) >= CONFIG.task_events_buffer_max:
                    self._dropped += 1
                    return
                self._buf[key] = [task_id, attempt, {state: now}, fields]
            else:
                entry[2][state] = now
                if fields:
                    entry.append(fields)
            is_scheduled, self._is_scheduled = self._is_scheduled, True
        if not is_scheduled:
            self.cw.post(self._schedule)

    def _schedule(self) -> None:
        if not self.cw.is_shutdown:
            self.cw.loop.call_later(CONFIG.task_events_report_interval_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self.cw.spawn(self.flush())

    async def flush(self) -> None:
        """I/O thread: send what accumulated (in batches of at most ``_BATCH_MAX`` tasks)."""
        with self._lock:
            entries, self._buf = list(self._buf.values()), {}
            dropped, self._dropped = self._dropped, 0
            self._is_scheduled = False
        for start in range(0, len(entries), _BATCH_MAX):
            batch = entries[start:start + _BATCH_MAX]
            try:
                gcs = await self.cw.gcs_conn()
                gcs.send(m.TaskEventBatch(self.cw.job_id, msgpack.packb(batch, use_bin_type=True), len(batch),
                                          dropped))
                dropped = 0
            except Exception as e:  # the control store is away: these events are lost, and counted
                with self._lock:
                    self._dropped += len(entries) - start + dropped
                log.debug("task events not sent: %s", e)
                return
