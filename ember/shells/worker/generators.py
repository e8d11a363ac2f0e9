"""Streaming generators: tasks that ``yield``, and the ``ObjectRefGenerator`` their caller iterates.

Executor side (``stream_items``, on the worker's main thread): each yielded value is stored as
a return object (inline, or in the node's store when large) and sent to the owner as a
``GeneratorItem`` request; the owner's reply is the item's acknowledgement.  Without
backpressure the producer never waits for acknowledgements until it finishes (then it waits
for all of them, so every item reaches the owner before the task's own reply); with a
threshold it waits for each one, and the owner holds them back while the consumer is behind
(``ember.logic.owner.generators``, Rule 2).

Owner side (``GeneratorManager``, one per core worker): keeps each stream's items as owned
objects (an ``ObjectRef`` per item, held until handed out), wakes the consumers, releases held
acknowledgements as items are consumed, and ends the stream when the task ends (its error, if
any, becomes the last item).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from typing import Any, Iterator, Optional

from ember import exceptions as exc
from ember.config import CONFIG
from ember.logic.owner import generators as g
from ember.object_ref import ObjectRef
from ember.protocol import messages as m
from ember.shells.shared import serialization
from ember.shells.wire import rpc

_SENDS_IN_FLIGHT_MAX = 1024   # unacknowledged items a producer without backpressure may have
_NONE_BYTES = serialization.serialize(None).to_bytes()


# --- owner side ------------------------------------------------------------------------------------------
class _Stream:
    __slots__ = ("task_id", "state", "refs", "acks", "cond", "async_waiters", "done_id")

    def __init__(self, task_id: bytes, threshold: Optional[int]) -> None:
        self.task_id = task_id
        self.state = g.GeneratorStream(threshold)
        self.refs: dict[int, ObjectRef] = {}
        self.acks: dict[int, tuple[rpc.Connection, int]] = {}   # held acknowledgements by index
        self.cond = threading.Condition()
        self.async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.done_id = task_id + b"\x00\x00\x00\x00"   # return index 0: "the task finished"


class GeneratorManager:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.streams: dict[bytes, _Stream] = {}
        cw.handlers[m.GeneratorItem] = self._on_item

    # any thread
    def register(self, task_id: bytes, wire_num_returns: int) -> ObjectRef:
        """A new stream; returns the ref that completes with the task (``completed()``)."""
        st = _Stream(task_id, g.backpressure_of(wire_num_returns))
        self.streams[task_id] = st
        self.cw.store.add_pending(st.done_id, True)
        return ObjectRef(st.done_id, self.cw.address)

    # I/O thread ----------------------------------------------------------------------------------
    def _on_item(self, conn: rpc.Connection, request_id: int, msg: m.GeneratorItem) -> None:
        st = self.streams.get(msg.task_id)
        if st is None:   # the consumer is gone (or the stream ended): drop the value
            self._discard(msg.item)
            conn.reply(request_id, m.Ok())
            return
        with st.cond:
            is_new, may_ack = st.state.item_arrived(msg.index)
            if is_new:
                self._keep(st, msg)
            if not may_ack:
                st.acks[msg.index] = (conn, request_id)
            self._wake(st)
        if may_ack:
            conn.reply(request_id, m.Ok())

    def _keep(self, st: _Stream, msg: m.GeneratorItem) -> None:
        ret = msg.item
        store = self.cw.store
        store.add_pending(ret.object_id, True)
        st.refs[msg.index] = ObjectRef(ret.object_id, self.cw.address)
        store.complete(ret.object_id, data=ret.data, node_id=ret.node_id, node_address=ret.node_address,
                       size=ret.size_bytes)
        if ret.contained_refs:
            self.cw.refs.returns_arrived(msg.worker_address, msg.task_id, [ret])

    def _discard(self, ret: m.ReturnObject) -> None:
        if ret.node_address and self.cw.store.get(ret.object_id) is None:
            self.cw._send_free(ret.node_address, ret.object_id)

    def _wake(self, st: _Stream) -> None:
        st.cond.notify_all()
        waiters, st.async_waiters = st.async_waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_set_done, fut)

    def finish(self, task_id: bytes, error: Optional[BaseException]) -> None:
        """The task ended (I/O thread): Rule 3."""
        done_id = task_id + b"\x00\x00\x00\x00"
        if error is None:
            self.cw.store.complete(done_id, data=_NONE_BYTES, size=len(_NONE_BYTES))
        else:
            self.cw.store.complete(done_id, error=error)
        st = self.streams.get(task_id)
        if st is None:
            return
        with st.cond:
            index = st.state.finish(error is not None)
            if index is not None:
                oid = task_id + index.to_bytes(4, "little")
                self.cw.store.add_pending(oid, True)
                st.refs[index] = ObjectRef(oid, self.cw.address)
                self.cw.store.complete(oid, error=error)
            self._wake(st)

    def items_of(self, task_id: bytes) -> list[ObjectRef]:
        """Every item of a finished stream, in order (a dynamic task's return value); ends the stream."""
        st = self.streams.pop(task_id, None)
        if st is None:
            return []
        with st.cond:
            return [st.refs[i] for i in sorted(st.refs)]

    def _release(self, st: _Stream, indices: list[int]) -> None:
        for i in indices:
            held = st.acks.pop(i, None)
            if held is not None:
                held[0].reply(held[1], m.Ok())

    # consumer threads --------------------------------------------------------------------------------
    def next_ref(self, task_id: bytes, timeout_s: Optional[float]) -> ObjectRef:
        """The next item's ref, waiting for it; StopIteration at the end."""
        st = self.streams.get(task_id)
        if st is None:
            raise StopIteration
        with st.cond:
            if not st.cond.wait_for(lambda: st.state.has_item() or st.state.is_finished, timeout_s):
                raise exc.GetTimeoutError(f"the generator's next item was not ready within {timeout_s}s")
            return self._take(st)

    def _take(self, st: _Stream) -> ObjectRef:
        if not st.state.has_item():
            self.streams.pop(st.task_id, None)
            raise StopIteration
        index, released = st.state.take()
        ref = st.refs.pop(index)
        if released:
            self.cw.post(self._release, st, released)
        if st.state.is_exhausted():
            self.streams.pop(st.task_id, None)
        return ref

    async def next_ref_async(self, task_id: bytes) -> ObjectRef:
        st = self.streams.get(task_id)
        if st is None:
            raise StopAsyncIteration
        while True:
            with st.cond:
                if st.state.has_item() or st.state.is_finished:
                    try:
                        return self._take(st)
                    except StopIteration:
                        raise StopAsyncIteration from None
                fut = asyncio.get_running_loop().create_future()
                st.async_waiters.append((asyncio.get_running_loop(), fut))
            await fut

    def is_ready(self, task_id: bytes) -> bool:
        st = self.streams.get(task_id)
        return st is None or st.state.has_item() or st.state.is_finished

    def is_finished(self, task_id: bytes) -> bool:
        st = self.streams.get(task_id)
        return st is None or st.state.is_exhausted()

    def drop(self, task_id: bytes) -> None:
        """The consumer dropped its generator (Rule 4): free the items, release the producer."""
        st = self.streams.pop(task_id, None)
        if st is None:
            return
        with st.cond:
            released = st.state.drop()
            st.refs.clear()
        if released and not self.cw.is_shutdown:
            self.cw.post(self._release, st, released)


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class ObjectRefGenerator:
    """What ``f.remote()`` returns for a generator task: an iterator of ``ObjectRef``s, one per yielded
    value, each available as soon as the task yields it (Ray's ``ObjectRefGenerator``)."""

    def __init__(self, cw: Any, task_id: bytes, completed_ref: ObjectRef) -> None:
        self._cw = cw
        self._task_id = task_id
        self._completed = completed_ref

    def __iter__(self) -> "ObjectRefGenerator":
        return self

    def __next__(self) -> ObjectRef:
        return self._cw.generators.next_ref(self._task_id, None)

    def _next_sync(self, timeout_s: Optional[float] = None) -> ObjectRef:
        return self._cw.generators.next_ref(self._task_id, timeout_s)

    def __aiter__(self) -> "ObjectRefGenerator":
        return self

    async def __anext__(self) -> ObjectRef:
        return await self._cw.generators.next_ref_async(self._task_id)

    def next_ready(self) -> bool:
        """True when the next ``next()`` would not block."""
        return self._cw.generators.is_ready(self._task_id)

    def is_finished(self) -> bool:
        return self._cw.generators.is_finished(self._task_id)

    def completed(self) -> ObjectRef:
        """A ref that is ready when the task has finished (its value is None; it raises the task's error)."""
        return self._completed

    def task_id(self) -> bytes:
        return self._task_id

    def __reduce__(self) -> Any:
        raise TypeError("An ObjectRefGenerator cannot be passed to another task or actor yet; "
                        "pass the ObjectRefs it yields instead.")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"

    def __del__(self) -> None:
        try:
            if not self._cw.is_shutdown:
                self._cw.generators.drop(self._task_id)
        except Exception:
            pass


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task: the refs of the values it yielded, in order."""

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


# --- executor side ----------------------------------------------------------------------------------------
def stream_items(executor: Any, spec: m.TaskSpec, result: Any) -> m.TaskDone:
    """Run a generator task's body, sending each value to the owner; the task's final reply."""
    wait_each = g.backpressure_of(spec.num_returns) is not None
    first = g.first_item_index(spec.num_returns)
    in_flight: list[concurrent.futures.Future] = []
    if not (inspect.isgenerator(result) or inspect.isasyncgen(result)):
        raise TypeError(f"Task {spec.name} has num_returns='streaming' but returned a {type(result).__name__}, "
                        "not a generator")
    index = 0
    try:
        for value in _values(result):
            index += 1
            fut = _send_item(executor, spec, index, first, value, wait_borrows=True)
            if wait_each:
                fut.result()
            else:
                in_flight.append(fut)
                if len(in_flight) >= _SENDS_IN_FLIGHT_MAX:
                    _wait_all(in_flight)
    finally:  # every item sent reaches the owner before the task's reply, also when the generator raised
        _wait_all(in_flight)
    return m.TaskDone([], None, False)


async def stream_items_async(executor: Any, spec: m.TaskSpec, result: Any) -> m.TaskDone:
    """``stream_items`` for an async actor's generator method, on the actor's event loop."""
    if not inspect.isasyncgen(result):   # a sync generator method of an async actor
        return await asyncio.get_running_loop().run_in_executor(None, stream_items, executor, spec, result)
    wait_each = g.backpressure_of(spec.num_returns) is not None
    first = g.first_item_index(spec.num_returns)
    in_flight: list[asyncio.Future] = []
    index = 0
    try:
        async for value in result:
            index += 1
            fut = asyncio.wrap_future(_send_item(executor, spec, index, first, value, wait_borrows=False))
            if wait_each:
                await fut
            else:
                in_flight.append(fut)
                if len(in_flight) >= _SENDS_IN_FLIGHT_MAX:
                    await asyncio.gather(*in_flight)
                    in_flight.clear()
    finally:
        if in_flight:
            await asyncio.gather(*in_flight)
    return m.TaskDone([], None, False)


def _send_item(executor: Any, spec: m.TaskSpec, index: int, first: int, value: Any, *,
               wait_borrows: bool) -> concurrent.futures.Future:
    """Store value ``index`` as a return object and send it to the owner; the send's future.
    Refs inside the value stay alive until the owner has counted them (``wait_borrows``: also
    wait until this process's own borrows of them are registered; an event loop cannot block)."""
    cw = executor.cw
    lent: list = []
    ret = executor.return_object(spec, index + first - 1, value, lent)
    if lent:
        cw.refs.hold_for_caller(spec.task_id, spec.owner_address, lent)
        if wait_borrows:
            cw.refs.wait_borrows_registered()
    item = m.GeneratorItem(spec.task_id, spec.attempt, index, ret, cw.address)
    return asyncio.run_coroutine_threadsafe(_send(cw, spec.owner_address, item), cw.loop)


def _values(result: Any) -> Iterator[Any]:
    if inspect.isgenerator(result):
        yield from result
        return
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(result.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


async def _send(cw: Any, owner_address: str, item: m.GeneratorItem) -> None:
    try:
        conn = await cw.peers.get(owner_address)
        await conn.request(item)
    except (OSError, rpc.ConnectionLost) as e:
        raise exc.OwnerDiedError(item.item.object_id.hex(), owner_address, str(e)) from None


def _wait_all(futs: list[concurrent.futures.Future]) -> None:
    timeout_s = max(CONFIG.connect_timeout_s, 60.0)
    for f in futs:
        f.result(timeout_s)
    futs.clear()
