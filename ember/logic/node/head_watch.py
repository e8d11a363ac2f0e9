"""A node daemon's view of its control store (head): when to fence itself, when the head is lost.

The control store declares a node dead when no heartbeat *arrived* for ``heartbeat_timeout_s``
(``logic/control/nodes.py``) and then restarts the node's actors elsewhere.  A node cut off
from the head (a partition, a paused head, a dead link that does not reset) keeps running its
actor workers unless it stops them itself; if it did not, a partition longer than the heartbeat
timeout would run two copies of an actor.  This object decides, from facts only:

Rule 1 (self-fencing): the daemon fences - kills its actor workers - once
    ``now - sent_s(last acknowledged heartbeat) >= heartbeat_timeout_s - margin_s``.
    The *send* time of the last acknowledged heartbeat is never later than the time the head
    received it, so the daemon fences no later than the head can declare it dead (its clock runs
    at the same rate), and earlier by ``margin_s``: no instant exists at which the head has
    restarted an actor while the old copy may still run (a restart needs the death first).
Rule 2 (fencing is once per silence): after fencing, a new acknowledged heartbeat unfences
    (the head never declared the node dead: it answered ALIVE); actors it had are already gone
    and are restarted by the control store as for any worker death.
Rule 3 (a head that is down is no partition): from a reconnection refused by the head's address
    (nothing listens: the head process died, its machine answered) until the next attempt that
    fails otherwise, the daemon counts as in contact for Rule 1:
    a dead head restarts no actor, and a head restarted at that address must find them running
    (docs/fault_tolerance.md, losing the head).  With several heads, only when every known head
    refused (the shell classifies a probe; otherwise Rule 5).
Rule 4 (head lost): a head silent for ``lost_after_s`` (``gcs_reconnect_timeout_s``) counts as
    lost, like one whose connection closed and never came back: the daemon exits.  A paused
    head (SIGSTOP) keeps its sockets open, so silence is the only sign.

Rule 5 (several heads): a probe of every known head, sent at ``sent_s``, in which each head
    refused the connection (dead) or answered that it does not lead, proves that no head restored
    the cluster before ``sent_s`` (a deposed head cannot restart anything: its writes are fenced by
    epoch); one in which a head at another address than the one this node is registered with
    answers that it LEADS, for ``led_s``, proves that it took over no earlier than
    ``sent_s - led_s`` and that it treats this node (known to it only from storage) as alive for
    ``grace_s`` (``max(heartbeat_timeout_s, RESTORED_NODE_GRACE_S)``) from then.  Either counts
    as contact at ``min(sent_s, sent_s - led_s + grace_s - fence_after_s)`` for Rule 1: a node
    that finds the new leader during a failover keeps its actors.  A SUSPENDED head (it could
    not renew its lease; it refuses heartbeats) may resume and declare silent nodes dead at once:
    its answer is no proof, and its refusal of a heartbeat is no acknowledgement.

    heartbeat_sent(seq, now)  -> []
    heartbeat_acked(seq, now) -> [Unfenced] if fenced before, else []
    answered(sent_s, now)     -> the same, for any request the head answered (a registration)
    head_refused(now)         -> []   (contact for Rule 1 until head_unreachable; not for Rule 4)
    head_unreachable(now)     -> []   (a reconnection timed out: the partition case again)
    heads_probed(sent_s, now, led_s, grace_s) -> the same as answered, for every known head probed
                                 (Rule 5); led_s None: none leads, else the new leader's led_s
    tick(now)                 -> [Fence] once per silence;  [HeadLost] once, when silent too long
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

RESTORED_NODE_GRACE_S = 10.0  # a head restored from storage treats stored nodes as alive this long (Rule 5)


@dataclass(frozen=True)
class Fence:
    """Kill every actor worker of this node: the head may be restarting them elsewhere."""
    silent_s: float


@dataclass(frozen=True)
class Unfenced:
    """The head answered again: new actors may be placed here (it never declared us dead)."""
    silent_s: float


@dataclass(frozen=True)
class HeadLost:
    """The head stayed silent for ``lost_after_s``: exit as if its connection had closed for good."""
    silent_s: float


Effect = Union[Fence, Unfenced, HeadLost]


class HeadWatch:
    def __init__(self, heartbeat_timeout_s: float, lost_after_s: float, margin_s: float, now: float) -> None:
        if heartbeat_timeout_s <= 0:
            raise ValueError(f"heartbeat_timeout_s must be positive, got {heartbeat_timeout_s}")
        self.fence_after_s = max(heartbeat_timeout_s - margin_s, heartbeat_timeout_s / 2)
        self.lost_after_s = lost_after_s
        self.acked_sent_s = now          # send time of the last acknowledged heartbeat (or start)
        self.contact_s = now             # the later of acked_sent_s and the last refused reconnection
        self.is_fenced = False
        self.is_head_down = False        # the last reconnection was refused (Rule 3)
        self.is_lost = False
        self.fence_count = 0
        self._sent: dict[int, float] = {}   # seq -> send time, for heartbeats not yet answered

    def heartbeat_sent(self, seq: int, now: float) -> list[Effect]:
        self._sent[seq] = now
        if len(self._sent) > 64:  # unanswered ones pile up only while the head is silent
            del self._sent[min(self._sent)]
        return []

    def heartbeat_acked(self, seq: int, now: float) -> list[Effect]:
        sent_s = self._sent.pop(seq, None)
        if sent_s is None:
            return []
        for old in [s for s in self._sent if s < seq]:
            del self._sent[old]
        return self.answered(sent_s, now)

    def answered(self, sent_s: float, now: float) -> list[Effect]:
        """The head answered a request sent at ``sent_s`` (a heartbeat, a registration)."""
        if self.is_lost:
            return []
        silent_s = now - self.acked_sent_s
        self.is_head_down = False
        self.acked_sent_s = max(self.acked_sent_s, sent_s)
        self.contact_s = max(self.contact_s, sent_s)
        if self.is_fenced:
            self.is_fenced = False
            return [Unfenced(silent_s)]
        return []

    def head_refused(self, now: float) -> list[Effect]:
        self.is_head_down = True
        self.contact_s = max(self.contact_s, now)
        return []

    def head_unreachable(self, now: float) -> list[Effect]:
        if self.is_head_down:
            self.is_head_down = False
            self.contact_s = max(self.contact_s, now)
        return []

    def heads_probed(self, sent_s: float, now: float, led_s: Optional[float], grace_s: float) -> list[Effect]:
        """Rule 5: every known head answered a probe sent at ``sent_s``; ``led_s``: None when none
        leads, else how long the leader found (at another address) has led."""
        if self.is_lost:
            return []
        credit_s = sent_s if led_s is None else min(sent_s, sent_s - led_s + grace_s - self.fence_after_s)
        self.contact_s = max(self.contact_s, credit_s)
        return []

    def tick(self, now: float) -> list[Effect]:
        if self.is_lost:
            return []
        effects: list[Effect] = []
        cut_off_s = 0.0 if self.is_head_down else now - self.contact_s
        silent_s = now - self.acked_sent_s
        is_lost = self.lost_after_s > 0 and silent_s >= self.lost_after_s
        if not self.is_fenced and (cut_off_s >= self.fence_after_s or is_lost):
            self.is_fenced = True
            self.fence_count += 1
            effects.append(Fence(cut_off_s))
        if is_lost:
            self.is_lost = True
            effects.append(HeadLost(silent_s))
        return effects

    def check_invariants(self) -> None:
        assert not (self.is_lost and not self.is_fenced), "a lost head implies a fenced node"
        assert self.fence_after_s > 0
        assert self.contact_s >= self.acked_sent_s
