"""Writes fenced by the leader's epoch (issue #11, section 3; rule 4 of
``ember/logic/control/leadership.py``).

``FencedStorage`` wraps the control store's storage once its head leads: every put, delete and
batch becomes a ``guarded_batch`` whose guard is ``leader/epoch == my epoch``, checked and applied
atomically by the backend.  A write refused by the guard raises :class:`Deposed` (a newer head
leads) and calls ``on_fenced`` so the head steps down; nothing of it lands.  Reads pass through.
"""
from __future__ import annotations

from typing import Callable, Optional

from ember.logic.control import leadership as L
from ember.shells.control.storage.base import Guard, Storage, StorageError, Write


class Deposed(StorageError):
    """A write was refused: another head took the lease with a newer epoch."""


class FencedStorage(Storage):
    def __init__(self, inner: Storage, epoch: int, on_fenced: Callable[[], None]) -> None:
        self.inner = inner
        self.epoch = epoch
        self.on_fenced = on_fenced
        self.description = inner.description
        self._fence: Guard = (L.TABLE, L.EPOCH_KEY, L.fence_value(epoch))

    def _write(self, writes: list[Write], guards: Optional[list[Guard]] = None) -> bool:
        if self.inner.guarded_batch([self._fence, *(guards or [])], writes):
            return True
        if guards and self.inner.get(L.TABLE, L.EPOCH_KEY) == self._fence[2]:
            return False  # only the caller's own guard failed
        self.on_fenced()
        raise Deposed(f"this head (epoch {self.epoch}) was deposed: another head leads with a newer epoch "
                      f"({(self.inner.get(L.TABLE, L.EPOCH_KEY) or b'?').decode()}); the write was not applied")

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._write([(table, key, value)])

    def get(self, table: str, key: bytes) -> Optional[bytes]:
        return self.inner.get(table, key)

    def delete(self, table: str, key: bytes) -> bool:
        self._write([(table, key, None)])
        return True

    def scan(self, table: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        return self.inner.scan(table, prefix)

    def write_batch(self, writes: list[Write]) -> None:
        self._write(list(writes))

    def compare_and_set(self, table: str, key: bytes, expected: Optional[bytes], value: bytes) -> bool:
        return self._write([(table, key, value)], [(table, key, expected)])

    def guarded_batch(self, guards: list[Guard], writes: list[Write]) -> bool:
        return self._write(list(writes), list(guards))

    def close(self) -> None:
        self.inner.close()
