"""This process's task events: state changes recorded on any thread, flushed about once a second.

Recording costs a clock read and a deque append (no lock), so the task path sends nothing per task: the
I/O thread sends what accumulated as one ``TaskEventBatch`` to the control store every
``task_events_report_interval_s`` (0 turns events off).  Events of one task attempt between two
flushes travel as one entry (a short task's four owner-side states cost the control store one
fold, not four: with one entry per event the control store's folding took a visible share of
this 2-core machine at 10k tasks/s); the grouping happens on the I/O thread at flush time.  A full
buffer (``task_events_buffer_max`` tasks' worth of events) drops new events and counts them; the count
travels with the next batch so ``list_tasks`` can say what is missing.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Optional

import msgpack

from ember.config import CONFIG
from ember.protocol import messages as m

log = logging.getLogger(__name__)
_BATCH_MAX = 10_000
_EVENTS_MAX_PER_TASK = 4   # a task records about this many events (buffer bound below)
_EVENTS_MAX = CONFIG.task_events_buffer_max * _EVENTS_MAX_PER_TASK


class TaskEvents:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.is_enabled = CONFIG.task_events_report_interval_s > 0
        # (task id, attempt, state code, time, fields or None) in the order recorded.  Appending to a
        # deque is atomic under the GIL: no lock is taken on the task path.  A lock shared by the user
        # thread (submits) and the I/O thread (results) cost the driver ~12 us per task in contention
        # (measured: CPU per task +16 us with events on, of which ~4 us is the recording itself).
        self._events: collections.deque = collections.deque()
        self._dropped = 0
        self._is_scheduled = False

    def record(self, task_id: bytes, attempt: int, state: int, fields: Optional[dict] = None) -> None:
        """Any thread: note that the task entered ``state`` (a ``logic.task_states`` code) now."""
        if not self.is_enabled:
            return
        events = self._events
        if len(events) >= _EVENTS_MAX:
            self._dropped += 1   # approximate under races: a count for the user, never a decision
            return
        events.append((task_id, attempt, state, time.time(), fields))
        if not self._is_scheduled:   # a race posts twice at worst: the second flush finds nothing
            self._is_scheduled = True
            self.cw.post(self._schedule)

    def _schedule(self) -> None:
        if not self.cw.is_shutdown:
            self.cw.loop.call_later(CONFIG.task_events_report_interval_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self.cw.spawn(self.flush())

    def _take(self) -> list:
        """I/O thread: fold what was recorded into one entry per task attempt,
        [task_id, attempt, {state: time}, fields, more fields...] (fields dicts are shared, not copied)."""
        self._is_scheduled = False   # before taking: a record from now on schedules the next flush
        events, grouped = self._events, {}
        popleft = events.popleft
        while True:
            try:
                task_id, attempt, state, time_s, fields = popleft()
            except IndexError:
                break
            key = (task_id, attempt)
            entry = grouped.get(key)
            if entry is None:
                grouped[key] = [task_id, attempt, {state: time_s}, fields]
            else:
                entry[2][state] = time_s
                if fields:
                    entry.append(fields)
        return list(grouped.values())

    async def flush(self) -> None:
        """I/O thread: send what accumulated (in batches of at most ``_BATCH_MAX`` tasks)."""
        entries = self._take()
        dropped, self._dropped = self._dropped, 0
        for start in range(0, len(entries), _BATCH_MAX):
            batch = entries[start:start + _BATCH_MAX]
            try:
                gcs = await self.cw.gcs_conn()
                gcs.send(m.TaskEventBatch(self.cw.job_id, msgpack.packb(batch, use_bin_type=True), len(batch),
                                          dropped))
                dropped = 0
            except Exception as e:  # the control store is away: these events are lost, and counted
                self._dropped += len(entries) - start + dropped
                log.debug("task events not sent: %s", e)
                return
