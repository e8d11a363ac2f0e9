"""The owner's task decisions, without I/O: retries and how many leases to ask for.

Rule 1: a system failure (the worker or its node died) is retried while attempts remain;
        an application error only when ``retry_exceptions`` allows it (True, or a list of
        exception classes the error's cause is an instance of).  ``max_retries = -1``
        retries forever.
Rule 3: tasks are pipelined to a leased worker (several pushed before the first answer)
        only once the key's tasks are known to be short, so that long tasks never queue
        behind each other on one worker while other workers could take them.
Rule 4: a task whose arguments lie mostly (by bytes, at least ``min_bytes``) in another
        node's store asks that node for its lease first (locality); it may still spill on.
Rule 2: a scheduling key asks for at most ``max_pending`` leases at once, and never for
        more than its backlog of unassigned tasks.
Rule 5: an argument value travels inside the task message only while it is small (at most
        ``max_each`` bytes) and the task's inlined bytes stay within ``max_total`` (Ray's
        ``task_rpc_inlined_bytes_limit``, 10 MiB); past that, arguments travel by reference
        and the executor fetches them.  A task message therefore stays bounded however many
        arguments it has.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

RetryExceptions = Union[bool, Sequence[type]]


def has_attempts_left(max_retries: int, attempt: int) -> bool:
    return max_retries < 0 or attempt < max_retries


def is_retryable_error(retry_exceptions: RetryExceptions, error: BaseException) -> bool:
    if retry_exceptions is True:
        return True
    if not retry_exceptions:
        return False
    cause: Any = getattr(error, "cause", error)
    classes = tuple(c for c in retry_exceptions if isinstance(c, type))  # type: ignore[union-attr]
    return isinstance(cause, classes) or isinstance(error, classes)


def should_retry(*, max_retries: int, attempt: int, is_system_failure: bool,
                 retry_exceptions: RetryExceptions, error: BaseException) -> bool:
    if not has_attempts_left(max_retries, attempt):
        return False
    return is_system_failure or is_retryable_error(retry_exceptions, error)


def lease_requests_to_send(backlog: int, pending_requests: int, max_pending: int) -> int:
    """How many more lease requests a scheduling key should send now (never negative)."""
    return max(0, min(backlog, max_pending) - pending_requests)


def pipeline_depth(mean_task_s: Optional[float], depth_max: int, short_task_s: float) -> int:
    """Tasks to keep in flight per leased worker: 1 until tasks are known to be short."""
    if mean_task_s is None or mean_task_s >= short_task_s:
        return 1
    return max(1, depth_max)


def moving_average(mean_s: Optional[float], sample_s: float, weight: float = 0.2) -> float:
    return sample_s if mean_s is None else mean_s + weight * (sample_s - mean_s)


def preferred_node(arg_locations: Sequence[tuple[str, int]], local_address: str, min_bytes: int) -> Optional[str]:
    """The node daemon to ask for a lease: where most argument bytes are, if not here."""
    by_node: dict[str, int] = {}
    for address, size in arg_locations:
        if address:
            by_node[address] = by_node.get(address, 0) + size
    if not by_node:
        return None
    best = max(sorted(by_node), key=lambda a: by_node[a])
    if best == local_address or by_node[best] < min_bytes:
        return None
    return best


def may_inline_arg(size_bytes: int, inlined_bytes: int, max_each_bytes: int, max_total_bytes: int) -> bool:
    """Rule 5: may an argument of ``size_bytes`` join the ``inlined_bytes`` already in the message?"""
    return size_bytes <= max_each_bytes and inlined_bytes + size_bytes <= max_total_bytes
