"""The node daemon's pulls of remote objects: the shell of ``logic/node/pull_manager.py``.

A pull: the ``PullManager`` admits it (store capacity, priority, one pull per object);
the primary copy's node daemon is asked where to read (``LocateObject``: its
``SourceDirectory`` answers the least-loaded holders and the size); the store's table
grants the room (``ObjectTable``: evicts secondary copies or spills primaries); stripe
workers in threads fetch chunks from the holders straight into the allocation
(``transfer_client``); the copy is sealed and the primary's node told it is a new source
(``TransferDone``).  A failed attempt aborts its allocation (nothing half-written is ever
sealed) and the manager retries with a fresh answer from the directory, which has dropped
the holders that failed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, Optional

from ember.config import CONFIG
from ember.logic.node import object_table as T
from ember.logic.node import pull_manager as P
from ember.protocol import messages as m
from ember.shells.node.transfer_client import FetchJob, TransferClient
from ember.shells.node.store_errors import StoreError
from ember.shells.node.transfer_server import TransferServer
from ember.shells.wire import addresses, rpc

log = logging.getLogger("ember.transfer")

__all__ = ["PullService"]

_STRIPE_THREADS = 64


class PullService:
    def __init__(self, objects: Any) -> None:
        self.objects = objects
        self.daemon = objects.daemon
        self.store = objects.store
        self.manager = P.PullManager(max(1, objects.capacity_bytes))
        self.server: Optional[TransferServer] = None
        self.client: Optional[TransferClient] = None
        self.directory = P.SourceDirectory("")
        self.endpoint = ""
        self._pool = concurrent.futures.ThreadPoolExecutor(_STRIPE_THREADS, "ember-transfer")
        # objects of one chunk: a few threads keep the cores busy; more only trade the GIL
        self._small_pool = concurrent.futures.ThreadPoolExecutor(8, "ember-transfer-small")
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._copy_nodes: dict[bytes, set[str]] = {}
        self._endpoints: dict[str, str] = {}  # node daemon address -> its transfer endpoint
        self._endpoint_waits: dict[str, asyncio.Future[str]] = {}  # node daemons holding copies of our primaries
        self.pulled_bytes = 0

    def start(self, host: str, token: bytes) -> None:
        self._loop = asyncio.get_running_loop()
        self.server = TransferServer(host, token, self.store, self.objects.spill_dir, self._served)
        self.server.start()
        self.client = TransferClient(token)
        self.endpoint = f"{addresses.advertised_host(host)}:{self.server.port}"
        self.directory = P.SourceDirectory(self.endpoint)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.client is not None:
            self.client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._small_pool.shutdown(wait=False, cancel_futures=True)

    def _served(self, object_id: bytes, nbytes: int) -> None:  # a serving thread
        if self._loop is not None and nbytes and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.objects.note_access, object_id)

    # --- the directory (objects whose primary is here) ----------------------------------
    def on_LocateObject(self, conn: rpc.Connection, request_id: int, msg: m.LocateObject) -> None:
        size = self.objects.table.size_of(msg.object_id)
        if size is None or self.objects.table.state_of(msg.object_id) is T.ObjectState.CREATING:
            conn.reply_error(request_id, "ObjectLostError",
                             f"object {msg.object_id.hex()} is not on the node at {self.daemon.address}")
            return
        sources = self.directory.locate(msg.object_id, msg.requester, CONFIG.transfer_sources_max)
        conn.reply(request_id, m.ObjectSources(size, sources, self.endpoint))

    def on_TransferDone(self, conn: rpc.Connection, request_id: int, msg: m.TransferDone) -> None:
        self.directory.transfer_done(msg.object_id, msg.requester, list(msg.sources), list(msg.failed),
                                     msg.is_copy_added)
        if msg.is_copy_added and msg.requester_address and self.objects.table.state_of(msg.object_id) is not None:
            self._copy_nodes.setdefault(msg.object_id, set()).add(msg.requester_address)

    def forget(self, object_ids: list[bytes]) -> None:
        """The owner freed these objects: forget their sources and free their copies on
        other nodes, so those nodes pool the files (the next pull there writes into pages
        that exist) instead of keeping dead copies until room is needed."""
        by_node: dict[str, list[bytes]] = {}
        for object_id in object_ids:
            self.directory.forget(object_id)
            for address in sorted(self._copy_nodes.pop(object_id, ())):
                by_node.setdefault(address, []).append(object_id)
        for address, oids in by_node.items():
            self.objects.spawn(self._free_copies(address, oids))

    async def _free_copies(self, address: str, object_ids: list[bytes]) -> None:
        try:
            peer = await self.daemon.peers.get(address)
            peer.send(m.FreeObjects(object_ids))
        except (OSError, rpc.ConnectionLost) as exc:
            log.info("could not free copies on %s: %s", address, exc)

    # --- pulling ------------------------------------------------------------------------
    async def pull(self, object_id: bytes, from_address: str, size_bytes: int,
                   priority: P.PullPriority = P.PullPriority.GET) -> None:
        """Return once a copy of the object is in this node's store (StoreError if not)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(object_id, []).append(fut)
        self._feed(P.PullRequested(object_id, max(0, size_bytes), (from_address,), priority, "pull"))
        await fut

    def _feed(self, event: Any) -> None:
        self.manager.budget_bytes = max(1, self.objects.capacity_bytes)
        for effect in self.manager.handle(event, time.monotonic()):
            if isinstance(effect, P.StartPull):
                self.objects.spawn(self._attempt(effect))
            elif isinstance(effect, P.PullDone):
                self._wake(effect.object_id, effect.error, effect.kind)

    def _wake(self, object_id: bytes, error: str, kind: str = P.LOST) -> None:
        """Wake the waiters; a failed pull keeps its kind (a lost copy, or one that cannot fit
        here), so readers rebuild only objects that are really lost."""
        for fut in self._waiters.pop(object_id, []):
            if fut.done():
                continue
            if error:
                fut.set_exception(StoreError(kind, f"pulling {object_id.hex()}: {error}"))
                fut.exception()
            else:
                fut.set_result(None)

    async def _attempt(self, start: P.StartPull) -> None:
        object_id, directory_address = start.object_id, start.sources[0]
        is_small = start.attempt == 1 and 0 < start.size_bytes <= CONFIG.transfer_chunk_bytes
        endpoint = self._endpoints.get(directory_address)
        learning = self._endpoint_waits.get(directory_address)
        if is_small and not endpoint and learning is not None:
            endpoint = await asyncio.shield(learning)  # another pull is asking that node now
        peer: Optional[rpc.Connection] = None
        if is_small and endpoint:
            total, sources = start.size_bytes, [endpoint]  # small: read the primary, no directory
        else:
            if directory_address not in self._endpoints and directory_address not in self._endpoint_waits:
                learning = asyncio.get_running_loop().create_future()
                self._endpoint_waits[directory_address] = learning
            try:
                peer = await self.daemon.peers.get(directory_address)
                where = await peer.request(m.LocateObject(object_id, self.endpoint))
            except rpc.RpcError as err:
                self._learned(directory_address, "")
                kind = P.LOST if err.kind in (P.LOST, "NodeExiting") else err.kind
                return self._feed(P.PullFailed(object_id, (), err.message, is_final=True, kind=kind))
            except (OSError, rpc.ConnectionLost) as exc:
                self._learned(directory_address, "")
                return self._feed(P.PullFailed(object_id, (directory_address,), f"{directory_address}: {exc}"))
            self._learned(directory_address, where.primary)
            total, sources = where.total_bytes, list(where.sources)
        try:
            failed = await self._transfer(object_id, total, sources)
        except Exception as exc:  # the store refused the room, or a local I/O error
            kind = getattr(exc, "kind", type(exc).__name__)
            self._report(peer, object_id, sources, [], False)
            return self._feed(P.PullFailed(object_id, (), f"{kind}: {getattr(exc, 'message', exc)}",
                                           is_final=True, kind=kind))
        self._report(peer, object_id, sources, list(failed or {}), failed is None)
        if failed is None:
            self._feed(P.PullSucceeded(object_id, "sealed"))
        else:
            reasons = "; ".join(f"{k}: {v}" for k, v in failed.items()) or "no holder left"
            self._feed(P.PullFailed(object_id, (), f"every holder failed ({reasons})"))

    def node_died(self, address: str) -> None:
        """The node daemon at ``address`` was declared dead: abort transfers from its endpoint now."""
        endpoint = self._endpoints.get(address)
        if endpoint and self.client is not None:
            self.client.abort(endpoint)

    def _learned(self, address: str, endpoint: str) -> None:
        """The transfer endpoint of the node daemon at ``address`` ("" when it did not answer)."""
        if endpoint:
            self._endpoints[address] = endpoint
        waiting = self._endpoint_waits.pop(address, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(endpoint)

    def _report(self, peer: Optional[rpc.Connection], object_id: bytes, sources: list[str], failed: list[str],
                is_copy_added: bool) -> None:
        """Tell the directory that charged these sources (a located pull) how it ended."""
        if peer is not None and not peer.closed:
            peer.send(m.TransferDone(object_id, self.endpoint, sources, failed, is_copy_added, self.daemon.address))

    async def _transfer(self, object_id: bytes, total: int, sources: list[str]) -> Optional[dict[str, str]]:
        """Fetch the object into a new allocation: None when sealed here, else the failed
        sources and why (the allocation is freed)."""
        objects = self.objects
        recycled_name = await objects.reserve(object_id, total)
        if recycled_name is None:
            await objects.ensure_local(object_id)  # a local writer made it meanwhile
            return None
        loop = asyncio.get_running_loop()
        started_s = time.monotonic()
        try:  # file creation, mapping, a one-chunk fetch and its seal: one hop to a thread
            pool = self._small_pool if total <= CONFIG.transfer_chunk_bytes else self._pool
            job = await loop.run_in_executor(pool, self._open_and_fetch, object_id, total,
                                             recycled_name, sources[0])
            if not job.is_sealed:
                await self._run_stripes(job, sources)
                if not job.is_complete:
                    raise _Incomplete(job.failed)
                self.store.seal(object_id)
        except BaseException as exc:
            self.store.abort(object_id)
            objects.feed(T.ObjectCreateAborted(object_id, objects.cause("pull-failed")))
            if isinstance(exc, _Incomplete):
                return exc.failed
            raise
        self.pulled_bytes += total
        if total > CONFIG.transfer_chunk_bytes:
            log.info("pulled %s: %d bytes from %d holder(s) in %.3f s into %s", object_id.hex(), total,
                     len(sources), time.monotonic() - started_s, "a pooled file" if recycled_name else "a new file")
        objects.feed(T.ObjectSealed(object_id, objects.cause("pulled")))
        if objects.table.state_of(object_id) is None:
            self.store.delete(object_id)  # freed while it was arriving
        return None

    def _open_and_fetch(self, object_id: bytes, total: int, recycled_name: str, source: str) -> FetchJob:
        """A transfer thread: create the allocation and map it (page tables filled up front:
        no fault per page); fetch and seal an object of one chunk at once."""
        pending = self.store.create_for_write(object_id, total, recycled_name)
        is_small = total <= CONFIG.transfer_chunk_bytes
        if not recycled_name and self.client is not None and not self.client.is_tls:
            # fresh pages: splice into the file (no fault per page of a mapping)
            job = FetchJob(object_id, None, total, CONFIG.transfer_chunk_bytes, fd=pending.fd)
        else:  # pages that exist (a pooled file), or TLS: receive into a populated mapping
            pending.is_populated = not is_small
            job = FetchJob(object_id, pending.buffer, total, CONFIG.transfer_chunk_bytes)
        if is_small:
            assert self.client is not None
            self.client.run_stripe(job, source, 1)
            if job.is_complete:
                self.store.seal(object_id)
                job.is_sealed = True
        return job

    async def _run_stripes(self, job: FetchJob, sources: list[str]) -> None:
        loop = asyncio.get_running_loop()
        live = list(sources)
        chunks = -(-job.total // max(1, CONFIG.transfer_chunk_bytes))
        while not job.is_complete and live:
            workers = max(1, min(CONFIG.transfer_connections_max, chunks))
            per_source = max(1, workers // len(live))
            assert self.client is not None
            await asyncio.gather(*(loop.run_in_executor(self._pool, self.client.run_stripe, job, source,
                                                        CONFIG.transfer_chunks_in_flight)
                                   for source in live for _ in range(per_source)))
            live = [s for s in live if s not in job.failed]


class _Incomplete(Exception):
    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__("incomplete transfer")
        self.failed = dict(failed)
