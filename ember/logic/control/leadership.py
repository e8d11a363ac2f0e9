"""Which head leads: a lease in the shared storage, with a TTL and an epoch that only grows.

Pure logic (issue #11, section 3): events in, effects out; the shell
(``ember/shells/control/leadership.py``) reads and writes the storage and keeps the time.

Theory of operation
-------------------
The storage holds two keys in table ``leader``: ``lease`` (a :class:`Lease`: epoch, holder,
address, a renewal counter, released or not) and ``epoch`` (the epoch as decimal text, the
*fence*).  Both change only together, in one atomic guarded write.

- Rule 1: the active head renews its lease every ``renew_interval_s`` by a compare-and-set on
  the lease it last wrote (counter + 1).  A renewal that finds another value means someone
  took the lease: the head steps down at once.
- Rule 2: a head that has not renewed for ``step_down_after_s`` (< the TTL) stops serving
  (SUSPENDED) before any standby can take over (a standby waits a full TTL, see rule 3), and
  keeps trying to renew: a renewal that still finds its own last value proves nobody took over,
  and it serves again; one that finds another value deposes it.
- Rule 3: a waiting head takes the lease when it is absent or released, or when it has watched
  the same lease value for ``ttl_s`` of its own clock (the holder stopped renewing).  The
  takeover is a compare-and-set on exactly the value it watched, writing epoch + 1 to both the
  lease and the fence; of two standbys racing, one wins.
- Rule 4: every write of the control store is guarded by the fence (``epoch == mine``), in
  the same atomic step as the write (``Storage.guarded_batch``), so a deposed head changes
  nothing once a newer epoch exists, however late its writes arrive.  Safety rests on rule 4
  alone; rules 2 and 3 (timing) only keep a deposed head from *answering* after a takeover.
- Rule 5: a head started without ``--standby`` against a held lease is refused as soon as it
  sees the lease renewed (another head is alive); if the lease stays unrenewed for a TTL the
  holder is dead and this head takes over (a restart of the same head).

States and moves (``TRANSITIONS``)::

    WATCHING --(1) take over--> LEADING --(3) step down--> DEPOSED
       |  \\--(2) refused            |  ^                         ^
       |   (not standby, renewed)     (6)|  |(7) renewed again      |(8) lease taken, fenced
       \\--(4) stop--> STOPPED         v  |                         |
                                     SUSPENDED ------------------+
    LEADING / SUSPENDED --(5) stop (release)--> STOPPED
"""
from __future__ import annotations

import enum
import json
from collections import deque
from dataclasses import dataclass, replace
from typing import Optional, Union

TABLE = "leader"
LEASE_KEY = b"lease"
EPOCH_KEY = b"epoch"
STANDBY_PREFIX = b"standby/"


class InvalidTransition(Exception):
    pass


class Role(enum.Enum):
    WATCHING = "watching"   # standby, or a head waiting to learn whether the lease is held
    LEADING = "leading"
    SUSPENDED = "suspended" # could not renew in time: serves nothing until a renewal succeeds
    DEPOSED = "deposed"     # stepped down: serves nothing, tells callers who leads
    REFUSED = "refused"     # not a standby, and another head holds the lease
    STOPPED = "stopped"


@dataclass(frozen=True)
class Lease:
    epoch: int
    holder: str             # the head's id (hex)
    address: str            # where the head serves (host:port)
    counter: int = 0        # bumped by each renewal, so a renewal changes the stored value
    is_released: bool = False

    def encode(self) -> bytes:
        return json.dumps([self.epoch, self.holder, self.address, self.counter, self.is_released]).encode()

    @staticmethod
    def decode(data: Optional[bytes]) -> Optional["Lease"]:
        if data is None:
            return None
        epoch, holder, address, counter, released = json.loads(data)
        return Lease(int(epoch), str(holder), str(address), int(counter), bool(released))


def fence_value(epoch: int) -> bytes:
    return str(epoch).encode()


# --- events (facts) -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LeaseRead:
    """What the storage holds now (raw lease bytes, and the fence's epoch; 0 when absent)."""
    lease_raw: Optional[bytes]
    fence_epoch: int


@dataclass(frozen=True)
class TakeoverDone:
    """The outcome of a ``TryTakeover``; ``lease`` is the lease it tried to write."""
    is_won: bool
    lease: Lease


@dataclass(frozen=True)
class RenewDone:
    """A renewal's outcome; ``started_at`` is when it was sent (the lease counts from then)."""
    is_renewed: bool
    started_at: float


@dataclass(frozen=True)
class RenewFailed:
    """The storage could not be reached for a renewal (nothing is known)."""
    error: str


@dataclass(frozen=True)
class Ticked:
    pass


@dataclass(frozen=True)
class WriteFenced:
    """A guarded write was refused: a newer epoch exists."""


@dataclass(frozen=True)
class StopRequested:
    pass


Event = Union[LeaseRead, TakeoverDone, RenewDone, RenewFailed, Ticked, WriteFenced, StopRequested]


# --- effects (orders) -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadLease:
    pass


@dataclass(frozen=True)
class TryTakeover:
    """Atomically: if lease == ``expected_raw`` and fence == ``expected_fence`` (None: absent),
    write ``lease`` and the fence ``lease.epoch``."""
    expected_raw: Optional[bytes]
    expected_fence: Optional[bytes]
    lease: Lease


@dataclass(frozen=True)
class TryRenew:
    expected_raw: bytes
    lease: Lease


@dataclass(frozen=True)
class BecomeLeader:
    epoch: int


@dataclass(frozen=True)
class StepDown:
    reason: str


@dataclass(frozen=True)
class Suspend:
    """Stop serving (keep the connections): the lease may be lost."""
    reason: str


@dataclass(frozen=True)
class Resume:
    """A renewal succeeded after a suspension: nobody took over; serve again."""


@dataclass(frozen=True)
class Refuse:
    message: str


@dataclass(frozen=True)
class Release:
    expected_raw: bytes
    lease: Lease


Effect = Union[ReadLease, TryTakeover, TryRenew, BecomeLeader, StepDown, Suspend, Resume, Refuse, Release]

TRANSITIONS: dict[tuple[Role, Role], str] = {
    (Role.WATCHING, Role.LEADING): "takeover won",
    (Role.WATCHING, Role.REFUSED): "not a standby and the lease is held",
    (Role.WATCHING, Role.STOPPED): "stopped while waiting",
    (Role.LEADING, Role.DEPOSED): "renewal refused or overdue, or a write fenced",
    (Role.LEADING, Role.STOPPED): "stopped: lease released",
    (Role.LEADING, Role.SUSPENDED): "no renewal for step_down_after_s",
    (Role.SUSPENDED, Role.LEADING): "renewed: nobody took over",
    (Role.SUSPENDED, Role.DEPOSED): "the lease was taken, or a write fenced",
    (Role.SUSPENDED, Role.STOPPED): "stopped while suspended",
}


class Leadership:
    """One head's view of the lease.  ``handle(event, now)`` returns the effects to carry out."""

    def __init__(self, head_id: str, address: str, *, ttl_s: float, renew_interval_s: float,
                 is_standby: bool, step_down_fraction: float = 0.75) -> None:
        if not 0 < renew_interval_s < ttl_s * step_down_fraction:
            raise ValueError(f"renew_interval_s={renew_interval_s} must be below ttl_s * {step_down_fraction}")
        self.head_id = head_id
        self.address = address
        self.ttl_s = ttl_s
        self.renew_interval_s = renew_interval_s
        self.step_down_after_s = ttl_s * step_down_fraction
        self.is_standby = is_standby
        self.role = Role.WATCHING
        self.epoch = 0                            # the epoch this head leads under (0: never led)
        self.lease: Optional[Lease] = None        # the lease this head wrote last (while leading)
        self.last_renewed_at = 0.0
        self.seen_raw: Optional[bytes] = None     # the value being watched ...
        self.seen_since = 0.0                     # ... since when (this head's clock)
        self.seen_reads = 0
        self.leader_hint: Optional[Lease] = None  # who leads, as last read
        self.is_busy = False                      # a takeover or renewal is in flight
        self.log: deque[tuple[float, str]] = deque(maxlen=200)

    # --- the one entry point ---------------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Effect]:
        method = getattr(self, "_on_" + type(event).__name__)
        effects: list[Effect] = method(event, now)
        return effects

    def _move(self, to: Role, now: float, why: str) -> None:
        if (self.role, to) not in TRANSITIONS:
            raise InvalidTransition(f"head {self.head_id}: {self.role.name} -> {to.name} ({why})")
        self.log.append((now, f"{self.role.name} -> {to.name}: {why}"))
        self.role = to

    # --- waiting --------------------------------------------------------------------------------------
    def _on_LeaseRead(self, ev: LeaseRead, now: float) -> list[Effect]:
        lease = Lease.decode(ev.lease_raw)
        self.leader_hint = lease if lease is not None and not lease.is_released else None
        if self.role is not Role.WATCHING or self.is_busy:
            return []
        if ev.lease_raw != self.seen_raw or self.seen_reads == 0:
            is_renewal = self.seen_reads > 0 and lease is not None and not lease.is_released
            self.seen_raw, self.seen_since = ev.lease_raw, now
            self.seen_reads += 1
            if is_renewal and not self.is_standby:
                assert lease is not None
                self._move(Role.REFUSED, now, "lease renewed by another head")
                return [Refuse(
                    f"another head leads this storage: {lease.address} (epoch {lease.epoch}) renewed its lease "
                    f"just now. Start this head with --standby to take over when that one stops, or stop that "
                    f"head first.")]
        else:
            self.seen_reads += 1
        is_free = lease is None or lease.is_released
        if is_free or now - self.seen_since >= self.ttl_s:
            epoch = max(ev.fence_epoch, lease.epoch if lease is not None else 0) + 1
            self.is_busy = True
            fence = None if ev.fence_epoch == 0 else fence_value(ev.fence_epoch)
            return [TryTakeover(ev.lease_raw, fence, Lease(epoch, self.head_id, self.address))]
        return []

    def _on_TakeoverDone(self, ev: TakeoverDone, now: float) -> list[Effect]:
        self.is_busy = False
        if self.role is not Role.WATCHING:
            return []
        if not ev.is_won:  # another standby won, or the holder renewed in between: watch again
            self.seen_raw, self.seen_since = None, now
            return [ReadLease()]
        lease = ev.lease
        self._move(Role.LEADING, now, f"took the lease with epoch {lease.epoch}")
        self.epoch, self.lease, self.last_renewed_at = lease.epoch, lease, now
        self.leader_hint = lease
        return [BecomeLeader(lease.epoch)]

    # --- leading --------------------------------------------------------------------------------------
    def _on_Ticked(self, ev: Ticked, now: float) -> list[Effect]:
        if self.role is Role.WATCHING:
            return [] if self.is_busy else [ReadLease()]
        if self.role not in (Role.LEADING, Role.SUSPENDED):
            return []
        effects: list[Effect] = []
        if self.role is Role.LEADING and now - self.last_renewed_at >= self.step_down_after_s:
            reason = f"could not renew the lease for {now - self.last_renewed_at:.1f} s"
            self._move(Role.SUSPENDED, now, reason)
            effects.append(Suspend(f"epoch {self.epoch}: {reason}"))
        if self.is_busy or (self.role is Role.LEADING and now - self.last_renewed_at < self.renew_interval_s):
            return effects
        assert self.lease is not None
        self.is_busy = True
        return effects + [TryRenew(self.lease.encode(), replace(self.lease, counter=self.lease.counter + 1))]

    def _on_RenewDone(self, ev: RenewDone, now: float) -> list[Effect]:
        self.is_busy = False
        if self.role not in (Role.LEADING, Role.SUSPENDED):
            return []
        if not ev.is_renewed:
            return self._step_down(now, "another head took the lease")
        assert self.lease is not None
        self.lease = replace(self.lease, counter=self.lease.counter + 1)
        self.leader_hint = self.lease
        self.last_renewed_at = max(self.last_renewed_at, ev.started_at)
        if self.role is Role.SUSPENDED and now - self.last_renewed_at < self.step_down_after_s:
            self._move(Role.LEADING, now, "renewed after a suspension")
            return [Resume()]
        return []

    def _on_RenewFailed(self, ev: RenewFailed, now: float) -> list[Effect]:
        self.is_busy = False
        self.log.append((now, f"renewal failed: {ev.error}"))
        return self._on_Ticked(Ticked(), now)

    def _on_WriteFenced(self, ev: WriteFenced, now: float) -> list[Effect]:
        if self.role not in (Role.LEADING, Role.SUSPENDED):
            return []
        return self._step_down(now, "a write was fenced: a newer epoch exists")

    def _step_down(self, now: float, reason: str) -> list[Effect]:
        self._move(Role.DEPOSED, now, reason)
        return [StepDown(f"epoch {self.epoch}: {reason}"), ReadLease()]  # then: who leads now

    def _on_StopRequested(self, ev: StopRequested, now: float) -> list[Effect]:
        if self.role is Role.WATCHING:
            self._move(Role.STOPPED, now, "stop requested")
            return []
        if self.role not in (Role.LEADING, Role.SUSPENDED):
            return []
        assert self.lease is not None
        self._move(Role.STOPPED, now, "stop requested")
        return [Release(self.lease.encode(), replace(self.lease, counter=self.lease.counter + 1, is_released=True))]

    # --- inspection -----------------------------------------------------------------------------------
    @property
    def is_leading(self) -> bool:
        return self.role is Role.LEADING

    def story(self) -> list[tuple[float, str]]:
        return list(self.log)

    def check_invariants(self) -> None:
        if self.role in (Role.LEADING, Role.SUSPENDED):
            assert self.lease is not None and self.lease.epoch == self.epoch > 0, (self.lease, self.epoch)
            assert self.lease.holder == self.head_id
        if self.role is Role.WATCHING:
            assert self.lease is None and self.epoch == 0
