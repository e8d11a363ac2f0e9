"""The control store's storage interface: byte keys and values grouped in named tables.

Every backend implements ``Storage``.  Calls are synchronous: the memory backend answers
at once, SQLite in microseconds (WAL, one local file), Redis in one round trip.  A backend
that cannot be reached retries with backoff (``retrying``) and then raises
``StorageUnavailable`` naming the backend; it never half-applies a ``write_batch``.

Standby heads and fencing (issue #11 section 3) rest on ``guarded_batch``: writes applied
only if stored values are what the writer expects, atomically (a Lua script in Redis, an
immediate transaction in SQLite, a lock in memory).
"""
from __future__ import annotations

import abc
import logging
import time
from typing import Callable, Optional, TypeVar

log = logging.getLogger("ember.gcs.storage")

# Bump when the tables' layout changes; a storage written under another schema is refused.
SCHEMA_VERSION = 1
META_TABLE = "meta"
SCHEMA_KEY = b"schema_version"
EMBER_VERSION_KEY = b"ember_version"

T = TypeVar("T")
# One write of a batch: (table, key, value) puts, (table, key, None) deletes.
Write = tuple[str, bytes, Optional[bytes]]
# One condition of a guarded batch: (table, key, expected value or None for absent).
Guard = tuple[str, bytes, Optional[bytes]]


class StorageError(Exception):
    """The storage refused an operation (bad URL, wrong password, incompatible data)."""


class StorageUnavailable(StorageError):
    """The storage could not be reached within the retry budget."""


class IncompatibleStorage(StorageError):
    """The storage was written by an ember version with another schema."""


class Storage(abc.ABC):
    """put/get/delete/scan by (table, key); write_batch applies several writes atomically."""

    description = "storage"

    @abc.abstractmethod
    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, table: str, key: bytes) -> Optional[bytes]: ...

    @abc.abstractmethod
    def delete(self, table: str, key: bytes) -> bool:
        """Whether the key existed."""

    @abc.abstractmethod
    def scan(self, table: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """Every (key, value) of ``table`` whose key starts with ``prefix``, sorted by key."""

    @abc.abstractmethod
    def write_batch(self, writes: list[Write]) -> None: ...

    @abc.abstractmethod
    def compare_and_set(self, table: str, key: bytes, expected: Optional[bytes], value: bytes) -> bool:
        """Write ``value`` only if the stored value is ``expected`` (None: absent); atomic."""

    @abc.abstractmethod
    def guarded_batch(self, guards: list[Guard], writes: list[Write]) -> bool:
        """Apply ``writes`` only if every guard holds (the stored value equals the expected one);
        checked and applied in one atomic step.  Whether they were applied.  Fencing (a write
        conditional on the writer's epoch, docs/head.md) is a guarded batch."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "Storage":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def retrying(what: str, fn: Callable[[], T], transient: tuple[type[BaseException], ...],
             timeout_s: float) -> T:
    """Call ``fn``; on a transient error retry with exponential backoff until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return fn()
        except transient as exc:
            if time.monotonic() + delay > deadline:
                raise StorageUnavailable(f"{what} could not be reached for {timeout_s:.0f} s: {exc}") from exc
            log.warning("%s unreachable (%s); retrying in %.2f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def check_schema(storage: Storage, ember_version: str) -> None:
    """Stamp a fresh storage with the schema; refuse one written under another schema."""
    stored = storage.get(META_TABLE, SCHEMA_KEY)
    if stored is None:
        storage.write_batch([(META_TABLE, SCHEMA_KEY, str(SCHEMA_VERSION).encode()),
                             (META_TABLE, EMBER_VERSION_KEY, ember_version.encode())])
        return
    if stored != str(SCHEMA_VERSION).encode():
        writer = (storage.get(META_TABLE, EMBER_VERSION_KEY) or b"unknown").decode(errors="replace")
        raise IncompatibleStorage(
            f"{storage.description} was written by ember {writer} (storage schema {stored.decode(errors='replace')}); "
            f"this is ember {ember_version} (storage schema {SCHEMA_VERSION}): use a new storage location, "
            "or the ember version that wrote it")
    storage.put(META_TABLE, EMBER_VERSION_KEY, ember_version.encode())
