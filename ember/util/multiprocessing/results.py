"""What ``Pool``'s asynchronous calls hand back: ``AsyncResult`` and the ``imap`` iterators.

Each is fed by the done-callbacks of the futures of its chunks (``ObjectRef.future()``), so no
thread polls.  A chunk's value is ``(results, None)`` or ``(None, (exception, remote traceback))``
(see ``_PoolActor.run_batch``); a failure of ember itself (the actor died) arrives as the
future's exception.  Errors are re-raised in the caller as ``multiprocessing.Pool`` raises them:
the task's own exception, its remote traceback attached as ``__cause__``.
"""
from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from multiprocessing import TimeoutError
from multiprocessing.pool import RemoteTraceback
from typing import Any, Callable, Optional

log = logging.getLogger("ember.util.multiprocessing")


def chunk_outcome(fut: concurrent.futures.Future) -> tuple[Optional[list], Optional[BaseException]]:
    """(results, None) or (None, the exception to raise in the caller) for one finished chunk."""
    try:
        results, failure = fut.result()
    except BaseException as err:  # ember's own failure: the pool's actor died, a value did not pickle...
        return None, err
    if failure is None:
        return results, None
    error, tb = failure
    if tb:
        error.__cause__ = RemoteTraceback(tb)
    return None, error


def _call_quietly(fn: Optional[Callable[[Any], Any]], arg: Any) -> None:
    if fn is None:
        return
    try:
        fn(arg)
    except Exception:
        log.exception("a Pool callback raised")


class AsyncResult:
    """The result of ``apply_async``/``map_async``/``starmap_async`` (multiprocessing's ``AsyncResult``)."""

    def __init__(self, futures: list[concurrent.futures.Future], single: bool,
                 callback: Optional[Callable[[Any], Any]] = None,
                 error_callback: Optional[Callable[[BaseException], Any]] = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._chunks: list[Optional[list]] = [None] * len(futures)
        self._left = len(futures)
        self._value: Any = None
        self._error: Optional[BaseException] = None
        if not futures:
            self._finish([], None)
        for i, fut in enumerate(futures):
            fut.add_done_callback(lambda f, i=i: self._on_chunk(i, f))

    def _on_chunk(self, index: int, fut: concurrent.futures.Future) -> None:
        results, error = chunk_outcome(fut)
        with self._lock:
            if self._event.is_set() or self._left == 0:
                return
            if error is None:
                self._chunks[index] = results
                self._left -= 1
                if self._left:
                    return
                value = self._chunks[0][0] if self._single else [x for c in self._chunks for x in c]  # type: ignore
            else:
                self._left = 0
                value = None
        self._finish(value, error)

    def _finish(self, value: Any, error: Optional[BaseException]) -> None:
        self._value, self._error = value, error
        self._chunks = []
        if error is None:
            _call_quietly(self._callback, value)
        else:
            _call_quietly(self._error_callback, error)
        self._event.set()

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: Optional[float] = None) -> None:
        self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value


# multiprocessing names it ApplyResult too.
ApplyResult = AsyncResult
MapResult = AsyncResult


class IMapIterator:
    """Results of ``imap`` in order; ``next(timeout)`` raises ``multiprocessing.TimeoutError``."""

    def __init__(self, futures: list[concurrent.futures.Future]) -> None:
        self._futures = futures
        self._next_chunk = 0
        self._buffer: list = []

    def __iter__(self) -> "IMapIterator":
        return self

    def next(self, timeout: Optional[float] = None) -> Any:
        while not self._buffer:
            if self._next_chunk >= len(self._futures):
                raise StopIteration
            fut = self._futures[self._next_chunk]
            concurrent.futures.wait([fut], timeout)
            if not fut.done():
                raise TimeoutError
            self._futures[self._next_chunk] = None  # type: ignore[call-overload]
            self._next_chunk += 1
            results, error = chunk_outcome(fut)
            if error is not None:
                raise error
            self._buffer = list(reversed(results or []))
        return self._buffer.pop()

    __next__ = next


class IMapUnorderedIterator:
    """Results of ``imap_unordered``, chunk by chunk as they finish."""

    def __init__(self, futures: list[concurrent.futures.Future]) -> None:
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._left = len(futures)
        self._buffer: list = []
        for fut in futures:
            fut.add_done_callback(self._done.put)

    def __iter__(self) -> "IMapUnorderedIterator":
        return self

    def next(self, timeout: Optional[float] = None) -> Any:
        while not self._buffer:
            if self._left == 0:
                raise StopIteration
            try:
                fut = self._done.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError from None
            self._left -= 1
            results, error = chunk_outcome(fut)
            if error is not None:
                raise error
            self._buffer = list(reversed(results or []))
        return self._buffer.pop()

    __next__ = next
