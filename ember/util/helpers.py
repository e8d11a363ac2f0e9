"""``as_completed`` and ``map_unordered`` (Ray's ``ray.util.helpers``), written on ``wait``/``get``.

    for value in ember.util.as_completed(refs, chunk_size=2): ...
    for value in ember.util.map_unordered(f, items, backpressure_size=100): ...

Both wait for ``chunk_size`` results at a time (``ember.wait(num_returns=chunk_size)``) and
yield them in the order ``wait`` lists them; there is no promise on the overall order.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Sequence

from ember.object_ref import ObjectRef

__all__ = ["as_completed", "map_unordered"]

DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _one_batch(refs: list[ObjectRef], chunk_size: int, yield_obj_refs: bool,
               wait_kwargs: dict[str, Any]) -> tuple[list[Any], list[ObjectRef]]:
    from ember import api
    ready, rest = api.wait(refs, num_returns=min(chunk_size, len(refs)), **wait_kwargs)
    return (ready if yield_obj_refs else api.get(ready)), rest


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")


def as_completed(refs: Sequence[ObjectRef], *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 yield_obj_refs: bool = False, **kwargs: Any) -> Iterator[Any]:
    """Yield the values of ``refs`` (or the refs themselves with ``yield_obj_refs=True``) as
    batches of ``chunk_size`` become ready.  ``kwargs`` go to ``ember.wait`` (``timeout``,
    ``fetch_local``)."""
    _check_chunk_size(chunk_size)
    if isinstance(refs, ObjectRef) or not isinstance(refs, (list, tuple)):
        raise TypeError(f"as_completed() expected a list of ObjectRefs, got {type(refs).__name__}")
    pending = list(refs)
    while pending:
        batch, pending = _one_batch(pending, chunk_size, yield_obj_refs, kwargs)
        yield from batch


def map_unordered(fn: Any, items: Iterable[Any], *, backpressure_size: Optional[int] = DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False, **kwargs: Any) -> Iterator[Any]:
    """``fn.remote(item)`` for every item, yielding results as they complete.  At most
    ``backpressure_size`` tasks are in flight (None: no limit); ``kwargs`` go to ``ember.wait``."""
    _check_chunk_size(chunk_size)
    if not hasattr(fn, "remote"):
        raise TypeError(f"map_unordered() takes a remote function (decorated with @ember.remote), "
                        f"got {type(fn).__name__}")
    if backpressure_size is not None and (not isinstance(backpressure_size, int) or backpressure_size < 1):
        raise ValueError("`backpressure_size` must be >= 1 or None")
    pending: list[ObjectRef] = []
    for item in items:
        pending.append(fn.remote(item))
        if backpressure_size is not None and len(pending) >= backpressure_size:
            batch, pending = _one_batch(pending, chunk_size, yield_obj_refs, kwargs)
            yield from batch
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs, **kwargs)
