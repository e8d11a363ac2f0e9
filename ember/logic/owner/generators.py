"""The owner's view of one streaming generator task, without I/O.

A generator task (``num_returns="streaming"``) reports each value it yields as item 1, 2, ...
to its owner while it runs; the caller's ``ObjectRefGenerator`` hands the items out in order.

Rule 1: items are handed out in index order, whatever order they arrive in (the
        producer's sends may overtake each other); an item whose index was already received
        is a duplicate (a retried attempt yields from 1 again) and is dropped, so the
        consumer never sees a value twice.
Rule 2: backpressure.  With a threshold N > 0 the producer waits for each item's
        acknowledgement before yielding the next, and item i is acknowledged only once
        i - consumed <= N: the producer runs at most N items ahead of the consumer.
        Without a threshold (None or -1) every item is acknowledged on arrival.
Rule 3: the stream ends when the task ends.  A task that failed (after its retries) adds one
        last item that carries the error, so the error surfaces at the iteration where the
        generator broke, as Ray's does; after that the consumer's next call stops.
Rule 4: a consumer that drops the generator releases every held acknowledgement, so the
        producer is never left waiting for a reader that is gone.
"""
from __future__ import annotations

from typing import Optional


class GeneratorStream:
    __slots__ = ("threshold", "received", "early", "consumed", "is_finished", "held_acks")

    def __init__(self, threshold: Optional[int]) -> None:
        self.threshold = threshold if threshold is not None and threshold > 0 else None
        self.received = 0          # items 1..received have arrived
        self.early: set[int] = set()  # items past received+1 that arrived before it
        self.consumed = 0          # items 1..consumed were handed to the consumer
        self.is_finished = False
        self.held_acks: list[int] = []  # indices whose acknowledgement waits for the consumer

    def item_arrived(self, index: int) -> tuple[bool, bool]:
        """Rule 1 and 2: (is the item new, may it be acknowledged now)."""
        is_new = index > self.received and index not in self.early and not self.is_finished
        if is_new:
            self.early.add(index)
            while self.received + 1 in self.early:
                self.received += 1
                self.early.discard(self.received)
        if self.may_ack(index):
            return is_new, True
        self.held_acks.append(index)
        return is_new, False

    def may_ack(self, index: int) -> bool:
        return self.threshold is None or index - self.consumed <= self.threshold

    def has_item(self) -> bool:
        return self.consumed < self.received

    def take(self) -> tuple[int, list[int]]:
        """The next item's index, and the held acknowledgements this releases (Rule 2)."""
        if not self.has_item():
            raise ValueError("no item to take")
        self.consumed += 1
        released = [i for i in self.held_acks if self.may_ack(i)]
        if released:
            self.held_acks = [i for i in self.held_acks if i not in released]
        return self.consumed, released

    def finish(self, has_error: bool) -> Optional[int]:
        """Rule 3: the task ended; the index of the error item to add, if any."""
        if self.is_finished:
            return None
        self.is_finished = True
        self.early.clear()   # cannot happen once every sent item was acknowledged; never handed out
        if has_error:
            self.received += 1
            return self.received
        return None

    def drop(self) -> list[int]:
        """Rule 4: the consumer is gone; every held acknowledgement is released."""
        released, self.held_acks = self.held_acks, []
        self.threshold = None
        return released

    def is_exhausted(self) -> bool:
        return self.is_finished and not self.has_item()

    def check_invariants(self) -> None:
        assert 0 <= self.consumed <= self.received, (self.consumed, self.received)
        assert all(i > self.received + 1 for i in self.early)
        assert all(i <= self.received for i in self.held_acks)


# --- how a generator task's kind travels in TaskSpec.num_returns (a plain int on the wire) ---------
# n >= 0: an ordinary task with n returns.  -1: streaming.  -2: dynamic (Ray's older
# num_returns="dynamic": one return whose value lists the items).  n <= -3: streaming with a
# backpressure threshold of -n - 2 items.
STREAMING = -1
DYNAMIC = -2


def num_returns_on_wire(num_returns: object, backpressure: Optional[int]) -> int:
    if num_returns == "dynamic":
        return DYNAMIC
    if num_returns == "streaming":
        if backpressure is not None and backpressure > 0:
            return -backpressure - 2
        return STREAMING
    assert isinstance(num_returns, int) and num_returns >= 0, num_returns
    return num_returns


def is_generator(wire_num_returns: int) -> bool:
    return wire_num_returns < 0


def backpressure_of(wire_num_returns: int) -> Optional[int]:
    return -wire_num_returns - 2 if wire_num_returns <= -3 else None


def first_item_index(wire_num_returns: int) -> int:
    """The return index of item 1: a dynamic task's return 1 is the list itself."""
    return 2 if wire_num_returns == DYNAMIC else 1
