"""The owner's in-process table of object values and locations.

Entries change state only from PENDING to READY or FAILED.  The I/O thread completes
entries; any thread may read them and wait on them.  Small values live here inline
(the serialized layout as bytes); large ones are files in some node's store and the
entry records where.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

PENDING = 0
READY = 1
FAILED = 2


class Entry:
    __slots__ = ("state", "data", "node_id", "node_address", "size", "error", "waiters", "is_owned")

    def __init__(self, is_owned: bool) -> None:
        self.state = PENDING
        self.data: Optional[bytes] = None
        self.node_id: Optional[bytes] = None
        self.node_address = ""
        self.size = 0
        self.error: Optional[BaseException] = None
        self.waiters: Optional[list[Callable[[], None]]] = None
        self.is_owned = is_owned


class MemoryStore:
    def __init__(self) -> None:
        self.entries: dict[bytes, Entry] = {}
        self.lock = threading.Lock()

    def get(self, object_id: bytes) -> Optional[Entry]:
        return self.entries.get(object_id)

    def add_pending(self, object_id: bytes, is_owned: bool) -> Entry:
        with self.lock:
            e = self.entries.get(object_id)
            if e is None:
                e = self.entries[object_id] = Entry(is_owned)
            return e

    def put_ready(self, object_id: bytes, data: Optional[bytes], node_id: Optional[bytes] = None,
                  node_address: str = "", size: int = 0) -> None:
        e = Entry(True)
        e.state = READY
        e.data, e.node_id, e.node_address, e.size = data, node_id, node_address, size
        with self.lock:
            self.entries[object_id] = e

    def complete(self, object_id: bytes, *, data: Optional[bytes] = None, node_id: Optional[bytes] = None,
                 node_address: str = "", size: int = 0, error: Optional[BaseException] = None) -> bool:
        """Mark ready (or failed); False when nobody holds the entry any more."""
        with self.lock:
            e = self.entries.get(object_id)
            if e is None or e.state != PENDING:
                return False
            e.data, e.node_id, e.node_address, e.size, e.error = data, node_id, node_address, size, error
            e.state = FAILED if error is not None else READY
            waiters, e.waiters = e.waiters, None
        if waiters:
            for w in waiters:
                w()
        return True

    def reset_pending(self, object_id: bytes) -> Optional[Entry]:
        """An owned object whose copies were lost is being rebuilt: replace its done entry with a
        fresh PENDING one (readers holding the old entry keep it).  None when not tracked."""
        with self.lock:
            old = self.entries.get(object_id)
            if old is None:
                return None
            if old.state == PENDING:
                return old
            e = self.entries[object_id] = Entry(old.is_owned)
            return e

    def replace(self, object_id: bytes, entry: Entry) -> None:
        """A borrower's cached answer from the owner, replaced by a newer one."""
        with self.lock:
            if object_id in self.entries:   # else released meanwhile: stay forgotten
                self.entries[object_id] = entry

    def add_waiter(self, object_id: bytes, callback: Callable[[], None]) -> bool:
        """Call ``callback`` once the entry is done; False (and no call) if it already is."""
        with self.lock:
            e = self.entries.get(object_id)
            if e is None or e.state != PENDING:
                return False
            if e.waiters is None:
                e.waiters = []
            e.waiters.append(callback)
            return True

    def remove_waiter(self, object_id: bytes, callback: Callable[[], None]) -> None:
        with self.lock:
            e = self.entries.get(object_id)
            if e is not None and e.waiters:
                try:
                    e.waiters.remove(callback)
                except ValueError:
                    pass

    def wait(self, object_id: bytes, timeout_s: Optional[float]) -> bool:
        ev = threading.Event()
        if not self.add_waiter(object_id, ev.set):
            return True
        return ev.wait(timeout_s)

    def pop(self, object_id: bytes) -> Optional[Entry]:
        with self.lock:
            return self.entries.pop(object_id, None)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, object_id: Any) -> bool:
        return object_id in self.entries
