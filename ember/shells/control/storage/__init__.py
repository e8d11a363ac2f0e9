"""Durable state for the control store (issue #11): one interface, three backends.

``open_storage(url)``: ``memory://``, ``file:///path/to/state.db`` (SQLite, WAL) or
``redis://[:password@]host:port[/db]`` / ``rediss://``.  The store is checked against the
schema version (``IncompatibleStorage`` names both ember versions).
"""
from __future__ import annotations

from urllib.parse import unquote, urlparse

from ember.shells.control.storage.base import (  # noqa: F401 - re-exported
    SCHEMA_VERSION, IncompatibleStorage, Storage, StorageError, StorageUnavailable, check_schema)


def open_storage(url: str, *, retry_timeout_s: float = 10.0, check: bool = True,
                 socket_timeout_s: float = 5.0) -> Storage:
    from ember import __version__
    parsed = urlparse(url)
    storage: Storage
    if parsed.scheme == "memory":
        from ember.shells.control.storage.memory import MemoryStorage
        storage = MemoryStorage()
    elif parsed.scheme == "file":
        from ember.shells.control.storage.sqlite_store import SqliteStorage
        path = unquote(parsed.path)
        if not path:
            raise StorageError(f"storage URL {url!r} names no file: use file:///absolute/path/state.db")
        storage = SqliteStorage(path, retry_timeout_s=retry_timeout_s)
    elif parsed.scheme in ("redis", "rediss"):
        from ember.shells.control.storage.redis_store import RedisStorage
        storage = RedisStorage(url, retry_timeout_s=retry_timeout_s, socket_timeout_s=socket_timeout_s)
    else:
        raise StorageError(f"unknown storage URL {url!r}: use memory://, file:///path/state.db, "
                           "redis://[:password@]host:port[/db] or rediss://...")
    if check:
        try:
            check_schema(storage, __version__)
        except BaseException:
            storage.close()
            raise
    return storage
