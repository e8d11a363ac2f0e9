"""``multiprocessing.Pool``'s API on ember actors (Ray's ``ray.util.multiprocessing``)."""
from multiprocessing import TimeoutError

from ember.util.multiprocessing.pool import Pool
from ember.util.multiprocessing.results import AsyncResult, IMapIterator, IMapUnorderedIterator

__all__ = ["AsyncResult", "IMapIterator", "IMapUnorderedIterator", "Pool", "TimeoutError"]
