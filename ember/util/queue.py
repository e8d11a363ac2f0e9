"""A first-in first-out queue shared by tasks and actors (Ray's ``ray.util.queue``).

    from ember.util.queue import Queue, Empty, Full
    q = Queue(maxsize=100)
    consumer.remote(q)          # the Queue pickles: pass it to tasks and actors
    q.put(1); q.get(timeout=5)

The items live in one async actor (``_QueueActor``) that holds an ``asyncio.Queue``; every
method is one call to it, so many producers and consumers may use the queue at once.
Blocking calls wait inside the actor (other callers go on meanwhile).  The actor answers
with a status instead of raising, so ``Empty`` and ``Full`` are raised here, in the caller,
as plain ``queue.Empty``/``queue.Full`` subclasses.
"""
from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any, Optional

__all__ = ["Queue", "Empty", "Full"]

_OK, _EMPTY, _FULL = 0, 1, 2


class Empty(_stdlib_queue.Empty):
    """``get`` found nothing (Ray's ``ray.util.queue.Empty``)."""


class Full(_stdlib_queue.Full):
    """``put`` found no room (Ray's ``ray.util.queue.Full``)."""


class _QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    async def put(self, item: Any, timeout: Optional[float] = None) -> int:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return _FULL
        return _OK

    async def get(self, timeout: Optional[float] = None) -> tuple[int, Any]:
        try:
            return _OK, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return _EMPTY, None

    def put_nowait(self, item: Any) -> int:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return _FULL
        return _OK

    def put_nowait_batch(self, items: list) -> int:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            return _FULL
        for item in items:
            self.queue.put_nowait(item)
        return _OK

    def get_nowait(self) -> tuple[int, Any]:
        try:
            return _OK, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return _EMPTY, None

    def get_nowait_batch(self, num_items: int) -> tuple[int, Any]:
        if num_items > self.qsize():
            return _EMPTY, self.qsize()
        return _OK, [self.queue.get_nowait() for _ in range(num_items)]


def _check_timeout(timeout: Optional[float]) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A queue for tasks and actors.  ``maxsize <= 0`` means unbounded; ``actor_options`` are
    the ``.options()`` of the actor that holds the items (``num_cpus``, ``name``, ...)."""

    def __init__(self, maxsize: int = 0, actor_options: Optional[dict] = None) -> None:
        from ember import api
        actor_options = dict(actor_options or {})
        actor_options.setdefault("num_cpus", 0)
        self.maxsize = maxsize
        self.actor = api.remote(_QueueActor).options(**actor_options).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def _actor(self, what: str) -> Any:
        if self.actor is None:
            raise RuntimeError(f"Cannot call {what}() on a Queue that has been shut down.")
        return self.actor

    def _get(self, ref: Any) -> Any:
        from ember import api
        return api.get(ref)

    def size(self) -> int:
        """The number of items in the queue."""
        return self._get(self._actor("size").qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue."""
        return self.size()

    def empty(self) -> bool:
        return self.size() == 0

    def full(self) -> bool:
        return self.maxsize > 0 and self.size() >= self.maxsize

    # --- put ------------------------------------------------------------------------------------------
    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Add ``item``; with ``block`` wait for room (at most ``timeout`` seconds), else raise ``Full``."""
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        if self._get(self._actor("put").put.remote(item, timeout)) != _OK:
            raise Full
        return None

    async def put_async(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """``put`` for async code: awaits the actor instead of blocking the thread."""
        if not block:
            status = await self._actor("put_async").put_nowait.remote(item)
        else:
            _check_timeout(timeout)
            status = await self._actor("put_async").put.remote(item, timeout)
        if status != _OK:
            raise Full

    def put_nowait(self, item: Any) -> None:
        if self._get(self._actor("put_nowait").put_nowait.remote(item)) != _OK:
            raise Full

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add all ``items`` at once, or none of them (``Full``) if they do not all fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        items = list(items)
        if self._get(self._actor("put_nowait_batch").put_nowait_batch.remote(items)) != _OK:
            raise Full(f"Cannot add {len(items)} items to queue of size {self.size()} and maxsize {self.maxsize}.")

    # --- get ------------------------------------------------------------------------------------------
    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest item; with ``block`` wait for one (at most ``timeout``
        seconds), else raise ``Empty``."""
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        status, item = self._get(self._actor("get").get.remote(timeout))
        if status != _OK:
            raise Empty
        return item

    async def get_async(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """``get`` for async code."""
        if not block:
            status, item = await self._actor("get_async").get_nowait.remote()
        else:
            _check_timeout(timeout)
            status, item = await self._actor("get_async").get.remote(timeout)
        if status != _OK:
            raise Empty
        return item

    def get_nowait(self) -> Any:
        status, item = self._get(self._actor("get_nowait").get_nowait.remote())
        if status != _OK:
            raise Empty
        return item

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return ``num_items`` items, or none of them (``Empty``) if there are fewer."""
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        status, items = self._get(self._actor("get_nowait_batch").get_nowait_batch.remote(num_items))
        if status != _OK:
            raise Empty(f"Cannot get {num_items} items from queue of size {items}.")
        return items

    # --- end ------------------------------------------------------------------------------------------
    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor: at once with ``force``, else after the calls already sent to it
        (killed if they take more than ``grace_period_s``).  The queue is unusable afterwards."""
        if self.actor is None:
            return
        from ember import api
        actor, self.actor = self.actor, None
        if force:
            api.kill(actor, no_restart=True)
            return
        done = actor.__ray_terminate__.remote()
        ready, _ = api.wait([done], timeout=grace_period_s)
        if not ready:
            api.kill(actor, no_restart=True)
