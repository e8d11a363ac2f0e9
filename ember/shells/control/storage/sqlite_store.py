"""Storage in one local SQLite file (WAL mode): the default for ``ember start --head``."""
from __future__ import annotations

import os
import sqlite3
import threading
from typing import Optional

from ember.shells.control.storage.base import Guard, Storage, StorageError, Write, retrying

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (tbl TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, " \
          "PRIMARY KEY (tbl, k)) WITHOUT ROWID"


class SqliteStorage(Storage):
    def __init__(self, path: str, *, retry_timeout_s: float = 10.0) -> None:
        self.path = os.path.abspath(path)
        self.description = f"SQLite storage {self.path}"
        self._retry_timeout_s = retry_timeout_s
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise StorageError(f"cannot open {self.description}: directory {directory} does not exist")
        try:
            self._db = sqlite3.connect(self.path, timeout=retry_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open {self.description}: {exc}") from exc
        self._lock = threading.Lock()

    def _run(self, fn):  # type: ignore[no-untyped-def]
        def locked():  # type: ignore[no-untyped-def]
            with self._lock:
                return fn()
        return retrying(self.description, locked, (sqlite3.OperationalError,), self._retry_timeout_s)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._run(lambda: self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (table, key, value)))

    def get(self, table: str, key: bytes) -> Optional[bytes]:
        row = self._run(lambda: self._db.execute("SELECT v FROM entries WHERE tbl=? AND k=?",
                                                 (table, key)).fetchone())
        return None if row is None else bytes(row[0])

    def delete(self, table: str, key: bytes) -> bool:
        cur = self._run(lambda: self._db.execute("DELETE FROM entries WHERE tbl=? AND k=?", (table, key)))
        return cur.rowcount > 0

    def scan(self, table: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        rows = self._run(lambda: self._db.execute(
            "SELECT k, v FROM entries WHERE tbl=? AND substr(k, 1, ?)=? ORDER BY k",
            (table, len(prefix), prefix)).fetchall())
        return [(bytes(k), bytes(v)) for k, v in rows]

    def write_batch(self, writes: list[Write]) -> None:
        self.guarded_batch([], writes)

    def compare_and_set(self, table: str, key: bytes, expected: Optional[bytes], value: bytes) -> bool:
        return self.guarded_batch([(table, key, expected)], [(table, key, value)])

    def guarded_batch(self, guards: list[Guard], writes: list[Write]) -> bool:
        def guarded() -> bool:
            self._db.execute("BEGIN IMMEDIATE")  # takes the write lock first: nobody writes in between
            try:
                for table, key, expected in guards:
                    row = self._db.execute("SELECT v FROM entries WHERE tbl=? AND k=?", (table, key)).fetchone()
                    if (None if row is None else bytes(row[0])) != expected:
                        self._db.execute("ROLLBACK")
                        return False
                for table, key, value in writes:
                    if value is None:
                        self._db.execute("DELETE FROM entries WHERE tbl=? AND k=?", (table, key))
                    else:
                        self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (table, key, value))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return True
        return self._run(guarded)

    def close(self) -> None:
        with self._lock:
            self._db.close()
