"""This process's task events: state changes recorded on any thread, flushed about once a second.

Recording costs a clock read and a deque append (no lock), so the task path sends nothing per task: the
I/O thread sends what accumulated as one ``TaskEventBatch`` to the control store every
``task_events_report_interval_s`` (0 turns events off).  Events of one task attempt between two
flushes travel as flat events with their function's fields sent once per batch by reference; the
control store keeps batches packed and folds them only when asked (``list_tasks``).  A full
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
from ember.logic.control.task_events import FLAT_BATCH
from ember.protocol import messages as m

log = logging.getLogger(__name__)
_BATCH_MAX = 30_000   # events per TaskEventBatch (about 1 MB packed)
_EVENTS_MAX_PER_TASK = 4   # a task records about this many events (buffer bound below)
_EVENTS_MAX = CONFIG.task_events_buffer_max * _EVENTS_MAX_PER_TASK


class TaskEvents:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.is_enabled = CONFIG.task_events_report_interval_s > 0
        # (task id, attempt, state code, time, fields key) in the order recorded.  Appending to a deque is
        # atomic under the GIL: no lock on the task path.  The tuples hold only bytes and numbers, so the
        # garbage collector untracks them at their first pass: buffered events never reach the old
        # generations, whose full collections of the driver's heap were most of what events cost it.
        self._events: collections.deque = collections.deque()
        # fields key (id of the dict) -> fields dict: the dicts are shared (one per function, one per
        # worker and job) and held here until sent, so an id stays unique while it is referenced
        self._fields: dict[int, dict] = {}
        self._prev_fields: dict[int, dict] = {}
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
        if fields is None:
            events.append((task_id, attempt, state, time.time(), -1))
        else:
            key = id(fields)
            if key not in self._fields:
                self._fields[key] = fields   # before the event: whoever sends the event can find them
            events.append((task_id, attempt, state, time.time(), key))
        if not self._is_scheduled:   # a race posts twice at worst: the second flush finds nothing
            self._is_scheduled = True
            self.cw.post(self._schedule)

    def _schedule(self) -> None:
        if not self.cw.is_shutdown:
            self.cw.loop.call_later(CONFIG.task_events_report_interval_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self.cw.spawn(self.flush())

    def _take(self) -> tuple[dict, list]:
        """I/O thread: the fields table and the events recorded so far (in order)."""
        self._is_scheduled = False   # before taking: a record from now on schedules the next flush
        table, self._fields = self._fields, {}
        events, popleft = [], self._events.popleft
        while True:
            try:
                events.append(popleft())
            except IndexError:
                break
        # an event whose fields went into the table just before the swap, or into the new one just
        # after, finds them here; the previous table covers one that waited a whole interval
        merged = {**self._prev_fields, **table, **dict(self._fields)}
        self._prev_fields = table
        return merged, events

    async def flush(self) -> None:
        """I/O thread: send what accumulated (in batches of at most ``_BATCH_MAX`` events), as
        ``[FLAT_BATCH, {fields key: fields}, [[task_id, attempt, state, time_s, fields key], ...]]``."""
        table, events = self._take()
        dropped, self._dropped = self._dropped, 0
        for start in range(0, len(events), _BATCH_MAX):
            batch = events[start:start + _BATCH_MAX]
            try:
                gcs = await self.cw.gcs_conn()
                data = msgpack.packb([FLAT_BATCH, table, batch], use_bin_type=True)
                gcs.send(m.TaskEventBatch(self.cw.job_id, data, len({e[0] for e in batch}), dropped))
                dropped = 0
            except Exception as e:  # the control store is away: these events are lost, and counted
                self._dropped += len(events) - start + dropped
                log.debug("task events not sent: %s", e)
                return
