"""Which pulls of remote objects run now, which wait, and where each reads from.  Pure.

``PullManager`` (one per node daemon, as Ray's pull manager):

Rule 1 (dedupe): one pull per object; later requests for it join it (and raise its
priority if theirs is higher).
Rule 2 (priority): requests wait in order of (priority, arrival): arguments of tasks
about to run (``TASK_ARG``) before ``get`` prefetches (``GET``).
Rule 3 (admission): a pull starts only if the bytes of pulls in flight plus its size fit
in ``budget_bytes`` (the store's capacity); the rest queue, head of line first.  When no
pull is in flight the head starts anyway, so an object that fits in the store is never
stuck behind nothing; one larger than the whole store fails at once, with the sizes.
Rule 4 (retry): a pull whose sources all failed (a holder died mid-transfer, an evicted
copy) is started again from sources it has not tried yet, up to ``attempts_max`` times;
then its waiters get the error.  Every failure carries an error ``kind``: ``LOST`` (no
reachable holder has a copy: the reader may rebuild the object from lineage) or another
kind (``STORE_FULL``: it cannot fit here; ...), which readers surface as is.  The shell frees the partial allocation of every failed
attempt: nothing is sealed half-written.

States of a pull: QUEUED -1-> ACTIVE -2-> (gone: done or failed)
                  ACTIVE -3-> ACTIVE (retry from untried sources)

``SourceDirectory`` (one per node daemon, for the objects whose primary copy it holds):
every node that completes a copy becomes a source; ``locate`` hands a puller the
least-loaded holders (active transfers they serve), so a broadcast to N nodes spreads
over the copies as they appear instead of all reading the primary.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

from ember.logic.effects import Effect
from ember.logic.fsm import TransitionLog

LOST = "ObjectLostError"              # no reachable holder has the copy (readers may rebuild it)
STORE_FULL = "ObjectStoreFullError"   # this node's store cannot hold it (never a loss)

__all__ = ["LOST", "STORE_FULL", "PullPriority", "PullState", "PullRequested", "PullSucceeded", "PullFailed", "BudgetChanged",
           "StartPull", "PullDone", "PullManager", "SourceDirectory", "least_loaded"]

ObjectId = bytes


class PullPriority(enum.IntEnum):
    TASK_ARG = 0
    GET = 1


class PullState(enum.Enum):
    QUEUED = 1
    ACTIVE = 2
    DONE = 3


# --- events -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PullRequested:
    object_id: ObjectId
    size_bytes: int
    sources: tuple[str, ...]
    priority: PullPriority
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class PullSucceeded:
    object_id: ObjectId
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class PullFailed:
    """Every source of the attempt failed (``failed_sources``), or the pull cannot go on
    (``is_final``: the store refused the room, the object is gone everywhere); ``kind``:
    the error kind its waiters get if it ends the pull."""
    object_id: ObjectId
    failed_sources: tuple[str, ...]
    reason: str
    is_final: bool = False
    more_sources: tuple[str, ...] = ()
    cause_id: str = ""
    kind: str = LOST


@dataclass(frozen=True, slots=True)
class BudgetChanged:
    budget_bytes: int
    cause_id: str = ""


# --- effects ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StartPull(Effect):
    object_id: ObjectId
    size_bytes: int
    sources: tuple[str, ...]
    attempt: int
    cause_id: str = ""


@dataclass(frozen=True, slots=True)
class PullDone(Effect):
    """Wake the waiters of the object: ``error`` "" when it is here; else ``kind`` says
    whether the copy is gone (``LOST``) or the pull failed for another reason."""
    object_id: ObjectId
    error: str
    cause_id: str = ""
    kind: str = LOST


@dataclass
class _Pull:
    object_id: ObjectId
    size_bytes: int
    priority: PullPriority
    seq: int
    sources: list[str]
    state: PullState = PullState.QUEUED
    attempt: int = 0
    tried: set[str] = field(default_factory=set)


class PullManager:
    def __init__(self, budget_bytes: int, attempts_max: int = 3, log_max: int = 10_000) -> None:
        if budget_bytes <= 0 or attempts_max <= 0:
            raise ValueError("budget_bytes and attempts_max must be positive")
        self.budget_bytes = budget_bytes
        self.attempts_max = attempts_max
        self._pulls: dict[ObjectId, _Pull] = {}
        self._seq = 0
        self._active_bytes = 0
        self._num_active = 0
        self._log = TransitionLog(log_max)

    # --- queries ----------------------------------------------------------------------
    @property
    def active_bytes(self) -> int:
        return self._active_bytes

    @property
    def num_active(self) -> int:
        return self._num_active

    @property
    def num_queued(self) -> int:
        return len(self._pulls) - self._num_active

    def state_of(self, object_id: ObjectId) -> Optional[PullState]:
        pull = self._pulls.get(object_id)
        return None if pull is None else pull.state

    def story(self, object_id: ObjectId) -> list:
        return self._log.story(object_id)

    def check_invariants(self) -> None:
        for oid, pull in self._pulls.items():
            assert pull.object_id == oid
            assert pull.state is not PullState.DONE, "finished pulls are forgotten"
            assert pull.state is PullState.QUEUED or pull.attempt >= 1
            assert pull.attempt <= self.attempts_max
        active = [p for p in self._pulls.values() if p.state is PullState.ACTIVE]
        assert self._num_active == len(active)
        assert self._active_bytes == sum(p.size_bytes for p in active)
        if self.num_active > 1:
            assert self.active_bytes <= self.budget_bytes, "admitted past the budget"

    # --- events -----------------------------------------------------------------------
    def handle(self, event: object, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if isinstance(event, PullRequested):
            self._on_requested(event, now, effects)
        elif isinstance(event, PullSucceeded):
            self._finish(event.object_id, "", event.cause_id, now, effects)
        elif isinstance(event, PullFailed):
            self._on_failed(event, now, effects)
        elif isinstance(event, BudgetChanged):
            self.budget_bytes = max(1, event.budget_bytes)
        else:
            raise TypeError(f"PullManager cannot handle {event!r}")
        self._admit(now, effects)
        return effects

    def _on_requested(self, ev: PullRequested, now: float, effects: list[Effect]) -> None:
        pull = self._pulls.get(ev.object_id)
        if pull is not None:  # rule 1
            pull.priority = min(pull.priority, ev.priority)
            pull.sources.extend(s for s in ev.sources if s not in pull.sources)
            self._log.record(ev.object_id, pull.state, pull.state, ev.cause_id, at_s=now, note="joined")
            return
        if ev.size_bytes > self.budget_bytes:  # rule 3
            effects.append(PullDone(ev.object_id, f"the object ({ev.size_bytes} bytes) is larger than this "
                                                  f"node's object store ({self.budget_bytes} bytes)",
                                    ev.cause_id, STORE_FULL))
            return
        if not ev.sources:
            effects.append(PullDone(ev.object_id, "no node holds a copy", ev.cause_id))
            return
        self._seq += 1
        self._pulls[ev.object_id] = _Pull(ev.object_id, ev.size_bytes, ev.priority, self._seq, list(ev.sources))
        self._log.record(ev.object_id, None, PullState.QUEUED, ev.cause_id, at_s=now)

    def _on_failed(self, ev: PullFailed, now: float, effects: list[Effect]) -> None:
        pull = self._pulls.get(ev.object_id)
        if pull is None or pull.state is not PullState.ACTIVE:
            return
        pull.tried.update(ev.failed_sources)
        pull.sources.extend(s for s in ev.more_sources if s not in pull.sources)
        untried = tuple(s for s in pull.sources if s not in pull.tried)
        if ev.is_final or not untried or pull.attempt >= self.attempts_max:  # rule 4
            self._finish(ev.object_id, ev.reason, ev.cause_id, now, effects, ev.kind)
            return
        pull.attempt += 1
        self._log.record(ev.object_id, PullState.ACTIVE, PullState.ACTIVE, ev.cause_id, at_s=now,
                         note=f"retry {pull.attempt}: {ev.reason}")
        effects.append(StartPull(ev.object_id, pull.size_bytes, untried, pull.attempt, ev.cause_id))

    def _finish(self, object_id: ObjectId, error: str, cause_id: str, now: float, effects: list[Effect],
                kind: str = LOST) -> None:
        pull = self._pulls.pop(object_id, None)
        if pull is None:
            return
        if pull.state is PullState.ACTIVE:
            self._num_active -= 1
            self._active_bytes -= pull.size_bytes
        self._log.record(object_id, pull.state, PullState.DONE, cause_id, at_s=now, note=error)
        effects.append(PullDone(object_id, error, cause_id, kind))

    def _admit(self, now: float, effects: list[Effect]) -> None:
        if self._num_active == len(self._pulls):
            return
        queued = sorted((p for p in self._pulls.values() if p.state is PullState.QUEUED),
                        key=lambda p: (p.priority, p.seq))
        for pull in queued:  # rule 3: head of line; nothing overtakes a pull that waits for room
            if self._num_active and self._active_bytes + pull.size_bytes > self.budget_bytes:
                break
            pull.state, pull.attempt = PullState.ACTIVE, 1
            self._active_bytes += pull.size_bytes
            self._num_active += 1
            self._log.record(pull.object_id, PullState.QUEUED, PullState.ACTIVE, "admit", at_s=now)
            effects.append(StartPull(pull.object_id, pull.size_bytes, tuple(pull.sources), 1, "admit"))


def least_loaded(loads: dict[str, int], order: dict[str, int], count: int) -> list[str]:
    """Up to ``count`` holders with the fewest active transfers (ties: the older copy)."""
    return sorted(loads, key=lambda h: (loads[h], order[h]))[:max(count, 0)]


class SourceDirectory:
    """Copies of the objects whose primary is here, and how busy each holder is."""

    def __init__(self, self_address: str, objects_max: int = 100_000) -> None:
        self.self_address = self_address
        self.objects_max = objects_max
        self._loads: dict[ObjectId, dict[str, int]] = {}
        self._order: dict[ObjectId, dict[str, int]] = {}
        self._seq = 0

    def holders(self, object_id: ObjectId) -> list[str]:
        return list(self._loads.get(object_id, {}))

    def load_of(self, object_id: ObjectId, holder: str) -> int:
        return self._loads.get(object_id, {}).get(holder, 0)

    def _entry(self, object_id: ObjectId) -> dict[str, int]:
        if object_id not in self._loads:
            if len(self._loads) >= self.objects_max:  # forget the oldest object's copies
                oldest = next(iter(self._loads))
                self.forget(oldest)
            self._loads[object_id] = {}
            self._order[object_id] = {}
            self._add(object_id, self.self_address)
        return self._loads[object_id]

    def _add(self, object_id: ObjectId, holder: str) -> None:
        if holder not in self._loads[object_id]:
            self._seq += 1
            self._loads[object_id][holder] = 0
            self._order[object_id][holder] = self._seq

    def locate(self, object_id: ObjectId, requester: str, count: int) -> list[str]:
        """The holders a puller should read from; each is charged one transfer."""
        loads = self._entry(object_id)
        candidates = {h: n for h, n in loads.items() if h != requester}
        chosen = least_loaded(candidates, self._order[object_id], count)
        for holder in chosen:
            loads[holder] += 1
        return chosen

    def transfer_done(self, object_id: ObjectId, requester: str, sources: list[str], failed: list[str],
                      is_copy_added: bool) -> None:
        loads = self._loads.get(object_id)
        if loads is None:
            return
        for holder in sources:
            if holder in loads:
                loads[holder] = max(0, loads[holder] - 1)
        for holder in failed:
            if holder != self.self_address:
                loads.pop(holder, None)
                self._order[object_id].pop(holder, None)
        if is_copy_added:
            self._add(object_id, requester)

    def forget(self, object_id: ObjectId) -> None:
        self._loads.pop(object_id, None)
        self._order.pop(object_id, None)

    def check_invariants(self) -> None:
        for oid, loads in self._loads.items():
            assert self.self_address in loads, "the primary is always a holder"
            assert set(loads) == set(self._order[oid])
            assert all(n >= 0 for n in loads.values())
