"""The shell around this process's ReferenceTable: ObjectRef hooks in, frees and borrower
messages out.  See docs/reference_counting.md ("The shell's contract").

Threads.  ``hook`` runs on any thread (``ObjectRef.__init__``/``__del__``, unpickling) and
only appends to a deque.  Everything else runs on the core worker's I/O thread, which
drains the deque in order: every 100 ms (the core worker's timer), at once when a
foreign ref was unpickled here, when ``write_to_shm`` has stored ``_DRAIN_AFTER_BYTES``
since the last drain, and before any peer message about references is handled (so a
borrower's AddBorrower never finds an object whose local add is still queued).
Executing threads call two blocking helpers, ``hold_for_caller`` and
``wait_borrows_registered``, before their task's reply leaves.

Ack ordering.  A process that unpickled a foreign ref sends AddBorrower (a request) to
the owner.  Anything that could let a lender release that ref waits for the acks:
a task's reply (``wait_borrows_registered``), this process's own RemoveBorrower
messages and ReturnRefsStored (``_after_acks``).  Refs inside a task's returns are
held by the executor (``hold_for_caller``) until the caller has registered them
(``returns_arrived``) and says so with ReturnRefsStored.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Any, Callable, Iterable, Optional

from ember.logic.owner import references as r
from ember.object_ref import ObjectRef
from ember.protocol import messages as m
from ember.shells.wire import rpc

log = logging.getLogger("ember.ref_counting")

# Drain at once after this many bytes went into a store since the last drain, so a loop
# of large puts frees what it dropped long before the 100 ms timer.
_DRAIN_AFTER_BYTES = 8 * 1024 * 1024
# A task's reply waits at most this long for owners to acknowledge its borrows (an owner
# that neither answers nor drops the connection must not hang the worker forever).
_ACK_WAIT_MAX_S = 30.0
_BORROWERS_KEY = "ember.borrowers"   # conn.state: addresses that registered borrows on it
_CALLER_KEY = "ember.lent_to"        # conn.state: the caller whose death drops our holds

_Op = tuple[str, bytes, Any]


class RefCounting:
    """Owns the ReferenceTable of one core worker and carries out its effects."""

    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.table = r.ReferenceTable()
        self._ops: collections.deque[_Op] = collections.deque()
        self._drain_scheduled = False
        self._stored_bytes = 0
        self._borrow_lock = threading.Lock()
        self._borrows_issued = 0      # foreign refs unpickled here (any thread)
        self._borrows_settled = 0     # issued count a finished barrier covered
        self._pending_acks: set[asyncio.Future[Any]] = set()
        self._lent: dict[bytes, tuple[str, list[ObjectRef]]] = {}  # task id -> (caller, refs)
        self._frees: dict[str, list[bytes]] = {}  # node daemon address -> object ids to free
        cw.handlers[m.AddBorrower] = self._on_add_borrower
        cw.handlers[m.RemoveBorrower] = self._on_remove_borrower
        cw.handlers[m.ReturnRefsStored] = self._on_return_refs_stored
        cw.connection_lost_hooks.append(self._on_connection_lost)

    # --- any thread -------------------------------------------------------------------------
    def hook(self, op: str, ref: ObjectRef) -> None:
        """The ObjectRef hook: "add", "drop", "deserialized"."""
        self._ops.append((op, ref._id, ref._owner))
        if op == "deserialized" and ref._owner and ref._owner != self.cw.address:
            with self._borrow_lock:
                self._borrows_issued += 1
            self._drain_soon()

    def object_contains(self, object_id: bytes, refs: list[ObjectRef]) -> None:
        """An owned object's value holds ``refs`` (call after its ObjectRef exists and while
        ``refs`` are alive)."""
        self._ops.append(("contains", object_id, tuple(ref._id for ref in refs)))

    def note_stored(self, size_bytes: int) -> None:
        self._stored_bytes += size_bytes
        if self._stored_bytes >= _DRAIN_AFTER_BYTES:
            self._stored_bytes = 0
            self._drain_soon()

    def _drain_soon(self) -> None:
        if not self._drain_scheduled and not self.cw.is_shutdown:
            self._drain_scheduled = True
            try:
                self.cw.loop.call_soon_threadsafe(self._drain_now)
            except RuntimeError:  # the loop closed during shutdown
                pass

    # --- executing threads (blocking) ---------------------------------------------------------
    def hold_for_caller(self, task_id: bytes, caller_address: str, refs: list[ObjectRef]) -> None:
        """Keep the refs found in a task's return values alive until the caller sends
        ReturnRefsStored (or dies)."""
        entry = self._lent.get(task_id)
        if entry is None:
            self._lent[task_id] = (caller_address, list(refs))
            self.cw.post(self._watch_caller, caller_address)
        else:
            entry[1].extend(refs)

    def wait_borrows_registered(self) -> None:
        """Block until every foreign ref unpickled so far is acknowledged by its owner.
        Costs one comparison when nothing was unpickled since the last call."""
        issued = self._borrows_issued
        if issued == self._borrows_settled:
            return
        self.cw.run_sync(self._settle(issued))

    async def _settle(self, issued: int) -> None:
        self.drain()
        waits = list(self._pending_acks)
        if waits:
            _, late = await asyncio.wait(waits, timeout=_ACK_WAIT_MAX_S)
            if late:
                log.warning("%d AddBorrower request(s) unanswered after %ss; replying anyway",
                            len(late), _ACK_WAIT_MAX_S)
        if issued > self._borrows_settled:
            self._borrows_settled = issued

    # --- I/O thread: the queue ------------------------------------------------------------------
    def _drain_now(self) -> None:
        self._drain_scheduled = False
        self.drain()

    def drain(self) -> None:
        """Apply queued hook calls in order; carry out what they decide."""
        ops = self._ops
        if not ops:
            return
        self._stored_bytes = 0
        while ops:
            try:
                self._drain_ops(ops)
            except r.ReferenceCountingError:  # a caller bug: log it, keep counting the rest
                log.exception("reference counting: a queued ref operation was refused")
        self._flush_frees()

    def _drain_ops(self, ops: collections.deque[_Op]) -> None:
        """The hot loop (one add and one drop per task or put): locals, no per-op calls
        beyond the table's fast paths."""
        table = self.table
        add_ref, drop_local, popleft = table.add_ref, table.drop_local, ops.popleft
        store_pop, mapped = self.cw.store.pop, self.cw._mapped
        released, slow = r.DROP_RELEASED, r.DROP_SLOW
        lineage_released = self.cw.recovery.object_released
        me = self.cw.address
        now = time.monotonic()
        while ops:
            op, object_id, arg = popleft()
            if op == "add":
                add_ref(object_id, arg, arg == me)
            elif op == "drop":
                done = drop_local(object_id)
                if done == released:  # inlined _free()
                    e = store_pop(object_id)
                    if e is not None and e.data is None:
                        if e.is_owned:   # stored or pending: its lineage may go (recovery.py)
                            lineage_released(object_id)
                        if e.node_address:
                            mapped.pop(object_id, None)
                            if e.is_owned:
                                self._free_stored(e.node_address, object_id)
                elif done == slow:
                    self._apply(table.handle(r.RefDropped(object_id), now))
                    if object_id not in table:
                        self._forget(object_id)
            elif op == "deserialized":
                if arg and arg != me and object_id in table:
                    self._apply(table.handle(r.BorrowedRefReceived(object_id, arg), now))
            elif op == "contains":
                inner = tuple(i for i in arg if i != object_id and i in table)
                if inner and object_id in table:
                    table.handle(r.ObjectContainsRefs(object_id, inner), now)

    # --- I/O thread: effects ----------------------------------------------------------------------
    def _apply(self, effects: list[r.ReferenceEffect]) -> None:
        for effect in effects:
            kind = type(effect)
            if kind is r.FreeObject:
                self._free(effect.object_id)
            elif kind is r.NotifyOwnerBorrowing:
                self._announce(effect.owner, effect.object_id)
            elif kind is r.NotifyOwnerReleased:
                self._forget(effect.object_id)
                self._after_acks(self._send_remove, effect.owner, effect.object_id)
            else:  # ReleaseLineage / RecoverObject: no lineage or locations are fed yet
                log.debug("reference counting: ignored %r", effect)

    def _free(self, object_id: bytes) -> None:
        """A released object: drop its value or cached copy here and, when this process owns
        it, its file in its node's store."""
        e = self.cw.store.pop(object_id)
        if e is not None and e.is_owned and e.data is None:
            self.cw.recovery.object_released(object_id)
        if e is not None and e.node_address:  # inline values are never mapped
            self.cw._mapped.pop(object_id, None)
            if e.is_owned:
                self._free_stored(e.node_address, object_id)

    def _free_stored(self, node_address: str, object_id: bytes) -> None:
        """Free the primary copy, and the copy this node may have pulled to read it."""
        frees = self._frees
        frees.setdefault(node_address, []).append(object_id)
        if node_address != self.cw.node_address:
            frees.setdefault(self.cw.node_address, []).append(object_id)

    def _forget(self, object_id: bytes) -> None:
        """A borrowed object released here: drop the cached value or status."""
        e = self.cw.store.get(object_id)
        if e is not None and not e.is_owned:
            self.cw.store.pop(object_id)
            self.cw._mapped.pop(object_id, None)

    def free_on_node(self, node_address: str, object_ids: list[bytes]) -> None:
        self._frees.setdefault(node_address, []).extend(object_ids)
        self._flush_frees()

    def _flush_frees(self) -> None:
        if not self._frees:
            return
        frees, self._frees = self._frees, {}
        cw = self.cw
        for node_address, object_ids in frees.items():
            if node_address == cw.node_address:
                conn: Optional[rpc.Connection] = cw.raylet
            else:
                conn = cw.peers.get_nowait(node_address)
                if conn is None:
                    cw.loop.create_task(self._send_free_later(node_address, object_ids))
                    continue
            if conn is not None and not conn.closed:
                conn.send(m.FreeObjects(object_ids))

    async def _send_free_later(self, node_address: str, object_ids: list[bytes]) -> None:
        try:
            conn = await self.cw.peers.get(node_address)
            conn.send(m.FreeObjects(object_ids))
        except (OSError, rpc.ConnectionLost, TimeoutError) as e:
            log.info("could not free %d object(s) on %s: %s", len(object_ids), node_address, e)

    # --- I/O thread: borrower side ------------------------------------------------------------
    def _announce(self, owner: str, object_id: bytes) -> None:
        msg = m.AddBorrower(object_id, self.cw.address)
        conn = self.cw.peers.get_nowait(owner)
        fut: asyncio.Future[Any]
        if conn is not None:
            try:
                fut = conn.request_future(msg)
            except rpc.ConnectionLost:
                return  # the owner is gone: get() will say OwnerDiedError
        else:
            fut = asyncio.ensure_future(self._announce_connecting(owner, msg))
        self._pending_acks.add(fut)
        fut.add_done_callback(self._ack_done)

    async def _announce_connecting(self, owner: str, msg: m.AddBorrower) -> Any:
        conn = await self.cw.peers.get(owner)
        return await conn.request(msg)

    def _ack_done(self, fut: asyncio.Future[Any]) -> None:
        self._pending_acks.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.info("AddBorrower not acknowledged: %s", fut.exception())

    def _after_acks(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn once every AddBorrower sent so far is acknowledged (or failed)."""
        waits = list(self._pending_acks)
        if not waits:
            fn(*args)
            return
        remaining = [len(waits)]

        def one_done(_fut: asyncio.Future[Any]) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                fn(*args)

        for fut in waits:
            fut.add_done_callback(one_done)

    def _send_remove(self, owner: str, object_id: bytes) -> None:
        conn = self.cw.peers.get_nowait(owner)
        if conn is not None:  # else the connection closed: the owner dropped us already
            conn.send(m.RemoveBorrower(object_id, self.cw.address))

    # --- I/O thread: owner side -------------------------------------------------------------------
    def _on_add_borrower(self, conn: rpc.Connection, request_id: int, msg: m.AddBorrower) -> None:
        self.drain()
        conn.state.setdefault(_BORROWERS_KEY, set()).add(msg.borrower_address)
        self._apply(self.table.handle(r.BorrowerAdded(msg.object_id, msg.borrower_address),
                                      time.monotonic()))
        conn.reply(request_id, m.Ok())

    def _on_remove_borrower(self, conn: rpc.Connection, request_id: int, msg: m.RemoveBorrower) -> None:
        self.drain()
        self._apply(self.table.handle(r.BorrowerRemoved(msg.object_id, msg.borrower_address),
                                      time.monotonic()))
        self._flush_frees()

    def _on_connection_lost(self, conn: rpc.Connection) -> None:
        borrowers: Optional[set[str]] = conn.state.get(_BORROWERS_KEY)
        if borrowers and not self.cw.is_shutdown:
            self.drain()
            now = time.monotonic()
            for address in sorted(borrowers):
                self._apply(self.table.handle(r.BorrowerDied(address), now))
            self._flush_frees()
        caller = conn.state.get(_CALLER_KEY)
        if caller:
            self._drop_holds_for(caller)

    # --- I/O thread: refs inside task returns -------------------------------------------------------
    def returns_arrived(self, worker_address: str, task_id: bytes, returns: Iterable[m.ReturnObject]) -> None:
        """The caller's side: count the refs inside returned values (held by the return
        object, announced to their owners), then tell the executor it may let go."""
        self.drain()
        table = self.table
        me = self.cw.address
        now = time.monotonic()
        temporary: list[bytes] = []
        for ret in returns:
            if not ret.contained_refs:
                continue
            inner: list[bytes] = []
            for object_id, owner in ret.contained_refs:
                try:
                    if not table.add_local(object_id):
                        table.handle(r.RefAdded(object_id, owner, owner == me), now)
                except r.ReferenceCountingError:
                    log.exception("reference counting: ref %s in a return", object_id.hex())
                    continue
                temporary.append(object_id)
                if owner != me:
                    self._apply(table.handle(r.BorrowedRefReceived(object_id, owner), now))
                if object_id != ret.object_id:
                    inner.append(object_id)
            if inner and ret.object_id in table:
                table.handle(r.ObjectContainsRefs(ret.object_id, tuple(inner)), now)
        for object_id in temporary:
            done = table.drop_local(object_id)
            if done == r.DROP_RELEASED:
                self._free(object_id)
            elif done == r.DROP_SLOW:
                self._apply(table.handle(r.RefDropped(object_id), now))
                if object_id not in table:
                    self._forget(object_id)
        self._flush_frees()
        self._after_acks(self._send_refs_stored, worker_address, task_id)

    def _send_refs_stored(self, worker_address: str, task_id: bytes) -> None:
        conn = self.cw.peers.get_nowait(worker_address)
        if conn is not None:
            conn.send(m.ReturnRefsStored(task_id))
        else:
            self.cw.loop.create_task(self._send_refs_stored_connecting(worker_address, task_id))

    async def _send_refs_stored_connecting(self, worker_address: str, task_id: bytes) -> None:
        try:
            (await self.cw.peers.get(worker_address)).send(m.ReturnRefsStored(task_id))
        except (OSError, rpc.ConnectionLost, TimeoutError):
            pass  # the executor died: its holds died with it

    def _on_return_refs_stored(self, conn: rpc.Connection, request_id: int, msg: m.ReturnRefsStored) -> None:
        self._lent.pop(msg.task_id, None)  # the ObjectRefs die here; their drops follow

    def _watch_caller(self, caller_address: str) -> None:
        """Make sure a closed connection tells us when the caller we hold refs for dies."""
        conn = self.cw.peers.get_nowait(caller_address)
        if conn is not None:
            conn.state[_CALLER_KEY] = caller_address
            return
        self.cw.loop.create_task(self._watch_caller_connecting(caller_address))

    async def _watch_caller_connecting(self, caller_address: str) -> None:
        try:
            conn = await self.cw.peers.get(caller_address)
        except (OSError, rpc.ConnectionLost, TimeoutError):
            self._drop_holds_for(caller_address)
            return
        conn.state[_CALLER_KEY] = caller_address
        if conn.closed:
            self._drop_holds_for(caller_address)

    def _drop_holds_for(self, caller_address: str) -> None:
        for task_id in [t for t, (caller, _) in list(self._lent.items()) if caller == caller_address]:
            self._lent.pop(task_id, None)

    # --- introspection ----------------------------------------------------------------------------------
    def held_for_callers(self) -> int:
        """How many tasks' return refs this executor still holds (tests, `ember memory`)."""
        return len(self._lent)
