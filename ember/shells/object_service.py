"""The node daemon's object store service: admit, seal, free, pull between nodes.

Objects are files in the node's shared-memory directory (``ShmStore``); writers and
readers on the node map them directly, so this service sees only control messages:
admission (capacity), seal notices, frees, and pulls of objects from other nodes.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ember.config import CONFIG
from ember.protocol import messages as m
from ember.shells import rpc
from ember.shells.shm_store import default_capacity_bytes

log = logging.getLogger("ember.objects")


class ObjectService:
    def __init__(self, daemon: Any, capacity_bytes: int) -> None:
        self.daemon = daemon
        self.capacity_bytes = capacity_bytes or default_capacity_bytes()
        self.sizes: dict[bytes, int] = {}
        self._pulls: dict[bytes, asyncio.Future[None]] = {}

    def used_bytes(self) -> int:
        return sum(self.sizes.values())

    def num_objects(self) -> int:
        return len(self.sizes)

    def close(self) -> None:
        self.sizes.clear()

    # --- local writers ---------------------------------------------------------------------
    def on_CreateObject(self, conn: rpc.Connection, request_id: int, msg: m.CreateObject) -> None:
        used = self.used_bytes()
        if used + msg.size_bytes > self.capacity_bytes:
            conn.reply_error(request_id, "ObjectStoreFullError",
                             f"cannot create an object of {msg.size_bytes} bytes: the object store holds "
                             f"{used} of {self.capacity_bytes} bytes")
            return
        self.sizes[msg.object_id] = msg.size_bytes
        conn.reply(request_id, m.Ok())

    def on_ObjectSealed(self, conn: rpc.Connection, request_id: int, msg: m.ObjectSealed) -> None:
        self.sizes[msg.object_id] = msg.size_bytes

    def on_FreeObjects(self, conn: rpc.Connection, request_id: int, msg: m.FreeObjects) -> None:
        for oid in msg.object_ids:
            self.sizes.pop(oid, None)
            self.daemon.store.delete(oid)

    def on_EnsureLocal(self, conn: rpc.Connection, request_id: int, msg: m.EnsureLocal) -> None:
        if self.daemon.store.contains(msg.object_id):
            conn.reply(request_id, m.Ok())
        else:
            conn.reply_error(request_id, "ObjectLostError", f"object {msg.object_id.hex()} is not on this node")

    # --- transfer ------------------------------------------------------------------------------
    def on_ReadChunk(self, conn: rpc.Connection, request_id: int, msg: m.ReadChunk) -> None:
        view = self.daemon.store.open(msg.object_id)
        if view is None:
            conn.reply_error(request_id, "ObjectLostError", f"object {msg.object_id.hex()} is not on this node")
            return
        total = len(view)
        conn.reply(request_id, m.Chunk(bytes(view[msg.offset: msg.offset + msg.length]), total))
        view.release()

    def on_PullObject(self, conn: rpc.Connection, request_id: int, msg: m.PullObject) -> None:
        asyncio.ensure_future(self._reply_pull(conn, request_id, msg))

    async def _reply_pull(self, conn: rpc.Connection, request_id: int, msg: m.PullObject) -> None:
        try:
            await self.pull(msg.object_id, msg.from_address)
            conn.reply(request_id, m.Ok())
        except rpc.RpcError as exc:
            conn.reply_error(request_id, exc.kind, exc.message)
        except Exception as exc:
            conn.reply_error(request_id, "ObjectLostError", f"pulling {msg.object_id.hex()} from {msg.from_address}: {exc}")

    async def pull(self, object_id: bytes, from_address: str) -> None:
        if self.daemon.store.contains(object_id):
            return
        fut = self._pulls.get(object_id)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._pulls[object_id] = fut
        try:
            await self._pull_chunks(object_id, from_address)
            fut.set_result(None)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            del self._pulls[object_id]

    async def _pull_chunks(self, object_id: bytes, from_address: str) -> None:
        peer = await self.daemon.peers.get(from_address)
        chunk = CONFIG.transfer_chunk_bytes
        first = await peer.request(m.ReadChunk(object_id, 0, chunk))
        total = first.total_bytes
        pending = self.daemon.store.create_for_write(object_id, total)
        try:
            pending.write_at(0, first.data)
            offsets = list(range(len(first.data), total, chunk))
            sem = asyncio.Semaphore(CONFIG.transfer_chunks_in_flight)

            async def fetch(off: int) -> None:
                async with sem:
                    reply = await peer.request(m.ReadChunk(object_id, off, chunk))
                    pending.write_at(off, reply.data)

            await asyncio.gather(*(fetch(o) for o in offsets))
            self.daemon.store.seal(object_id)
        except BaseException:
            self.daemon.store.abort(object_id)
            raise
        self.sizes[object_id] = total
