"""The tasks of one scheduling key and the worker leases serving them (no I/O).

Rule 1: a task goes to a usable lease with room (in-flight below the pipelining depth);
        leases are filled in the order they were granted.
Rule 2: the key asks for more leases only while tasks wait unassigned (task_policy Rule 2).
Rule 3: a lease with nothing in flight while no task waits is idle: the shell returns it
        after a linger.
Rule 4: the pipelining depth follows the moving average of push-to-reply times
        (task_policy Rule 3).

Tasks and leases are opaque to this class (any hashable objects); the shell keeps their
sockets and timers.  Every method is an event (past tense) or a decision (``next_*``,
``idle_leases``, ``lease_requests_wanted``).
"""
from __future__ import annotations

import collections
from typing import Generic, Hashable, Optional, TypeVar

from ember.logic.owner import task_policy

T = TypeVar("T")
L = TypeVar("L", bound=Hashable)


class KeyQueue(Generic[T, L]):
    def __init__(self, *, depth_max: int, short_task_s: float, pending_max: int) -> None:
        self.depth_max = depth_max
        self.short_task_s = short_task_s
        self.pending_max = pending_max
        self.queue: collections.deque[T] = collections.deque()
        self.in_flight: dict[L, int] = {}          # usable leases, in grant order
        self.pending_requests = 0
        self.mean_task_s: Optional[float] = None

    # --- events ---------------------------------------------------------------------------
    def task_added(self, task: T, *, front: bool = False) -> None:
        if front:
            self.queue.appendleft(task)
        else:
            self.queue.append(task)

    def task_removed(self, task: T) -> bool:
        try:
            self.queue.remove(task)
        except ValueError:
            return False
        return True

    def leases_requested(self, count: int) -> None:
        self.pending_requests += count

    def lease_request_ended(self) -> None:
        """A lease request was answered with a grant, or gave up."""
        if self.pending_requests <= 0:
            raise AssertionError("lease request ended with none pending")
        self.pending_requests -= 1

    def lease_ready(self, lease: L) -> None:
        self.in_flight.setdefault(lease, 0)

    def lease_gone(self, lease: L) -> None:
        """Returned, or its worker died; tasks still on it are the shell's to retry."""
        self.in_flight.pop(lease, None)

    def task_answered(self, lease: L, elapsed_s: float) -> None:
        if lease in self.in_flight:
            self.in_flight[lease] -= 1
        self.mean_task_s = task_policy.moving_average(self.mean_task_s, elapsed_s)

    # --- decisions ------------------------------------------------------------------------
    def depth(self) -> int:
        return task_policy.pipeline_depth(self.mean_task_s, self.depth_max, self.short_task_s)

    def next_pushes(self) -> list[tuple[L, T]]:
        """Assign waiting tasks to leases with room (and count them as in flight)."""
        pushes: list[tuple[L, T]] = []
        if not self.queue:
            return pushes
        depth = self.depth()
        for lease, n in self.in_flight.items():
            while self.queue and n < depth:
                pushes.append((lease, self.queue.popleft()))
                n += 1
            self.in_flight[lease] = n
            if not self.queue:
                break
        return pushes

    def push_failed(self, lease: L, task: T) -> None:
        """A push could not be sent: the task waits again at the front, the lease is gone."""
        self.queue.appendleft(task)
        self.lease_gone(lease)

    def lease_requests_wanted(self) -> int:
        return task_policy.lease_requests_to_send(len(self.queue), self.pending_requests, self.pending_max)

    def idle_leases(self) -> list[L]:
        if self.queue:
            return []
        return [lease for lease, n in self.in_flight.items() if n == 0]

    def check_invariants(self) -> None:
        assert self.pending_requests >= 0, "negative pending lease requests"
        assert all(n >= 0 for n in self.in_flight.values()), "negative in-flight count"
        if self.queue:
            depth = self.depth()
            assert all(n >= depth for n in self.in_flight.values()), "a lease with room while tasks wait"
