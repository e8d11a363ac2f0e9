"""HeadWatch: when a node daemon fences itself and when it counts its head as lost."""
from __future__ import annotations

import random

import pytest

from ember.logic.control.nodes import NodeRecord, NodeTable
from ember.logic.node.head_watch import Fence, HeadLost, HeadWatch, Unfenced


def _watch(now: float = 0.0) -> HeadWatch:
    return HeadWatch(heartbeat_timeout_s=4.0, lost_after_s=60.0, margin_s=0.5, now=now)


def test_answered_heartbeats_never_fence() -> None:
    w = _watch()
    for i in range(1, 100):
        now = i * 0.5
        w.heartbeat_sent(i, now)
        assert w.heartbeat_acked(i, now + 0.2) == []
        assert w.tick(now + 0.3) == []
    w.check_invariants()


def test_silence_fences_once_then_an_answer_unfences() -> None:
    w = _watch()
    w.heartbeat_sent(1, 1.0)
    w.heartbeat_acked(1, 1.1)
    assert w.tick(4.4) == []
    assert w.tick(4.5) == [Fence(3.5)]
    assert w.tick(5.0) == []            # once per silence
    w.heartbeat_sent(2, 5.5)
    assert w.heartbeat_acked(2, 5.625) == [Unfenced(4.625)]
    assert not w.is_fenced and w.fence_count == 1
    w.check_invariants()


def test_a_late_answer_counts_from_its_send_time() -> None:
    w = _watch()
    w.heartbeat_sent(1, 1.0)
    w.heartbeat_sent(2, 1.5)
    assert w.heartbeat_acked(1, 4.0) == []  # the head saw us at >= 1.0
    assert w.tick(4.4) == []
    assert w.tick(4.625) == [Fence(3.625)]
    assert w.heartbeat_acked(2, 4.75) == [Unfenced(3.75)]  # a newer heartbeat, answered late
    w.check_invariants()


def test_a_refusing_head_is_down_not_partitioned_until_an_attempt_times_out() -> None:
    w = _watch()
    for t in (0.5, 1.0, 3.0, 7.0, 20.0):
        w.head_refused(t)
        assert w.tick(t + 2.0) == []
    w.head_unreachable(25.0)                 # from here it may be a partition
    assert w.tick(28.0) == []
    assert w.tick(28.625) == [Fence(3.625)]
    w.check_invariants()


def test_a_silent_head_is_lost_after_the_window_and_the_node_is_fenced_first() -> None:
    w = HeadWatch(heartbeat_timeout_s=10.0, lost_after_s=4.0, margin_s=0.5, now=0.0)
    assert w.tick(3.9) == []
    assert w.tick(4.0) == [Fence(4.0), HeadLost(4.0)]
    assert w.tick(100.0) == [] and w.heartbeat_acked(1, 100.0) == []
    w.check_invariants()


def test_invalid_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="heartbeat_timeout_s"):
        HeadWatch(heartbeat_timeout_s=0.0, lost_after_s=60.0, margin_s=0.5, now=0.0)


@pytest.mark.parametrize("seed", range(30))
def test_the_node_is_fenced_before_the_head_can_declare_it_dead(seed: int) -> None:
    """Random delays and drops of heartbeats and answers: whenever the node table (the head)
    declares the node dead, the daemon's HeadWatch has fenced at or before that instant."""
    rng = random.Random(seed)
    timeout_s, interval_s = 4.0, 0.5
    table = NodeTable(heartbeat_timeout_s=timeout_s)
    table.register(NodeRecord(b"n", "a", {}, {}, False, "", {}), 0.0)
    w = HeadWatch(timeout_s, 600.0, interval_s, 0.0)
    events: list[tuple[float, int, str, int]] = []   # (time, order, kind, seq)
    order = 0
    t, seq = 0.0, 0
    while t < 120.0:
        t += interval_s
        seq += 1
        events.append((t, order, "send", seq)); order += 1
        if rng.random() < 0.3 and t > 10:        # bursts of loss: the link is cut for a while
            continue
        arrive = t + rng.expovariate(1 / 0.3)
        events.append((arrive, order, "arrive", seq)); order += 1
        if rng.random() < 0.8:
            events.append((arrive + rng.expovariate(1 / 0.3), order, "ack", seq)); order += 1
    fenced_at = None
    dead_at = None
    now = 0.0
    for when, _, kind, s in sorted(events):
        # ticks every quarter second up to this event
        while now + 0.25 <= when:
            now += 0.25
            if any(isinstance(e, Fence) for e in w.tick(now)) and fenced_at is None:
                fenced_at = now
            if table.expire(now) and dead_at is None:
                dead_at = now
        if dead_at is not None:
            break
        if kind == "send":
            w.heartbeat_sent(s, when)
        elif kind == "arrive":
            table.heartbeat(b"n", {}, [], 0, when)
        else:
            for e in w.heartbeat_acked(s, when):
                if isinstance(e, Unfenced):
                    fenced_at = None
        w.check_invariants()
    if dead_at is not None:
        assert fenced_at is not None and fenced_at <= dead_at, (seed, fenced_at, dead_at)


def test_rule5_a_new_leader_found_counts_as_contact_within_its_restored_grace() -> None:
    w = HeadWatch(4.0, 60.0, 0.5, now=0.0)
    w.heads_probed(2.0, 2.1, led_s=0.1, grace_s=10.0)  # took over at >= 1.9: alive for us until >= 11.9
    assert w.tick(5.4) == [] and w.contact_s == 2.0
    w.check_invariants()
    w2 = HeadWatch(4.0, 60.0, 0.5, now=0.0)
    w2.heads_probed(3.0, 3.1, led_s=9.0, grace_s=10.0)  # led long: its grace ends at >= 4.0
    assert w2.contact_s == 0.5  # = 3.0 - 9.0 + 10.0 - 3.5: fenced no later than the grace ends
    assert w2.tick(4.0) and w2.is_fenced


def test_rule5_no_head_leads_counts_as_contact_at_the_probe() -> None:
    w = HeadWatch(4.0, 60.0, 0.5, now=0.0)
    w.heads_probed(3.0, 3.2, led_s=None, grace_s=0.0)
    assert w.tick(6.0) == [] and not w.is_fenced
    assert w.tick(6.5) and w.is_fenced
