"""``Pool``: Python's ``multiprocessing.Pool`` API on ember actors (Ray's ``ray.util.multiprocessing``).

    from ember.util.multiprocessing import Pool
    with Pool() as pool:                 # one actor per CPU of the cluster
        print(pool.map(f, range(100)))

Each of the pool's "processes" is an actor (``_PoolActor``, 1 CPU) on any node of the cluster.
Work is cut into chunks as ``multiprocessing`` cuts it (``map``: about four chunks per
process unless ``chunksize`` says otherwise; ``imap``: ``chunksize=1``); a chunk goes to the
actor with the fewest chunks in flight, as one actor call (``run_batch``).  Calls to one actor
run in the order sent, so an actor works through its queue without waiting for the caller.
``maxtasksperchild=N`` retires an actor after N chunks: it ends once they are done, and a
fresh one (initializer run again) takes its place.
"""
from __future__ import annotations

import concurrent.futures
import threading
import traceback
from typing import Any, Callable, Iterable, Optional

from ember.util.multiprocessing.results import AsyncResult, IMapIterator, IMapUnorderedIterator

__all__ = ["Pool"]

# How run_batch calls the function on each item of a chunk.
_CALL, _STAR, _ARGS_KWARGS = 0, 1, 2
_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


class _PoolActor:
    """One of the pool's processes."""

    def __init__(self, initializer: Optional[Callable[..., Any]], initargs: tuple) -> None:
        if initializer is not None:
            initializer(*initargs)

    def ping(self) -> None:
        return None

    def run_batch(self, func: Callable[..., Any], batch: list, mode: int) -> tuple[Optional[list], Any]:
        out = []
        try:
            if mode == _CALL:
                out = [func(x) for x in batch]
            elif mode == _STAR:
                out = [func(*x) for x in batch]
            else:
                out = [func(*args, **kwds) for args, kwds in batch]
        except Exception as e:
            return None, (_picklable(e), traceback.format_exc())
        return out, None


def _picklable(error: Exception) -> Exception:
    import cloudpickle
    try:
        cloudpickle.loads(cloudpickle.dumps(error))
        return error
    except Exception:
        return Exception(f"{type(error).__name__}: {error} (the exception itself could not be pickled)")


class _Slot:
    """One actor and what the pool has sent it."""

    __slots__ = ("actor", "in_flight", "sent", "retired")

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.in_flight = 0
        self.sent = 0
        self.retired = False


class Pool:
    """A pool of ``processes`` actors (default: the cluster's CPU count) with
    ``multiprocessing.Pool``'s methods.  ``ray_remote_args`` are the actors' options
    (default ``{"num_cpus": 1}``); ``ray_address`` is used if ember is not initialized yet;
    ``context`` is accepted and ignored."""

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable[..., Any]] = None,
                 initargs: Optional[Iterable] = None, maxtasksperchild: Optional[int] = None,
                 context: Any = None, ray_address: Optional[str] = None,
                 ray_remote_args: Optional[dict] = None) -> None:
        from ember import api
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if not api.is_initialized():
            api.init(address=ray_address)
        self._remote_args = {"num_cpus": 1, **(ray_remote_args or {})}
        self._processes = self._count_processes(processes)
        self._initializer = initializer
        self._initargs = tuple(initargs or ())
        self._maxtasksperchild = maxtasksperchild
        self._lock = threading.Lock()
        self._state = _RUN
        self._pending: set[concurrent.futures.Future] = set()
        self._retired: list[Any] = []  # refs of the ends of retired actors
        self._old_slots: list[_Slot] = []
        self._actor_class = api.remote(_PoolActor).options(**self._remote_args)
        self._slots = [self._new_slot() for _ in range(self._processes)]

    def _count_processes(self, processes: Optional[int]) -> int:
        from ember import api
        cpus = int(api.cluster_resources().get("CPU", 0))
        if processes is None:
            return max(cpus, 1)
        if not isinstance(processes, int) or isinstance(processes, bool):
            raise TypeError(f"processes must be an int, got {type(processes).__name__}")
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if self._remote_args.get("num_cpus", 1) > 0 and processes * self._remote_args.get("num_cpus", 1) > cpus:
            raise ValueError(f"Tried to start a pool with {processes} processes on an existing ember cluster, "
                             f"but there are only {cpus} CPUs in the cluster.")
        return processes

    def _new_slot(self) -> _Slot:
        return _Slot(self._actor_class.remote(self._initializer, self._initargs))

    def __repr__(self) -> str:
        return f"<ember.util.multiprocessing.Pool state={self._state} pool_size={self._processes}>"

    # --- sending chunks -----------------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _submit(self, func: Callable[..., Any], batch: list, mode: int) -> concurrent.futures.Future:
        with self._lock:
            index = min(range(len(self._slots)), key=lambda i: self._slots[i].in_flight)
            slot = self._slots[index]
            ref = slot.actor.run_batch.remote(func, batch, mode)
            slot.in_flight += 1
            slot.sent += 1
            if self._maxtasksperchild is not None and slot.sent >= self._maxtasksperchild:
                self._retire(index)
        fut = ref.future()
        self._pending.add(fut)
        fut.add_done_callback(lambda f, slot=slot: self._chunk_done(f, slot))
        return fut

    def _chunk_done(self, fut: concurrent.futures.Future, slot: _Slot) -> None:
        with self._lock:
            slot.in_flight -= 1
            self._pending.discard(fut)
            if slot.retired and slot.in_flight == 0 and self._state != _TERMINATE:
                self._retired.append(slot.actor.__ray_terminate__.remote())

    def _retire(self, index: int) -> None:
        """The actor at ``index`` has had its share: a new one takes its place, and it ends once its
        chunks are done (not before: its exit must not race the replies of calls still in flight)."""
        self._slots[index].retired = True
        self._old_slots.append(self._slots[index])
        self._slots[index] = self._new_slot()

    def _chunks(self, func: Callable[..., Any], iterable: Iterable, chunksize: Optional[int], mode: int,
                default_chunksize: Optional[int] = None) -> list[concurrent.futures.Future]:
        self._check_running()
        if not callable(func):
            raise TypeError(f"func must be callable, got {type(func).__name__}")
        items = list(iterable)
        if chunksize is None:
            if default_chunksize is not None:
                chunksize = default_chunksize
            else:
                chunksize, extra = divmod(len(items), self._processes * 4)
                chunksize += 1 if extra else 0
        if not isinstance(chunksize, int) or (chunksize < 1 and items):
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        return [self._submit(func, items[i:i + chunksize], mode) for i in range(0, len(items), max(chunksize, 1))]

    # --- multiprocessing.Pool's methods ---------------------------------------------------------------
    def apply(self, func: Callable[..., Any], args: tuple = (), kwds: Optional[dict] = None) -> Any:
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., Any], args: tuple = (), kwds: Optional[dict] = None,
                    callback: Optional[Callable[[Any], Any]] = None,
                    error_callback: Optional[Callable[[BaseException], Any]] = None) -> AsyncResult:
        self._check_running()
        if not callable(func):
            raise TypeError(f"func must be callable, got {type(func).__name__}")
        fut = self._submit(func, [(tuple(args), dict(kwds or {}))], _ARGS_KWARGS)
        return AsyncResult([fut], True, callback, error_callback)

    def map(self, func: Callable[..., Any], iterable: Iterable, chunksize: Optional[int] = None) -> list:
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable[..., Any], iterable: Iterable, chunksize: Optional[int] = None,
                  callback: Optional[Callable[[Any], Any]] = None,
                  error_callback: Optional[Callable[[BaseException], Any]] = None) -> AsyncResult:
        return AsyncResult(self._chunks(func, iterable, chunksize, _CALL), False, callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable, chunksize: Optional[int] = None) -> list:
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable, chunksize: Optional[int] = None,
                      callback: Optional[Callable[[Any], Any]] = None,
                      error_callback: Optional[Callable[[BaseException], Any]] = None) -> AsyncResult:
        return AsyncResult(self._chunks(func, iterable, chunksize, _STAR), False, callback, error_callback)

    def imap(self, func: Callable[..., Any], iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        return IMapIterator(self._chunks(func, iterable, chunksize, _CALL, default_chunksize=1))

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable, chunksize: int = 1) -> IMapUnorderedIterator:
        return IMapUnorderedIterator(self._chunks(func, iterable, chunksize, _CALL, default_chunksize=1))

    # --- ending -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Accept no more work; what was sent still runs.  ``join()`` then waits for it."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self) -> None:
        """Stop at once: the actors are killed and unfinished work is lost."""
        from ember import api
        if self._state == _TERMINATE:
            return
        self._state = _TERMINATE
        for slot in self._slots + [old for old in self._old_slots if old.in_flight > 0]:
            try:
                api.kill(slot.actor)
            except Exception:
                pass

    def join(self) -> None:
        """Wait for the work sent before ``close()`` and for the actors to end."""
        from ember import api
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending)
        if self._state == _CLOSE:
            ends = [slot.actor.__ray_terminate__.remote() for slot in self._slots] + self._retired
            self._retired = []
            api.wait(ends, num_returns=len(ends), timeout=30)

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

