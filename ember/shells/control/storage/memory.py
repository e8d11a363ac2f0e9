"""In-memory storage: the default for a private ``ember.init()`` cluster (nothing outlives it)."""
from __future__ import annotations

import threading
from typing import Optional

from ember.shells.control.storage.base import Guard, Storage, Write


class MemoryStorage(Storage):
    description = "in-memory storage"

    def __init__(self) -> None:
        self._tables: dict[str, dict[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def put(self, table: str, key: bytes, value: bytes) -> None:
        with self._lock:
            self._tables.setdefault(table, {})[key] = value

    def get(self, table: str, key: bytes) -> Optional[bytes]:
        return self._tables.get(table, {}).get(key)

    def delete(self, table: str, key: bytes) -> bool:
        with self._lock:
            return self._tables.get(table, {}).pop(key, None) is not None

    def scan(self, table: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        with self._lock:
            return sorted((k, v) for k, v in self._tables.get(table, {}).items() if k.startswith(prefix))

    def write_batch(self, writes: list[Write]) -> None:
        with self._lock:
            for table, key, value in writes:
                if value is None:
                    self._tables.get(table, {}).pop(key, None)
                else:
                    self._tables.setdefault(table, {})[key] = value

    def compare_and_set(self, table: str, key: bytes, expected: Optional[bytes], value: bytes) -> bool:
        with self._lock:
            t = self._tables.setdefault(table, {})
            if t.get(key) != expected:
                return False
            t[key] = value
            return True

    def guarded_batch(self, guards: list[Guard], writes: list[Write]) -> bool:
        with self._lock:
            if any(self._tables.get(t, {}).get(k) != expected for t, k, expected in guards):
                return False
            for table, key, value in writes:
                if value is None:
                    self._tables.get(table, {}).pop(key, None)
                else:
                    self._tables.setdefault(table, {})[key] = value
            return True
