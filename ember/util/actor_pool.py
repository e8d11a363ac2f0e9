"""ActorPool: spread work over a fixed set of actors (Ray's ``ray.util.ActorPool``).

Written only against the public API (``ember.get``/``ember.wait`` and actor handles).
A submitted job runs on an idle actor at once, or waits in ``pending`` until one is
returned to the pool (when its result is taken with ``get_next*``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

import ember

__all__ = ["ActorPool"]

_TIMEOUT_MESSAGE = "Timed out waiting for result"


def _key(future: Any) -> Any:
    return tuple(future) if isinstance(future, list) else future


class ActorPool:
    """``ActorPool([a1, a2])``; ``pool.map(lambda a, v: a.f.remote(v), values)``."""

    def __init__(self, actors: list) -> None:
        self._idle_actors = list(actors)
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}   # result ref(s) -> (job index, actor)
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list[tuple[Callable[[Any, Any], Any], Any]] = []

    # --- bulk ---------------------------------------------------------------------------------
    def _drain_earlier_results(self) -> None:
        while self.has_next():
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass

    def map(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Results of ``fn(actor, v)`` for every value, in the order of ``values``."""
        self._drain_earlier_results()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Like ``map`` but yields each result as soon as it is ready."""
        self._drain_earlier_results()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    # --- one at a time ------------------------------------------------------------------------------
    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Run ``fn(actor, value)`` (which must return the ref(s) of an actor call) on an
        idle actor, or once one is free."""
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        future = fn(actor, value)
        self._future_to_actor[_key(future)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    def has_next(self) -> bool:
        """Whether any submitted job has a result left to get."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: Optional[float] = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order.  On timeout: TimeoutError; with
        ``ignore_if_timedout=True`` that job is dropped as well."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        timed_out = False
        if timeout is not None:
            ready, _ = ember.wait(list(future) if isinstance(future, list) else [future],
                                  num_returns=len(future) if isinstance(future, list) else 1, timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MESSAGE)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        self._return_actor(actor)
        if timed_out:
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. The task {future} has been ignored.")
        return ember.get(future)

    def get_next_unordered(self, timeout: Optional[float] = None, ignore_if_timedout: bool = False) -> Any:
        """Any next ready result (the order in which jobs finish)."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        singles = [k for k in self._future_to_actor if not isinstance(k, tuple)]
        firsts = {k[0]: k for k in self._future_to_actor if isinstance(k, tuple)}
        ready, _ = ember.wait(singles + list(firsts), num_returns=1, timeout=timeout)
        if not ready:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MESSAGE)
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. No task has been ignored.")
        key = firsts.get(ready[0], ready[0])
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        self._return_actor(actor)
        return ember.get(future)

    # --- the actors ----------------------------------------------------------------------------------------
    def _return_actor(self, actor: Any) -> None:
        self._idle_actors.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.pop(0))

    def has_free(self) -> bool:
        """Whether an actor is idle and no submitted job is waiting for one."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Optional[Any]:
        """Take an idle actor out of the pool (None if none is free)."""
        return self._idle_actors.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it may start a waiting job at once)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
