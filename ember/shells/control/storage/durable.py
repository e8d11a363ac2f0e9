"""The control store's tables written through a ``Storage`` and read back on start.

Tables: ``kv`` (key ``namespace \\0 key``), ``jobs`` (job id -> msgpack dict), ``actors``
(actor id -> the ActorTable's plain record, written by its ``Persist`` effects).  Node
registrations are not stored: daemons re-register with a restarted head (head_link).

Hook for later tables (placement groups, ...): ``save(table, key, obj)``, ``forget(table,
key)`` and ``load_table(table)`` store any msgpack-able object; call ``load_table`` from the
extension's ``restore_from(durable)`` method, which ``load()`` calls on every extension.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

import msgpack

from ember.logic.control.kv import KvTable
from ember.shells.control.storage.base import Storage

log = logging.getLogger("ember.gcs.storage")


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _kv_key(namespace: str, key: bytes) -> bytes:
    return namespace.encode() + b"\0" + key


class DurableKv(KvTable):
    """The KV table, every change written through to the storage before it is answered."""

    def __init__(self, storage: Storage) -> None:
        super().__init__()
        self.storage = storage

    def put(self, namespace: str, key: bytes, value: bytes, overwrite: bool) -> bool:
        k = (namespace, key)
        if k in self.data and not overwrite:
            return False
        self.storage.put("kv", _kv_key(namespace, key), value)
        self.data[k] = value
        return True

    def delete(self, namespace: str, key: bytes) -> bool:
        if (namespace, key) not in self.data:
            return False
        self.storage.delete("kv", _kv_key(namespace, key))
        del self.data[(namespace, key)]
        return True

    def load(self) -> None:
        for k, v in self.storage.scan("kv"):
            namespace, _, key = k.partition(b"\0")
            self.data[(namespace.decode(), key)] = v


class DurableState:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.kv = DurableKv(storage)
        self.restored_jobs: set[bytes] = set()

    # --- generic hook -------------------------------------------------------------------
    def save(self, table: str, key: bytes, obj: Any) -> None:
        self.storage.put(table, key, _pack(obj))

    def forget(self, table: str, key: bytes) -> None:
        self.storage.delete(table, key)

    def load_table(self, table: str) -> list[tuple[bytes, Any]]:
        return [(k, _unpack(v)) for k, v in self.storage.scan(table)]

    # --- the control store's tables --------------------------------------------------------
    def job_changed(self, job_id: bytes, job: Optional[dict]) -> None:
        if job is None:
            self.forget("jobs", job_id)
        else:
            self.save("jobs", job_id, job)

    def actor_persisted(self, actor_id: bytes, record: Optional[dict]) -> None:
        if record is None:
            self.forget("actors", actor_id)
        else:
            self.save("actors", actor_id, record)

    def load(self, store: Any) -> None:
        """Fill a fresh control store's tables from the storage (before it serves)."""
        self.kv.load()
        for job_id, job in self.load_table("jobs"):
            store.jobs[job_id] = job
            store._next_job = max(store._next_job, int.from_bytes(job_id, "little") + 1)
            if job.get("is_alive"):
                self.restored_jobs.add(job_id)
        for ext in store.extensions:
            hook = getattr(ext, "restore_from", None)
            if hook is not None:
                hook(self)
        log.info("loaded %d KV entries, %d jobs from %s", len(self.kv.data), len(store.jobs),
                 self.storage.description)
