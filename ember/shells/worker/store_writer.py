"""Writing an object into this node's shared-memory store, on the caller's thread.

The node daemon reserves the bytes (``CreateObject``), the writer fills the file and
seals it.  A write that fails (``OSError``) gives the reservation back at once with
``AbortObject``; otherwise the daemon would count those bytes as used until this
process exits.  A write that fails because the store's tmpfs is full (ENOSPC: a
``/dev/shm`` smaller than the configured store, or filled by others) makes the daemon
lower its capacity to what it holds (its table's rule 15), and the write is tried once
more: that create now spills other objects to make room, or is refused with
``ObjectStoreFullError``.  A second ENOSPC raises ``ObjectStoreFullError`` naming the
filesystem.
"""
from __future__ import annotations

import errno
import json
import os
from typing import Any, Optional

from ember import exceptions as exc
from ember.protocol import messages as m
from ember.shells.wire import rpc

__all__ = ["write_object", "store_full_error"]

_ATTEMPTS_MAX = 2


def store_full_error(e: rpc.RpcError) -> exc.ObjectStoreFullError:
    """The node daemon's refusal, with the sizes it sent (needed, capacity, used)."""
    try:
        sizes = {k: int(v) for k, v in json.loads(e.data or b"{}").items()
                 if k in ("object_size_bytes", "capacity_bytes", "used_bytes")}
    except (ValueError, TypeError, AttributeError):
        sizes = {}
    return exc.ObjectStoreFullError(e.message, **sizes)


def write_object(cw: Any, oid: bytes, ser: Any, owner_address: str) -> bool:
    """Reserve, write and (the caller then) seal ``oid``; False when the node already
    has it (a retried task's return: nothing to write)."""
    size = ser.total_bytes
    for attempt in range(1, _ATTEMPTS_MAX + 1):
        recycled_name = _create(cw, oid, size, owner_address)
        if recycled_name is None:
            return False
        try:
            cw.shm.write(oid, ser, recycled_name)
            return True
        except OSError as e:
            is_out_of_space = e.errno == errno.ENOSPC
            cw.run_sync(_abort(cw, oid, is_out_of_space))
            if not is_out_of_space:
                raise
            if attempt == _ATTEMPTS_MAX:
                directory = os.path.dirname(cw.shm.directory)
                raise exc.ObjectStoreFullError(
                    f"Cannot store an object of {size} bytes: the shared-memory filesystem "
                    f"{directory} is full (No space left on device), below the object store's "
                    f"configured capacity. Make it larger (e.g. docker --shm-size) or point "
                    f"EMBER_SHM_DIR at a larger tmpfs.", object_size_bytes=size) from None
    raise AssertionError("unreachable")


def _create(cw: Any, oid: bytes, size: int, owner_address: str) -> Optional[str]:
    """The recycled file name to write into ("" for a new file), or None if it exists."""
    try:
        reply = cw.run_sync(_create_object(cw, oid, size, owner_address))
    except rpc.RpcError as e:
        if e.kind == "ObjectExists":
            return None
        if e.kind == "ObjectStoreFullError":
            raise store_full_error(e) from None
        raise
    return getattr(reply, "recycled_name", "")


async def _create_object(cw: Any, oid: bytes, size: int, owner_address: str) -> Any:
    cw.refs.drain()  # frees of dropped refs go first: their files may be recycled for this one
    return await cw.raylet.request(m.CreateObject(oid, size, owner_address))


async def _abort(cw: Any, oid: bytes, is_out_of_space: bool) -> None:
    try:
        await cw.raylet.request(m.AbortObject(oid, is_out_of_space))
    except (rpc.RpcError, rpc.ConnectionLost):
        pass  # the daemon is gone, or old: the write's own error is what the caller needs
