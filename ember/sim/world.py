"""The virtual clock and the event heap: (time, sequence) order, a seeded Random, a trace.

Everything that happens in a run is an event popped from one heap.  Ties at the same instant
are broken by the sequence number the event got when it was scheduled, so a run depends on
nothing but its seed (no set order, no ``id()``, no wall clock).  After every event the
world calls its ``after_event`` hook (the invariant checker).
"""
from __future__ import annotations

import heapq
import random
from collections import deque
from typing import Any, Callable, Optional


class InvariantBroken(AssertionError):
    """A cluster invariant failed: the message names it; the world holds the trace."""


class World:
    def __init__(self, seed: int, trace_max: int = 400) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.events_run = 0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._seq = 0
        self.trace: deque[tuple[float, str]] = deque(maxlen=trace_max)  # notable events, for the report
        self.after_event: Optional[Callable[[], None]] = None
        self.stopped = False

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.now), self._seq, fn, args))

    def after(self, delay_s: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + delay_s, fn, *args)

    def note(self, text: str) -> None:
        self.trace.append((self.now, text))

    def run(self, until_s: float, max_events: int, done: Callable[[], bool]) -> None:
        heap = self._heap
        pop = heapq.heappop
        check = self.after_event
        while heap and not self.stopped:
            t, _, fn, args = pop(heap)
            if t > until_s:
                heapq.heappush(heap, (t, 0, fn, args))
                break
            self.now = t
            fn(*args)
            self.events_run += 1
            if check is not None:
                check()
            if self.events_run >= max_events or (self.events_run & 1023 == 0 and done()):
                break

    def pending(self) -> int:
        return len(self._heap)
