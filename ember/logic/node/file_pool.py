"""The pool of freed store files that ``ObjectTable`` hands out again.  Pure: no I/O.

This class holds the pooled files and carries out the pool's part of the rules below:
reserving a freed object's file, confirming or dropping it when the shell reports back,
choosing the best fit for a create, trimming for room, and the idle timer.  The table
(``ember.logic.node.object_table``, rules 1-7) decides when each happens and owns the
capacity accounting around it.  Pool entries are written to the table's transition log
under ``pool_key(file_id)``.

The file pool (first touch of fresh shared-memory pages runs ~10x slower than
memcpy, so a freed object's file, already in memory, is worth writing into again):

Rule 8. A SEALED object freed by its owner becomes a pooled file instead of being
        deleted when it fits the pool (``pool_max_bytes``, default a quarter of the
        capacity, and ``pool_files_max``), oldest pooled files trimmed to make room.
        The shell pools it only if no process maps it (RecycleObject, answered by
        ObjectRecycled or ObjectRecycleFailed); until then it cannot be handed out.
        Evicted secondary copies and spilled objects are deleted, never pooled.
Rule 9. Pooled bytes count against the capacity (``used_bytes + pool_bytes <=
        capacity_bytes``) but are not object bytes: ``used_bytes`` leaves them out.
Rule 10. A create takes the pooled file that fits best: size within [size/2, 2*size],
        one last written by the same writer first (it may still have it mapped),
        then one at least as large, then the closest size, then the oldest.
        Restores never take pooled files.
Rule 11. When a request needs room, pooled files (but the one it will take) are
        trimmed first, oldest first, before any copy is deleted or spilled; they
        count as room when deciding whether a request can ever fit (rule 3).
Rule 12. A pooled file not taken within ``pool_idle_s`` is trimmed (SchedulePoolTrim /
        PoolTrimTimerFired), so an idle store gives its memory back.
"""
from __future__ import annotations

import enum
from typing import Any, Optional

from ember.logic.fsm import InvalidTransition, TransitionLog
from ember.logic.node.object_events import (
    FileId,
    ObjectTableEffect,
    SchedulePoolTrim,
    TrimPoolFile,
)

__all__ = ["FilePool", "PoolFileState", "pool_key", "POOL_FILES_MAX", "POOL_IDLE_S"]

POOL_FILES_MAX = 64
POOL_IDLE_S = 60.0

_Out = list[ObjectTableEffect]


def pool_key(file_id: FileId) -> str:
    """The ``story`` key of a pooled file."""
    return f"pool.{file_id}"


class PoolFileState(enum.Enum):
    RECYCLING = "RECYCLING"  # RecycleObject ordered, not yet reported
    POOLED = "POOLED"


class _PoolFile:
    __slots__ = ("size_bytes", "writer", "pooled_at_s", "is_confirmed")

    def __init__(self, size_bytes: int, writer: Any, pooled_at_s: float) -> None:
        self.size_bytes = size_bytes
        self.writer = writer
        self.pooled_at_s = pooled_at_s
        self.is_confirmed = False  # RECYCLING until the shell reports ObjectRecycled

    @property
    def state(self) -> PoolFileState:
        return PoolFileState.POOLED if self.is_confirmed else PoolFileState.RECYCLING


class FilePool:
    """Pooled files, oldest first, with their byte totals and the idle-trim timer."""

    def __init__(self, max_bytes: int, files_max: int, idle_s: float,
                 log: TransitionLog) -> None:
        self.max_bytes = max_bytes
        self.files_max = files_max
        self.idle_s = idle_s
        self.total_bytes = 0        # pooled files, confirmed or not
        self.recycling_bytes = 0    # pooled files the shell has not confirmed yet
        self._files: dict[FileId, _PoolFile] = {}  # oldest first
        self._next_file_id = 1
        self._timer_at: Optional[float] = None
        self._log = log

    # --- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._files)

    def files(self) -> list[tuple[FileId, int, bool]]:
        """Pooled files, oldest first, as ``(file_id, size_bytes, is_confirmed)``."""
        return [(fid, f.size_bytes, f.is_confirmed) for fid, f in self._files.items()]

    def size_of(self, file_id: FileId) -> int:
        return self._files[file_id].size_bytes

    def spare_bytes(self, keep: Optional[FileId]) -> int:
        """Bytes of the confirmed files but ``keep``: what trimming could free."""
        return sum(f.size_bytes for fid, f in self._files.items()
                   if f.is_confirmed and fid != keep)

    def pick(self, size_bytes: int, writer: Any) -> Optional[FileId]:
        """The pooled file a create of ``size_bytes`` should take (rule 10), or None."""
        if not self._files:
            return None
        best: Optional[FileId] = None
        best_key: Optional[tuple[bool, bool, int, int]] = None
        for file_id, f in self._files.items():
            if not f.is_confirmed or not size_bytes // 2 <= f.size_bytes <= 2 * size_bytes:
                continue
            key = (writer is None or f.writer != writer, f.size_bytes < size_bytes,
                   abs(f.size_bytes - size_bytes), file_id)
            if best_key is None or key < best_key:
                best, best_key = file_id, key
        return best

    # --- changes ------------------------------------------------------------------------
    def add(self, size_bytes: int, writer: Any, cause_id: str, now: float,
            out: _Out) -> Optional[FileId]:
        """Reserve a pool entry for a freed object's file, or None when it cannot be pooled."""
        size = size_bytes
        if size <= 0 or size > self.max_bytes or self.files_max <= 0:
            return None
        for file_id in [fid for fid, f in self._files.items() if f.is_confirmed]:  # oldest first
            if self.total_bytes + size <= self.max_bytes and len(self._files) < self.files_max:
                break
            self.trim(file_id, cause_id, "pool full", now, out)
        if self.total_bytes + size > self.max_bytes or len(self._files) >= self.files_max:
            return None
        file_id = self._next_file_id
        self._next_file_id += 1
        self._files[file_id] = _PoolFile(size, writer, now)
        self.total_bytes += size
        self.recycling_bytes += size
        return file_id

    def confirm(self, file_id: FileId, cause_id: str, now: float, out: _Out) -> None:
        """The shell pooled the file (ObjectRecycled)."""
        f = self._unconfirmed(file_id, cause_id)
        f.is_confirmed = True
        self.recycling_bytes -= f.size_bytes
        self._log.record(pool_key(file_id), None, None, cause_id, at_s=now,
                         note=f"pooled, {f.size_bytes} bytes")
        if self._timer_at is None:
            self._schedule_trim(f.pooled_at_s + self.idle_s, cause_id, out)

    def discard_unconfirmed(self, file_id: FileId, reason: str, cause_id: str,
                            now: float) -> None:
        """The shell could not pool the file (ObjectRecycleFailed)."""
        f = self._unconfirmed(file_id, cause_id)
        del self._files[file_id]
        self.total_bytes -= f.size_bytes
        self.recycling_bytes -= f.size_bytes
        self._log.record(pool_key(file_id), None, None, cause_id, at_s=now,
                         note=f"not pooled: {reason}".rstrip(": "))

    def on_timer(self, cause_id: str, now: float, out: _Out) -> None:
        """Trim the files idle for ``idle_s`` and set the timer for the next (rule 12)."""
        self._timer_at = None
        for file_id, f in list(self._files.items()):
            if f.is_confirmed and now - f.pooled_at_s >= self.idle_s:
                self.trim(file_id, cause_id, "idle", now, out)
        oldest = next((f for f in self._files.values() if f.is_confirmed), None)
        if oldest is not None:
            self._schedule_trim(max(oldest.pooled_at_s + self.idle_s, now), cause_id, out)

    def take(self, file_id: FileId, taker: str, cause_id: str, now: float) -> int:
        """Hand the file to a create; returns its size."""
        f = self._files.pop(file_id)
        self.total_bytes -= f.size_bytes
        self._log.record(pool_key(file_id), None, None, cause_id, at_s=now,
                         note=f"taken by {taker}")
        return f.size_bytes

    def trim(self, file_id: FileId, cause_id: str, why: str, now: float, out: _Out) -> int:
        f = self._files.pop(file_id)
        self.total_bytes -= f.size_bytes
        self._log.record(pool_key(file_id), None, None, cause_id, at_s=now,
                         note=f"trimmed ({why})")
        out.append(TrimPoolFile(file_id, cause_id))
        return f.size_bytes

    def trim_for(self, missing_bytes: int, keep: Optional[FileId], cause_id: str,
                 now: float, out: _Out) -> None:
        """Trim confirmed pooled files but ``keep``, oldest first, until ``missing_bytes``
        are free (rule 11)."""
        for file_id in [fid for fid, f in self._files.items() if f.is_confirmed and fid != keep]:
            if missing_bytes <= 0:
                return
            missing_bytes -= self.trim(file_id, cause_id, "room needed", now, out)

    def _schedule_trim(self, at_s: float, cause_id: str, out: _Out) -> None:
        self._timer_at = at_s
        out.append(SchedulePoolTrim(at_s, cause_id))

    def _unconfirmed(self, file_id: FileId, cause_id: str) -> _PoolFile:
        """A pool file the table asked to recycle and has no report about yet (rule 7)."""
        f = self._files.get(file_id)
        if f is None or f.is_confirmed:
            raise InvalidTransition(pool_key(file_id), f.state if f is not None else None,
                                    PoolFileState.POOLED, cause_id)
        return f

    # --- invariants ---------------------------------------------------------------------
    def problems(self) -> list[str]:
        problems = []
        files = self._files.values()
        if sum(f.size_bytes for f in files) != self.total_bytes:
            problems.append(f"pool_bytes {self.total_bytes} != sum of pooled sizes")
        if sum(f.size_bytes for f in files if not f.is_confirmed) != self.recycling_bytes:
            problems.append(f"recycling bytes {self.recycling_bytes} != unconfirmed sizes")
        if self.total_bytes > self.max_bytes or len(self._files) > self.files_max:
            problems.append(f"pool holds {self.total_bytes} bytes in {len(self._files)} files, "
                            f"over {self.max_bytes} / {self.files_max}")
        if any(f.size_bytes <= 0 for f in files):
            problems.append("a pooled file has no bytes")
        if self._timer_at is None and any(f.is_confirmed for f in files):
            problems.append("pooled files but no trim timer")
        return problems
