"""The head lease (ember/logic/control/leadership.py): events in, effects out, no processes.

A model storage gives the atomic guarded write every backend has; a hypothesis-driven
simulation runs several heads against it with storage operations that land late, heads that
pause, and checks that no two heads ever lead in the same epoch and that a write guarded by
an old epoch never lands once a newer one exists."""
from __future__ import annotations

from typing import Optional

import pytest
from hypothesis import given, settings, strategies as st

from ember.logic.control import leadership as L

TTL, RENEW = 3.0, 0.5


class ModelStorage:
    """The leader table and a log of guarded data writes, with the backends' atomic guard."""

    def __init__(self) -> None:
        self.lease: Optional[bytes] = None
        self.fence: Optional[bytes] = None
        self.writes: list[int] = []  # epochs of the data writes that landed, in order

    def read(self) -> L.LeaseRead:
        return L.LeaseRead(self.lease, int(self.fence) if self.fence else 0)

    def apply(self, eff: object) -> bool:
        if isinstance(eff, L.TryTakeover):
            if self.lease != eff.expected_raw or self.fence != eff.expected_fence:
                return False
            self.lease, self.fence = eff.lease.encode(), L.fence_value(eff.lease.epoch)
            return True
        if isinstance(eff, (L.TryRenew, L.Release)):
            if self.lease != eff.expected_raw:
                return False
            self.lease = eff.lease.encode()
            return True
        raise AssertionError(eff)

    def guarded_write(self, epoch: int) -> bool:
        if self.fence != L.fence_value(epoch):
            return False
        self.writes.append(epoch)
        return True


def head(name: str, standby: bool = True) -> L.Leadership:
    return L.Leadership(name, f"{name}:6379", ttl_s=TTL, renew_interval_s=RENEW, is_standby=standby)


def drive(h: L.Leadership, store: ModelStorage, effects: list, now: float) -> list:
    """Carry out effects at once (a fast storage); returns the non-storage effects seen."""
    seen = []
    while effects:
        eff = effects.pop(0)
        if isinstance(eff, L.ReadLease):
            effects += h.handle(store.read(), now)
        elif isinstance(eff, L.TryTakeover):
            effects += h.handle(L.TakeoverDone(store.apply(eff), eff.lease), now)
        elif isinstance(eff, L.TryRenew):
            effects += h.handle(L.RenewDone(store.apply(eff), now), now)
        elif isinstance(eff, L.Release):
            store.apply(eff)
            seen.append(eff)
        else:
            seen.append(eff)
    h.check_invariants()
    return seen


def test_first_head_takes_a_free_lease_with_epoch_1() -> None:
    store, a = ModelStorage(), head("a", standby=False)
    seen = drive(a, store, a.handle(L.Ticked(), 0.0), 0.0)
    assert seen == [L.BecomeLeader(1)] and a.is_leading and store.fence == b"1"


def test_leader_renews_and_standby_waits_then_takes_over_with_next_epoch() -> None:
    store, a, b = ModelStorage(), head("a"), head("b")
    drive(a, store, [L.ReadLease()], 0.0)
    now = 0.0
    while now < 10.0:  # a renews; b watches the renewals and never takes over
        now += 0.25
        drive(a, store, a.handle(L.Ticked(), now), now)
        assert drive(b, store, b.handle(L.Ticked(), now), now) == []
    assert a.is_leading and not b.is_leading and L.Lease.decode(store.lease).counter >= 15
    died_at = now  # a stops renewing (killed)
    while not b.is_leading:
        now += 0.25
        seen = drive(b, store, b.handle(L.Ticked(), now), now)
    assert seen == [L.BecomeLeader(2)] and TTL <= now - died_at <= TTL + 0.5
    # a wakes up: its next renewal is refused and it steps down
    seen = drive(a, store, a.handle(L.Ticked(), now), now)
    assert a.role is L.Role.DEPOSED and any(isinstance(e, L.StepDown) for e in seen)
    assert a.leader_hint is not None and a.leader_hint.address == "b:6379" and a.leader_hint.epoch == 2


def test_second_active_head_is_refused_once_it_sees_a_renewal() -> None:
    store, a, c = ModelStorage(), head("a"), head("c", standby=False)
    drive(a, store, [L.ReadLease()], 0.0)
    assert drive(c, store, [L.ReadLease()], 0.1) == []
    drive(a, store, a.handle(L.Ticked(), 0.6), 0.6)
    seen = drive(c, store, [L.ReadLease()], 0.7)
    assert c.role is L.Role.REFUSED and isinstance(seen[0], L.Refuse)
    assert "a:6379" in seen[0].message and "--standby" in seen[0].message


def test_a_restarted_head_takes_over_a_dead_holders_lease_after_a_ttl() -> None:
    store, a, again = ModelStorage(), head("a", standby=False), head("a2", standby=False)
    drive(a, store, [L.ReadLease()], 0.0)
    drive(again, store, [L.ReadLease()], 1.0)  # a was killed at 0.x: its lease is not renewed
    assert drive(again, store, [L.ReadLease()], 3.5) == []
    assert drive(again, store, [L.ReadLease()], 4.1) == [L.BecomeLeader(2)]


def test_leader_that_cannot_renew_stops_serving_before_a_standby_can_take_over() -> None:
    store, a = ModelStorage(), head("a")
    drive(a, store, [L.ReadLease()], 0.0)
    effects = a.handle(L.Ticked(), 0.5)
    assert isinstance(effects[0], L.TryRenew)
    a.handle(L.RenewFailed("timed out"), 1.5)
    seen = a.handle(L.Ticked(), TTL * 0.75)
    assert a.role is L.Role.SUSPENDED and not a.is_leading
    assert isinstance(seen[0], L.Suspend) and "could not renew" in seen[0].reason
    # the renewal sent at 1.5 s comes back refused: the lease was taken
    assert a.handle(L.RenewDone(False, 1.5), 2.3)[0] == L.StepDown("epoch 1: another head took the lease")
    assert a.role is L.Role.DEPOSED


def test_a_suspended_leader_serves_again_if_nobody_took_over() -> None:
    store, a = ModelStorage(), head("a")
    drive(a, store, [L.ReadLease()], 0.0)
    seen = drive(a, store, a.handle(L.Ticked(), 2.5), 2.5)  # its thread stalled 2.5 s; the renewal then lands
    assert seen == [L.Suspend("epoch 1: could not renew the lease for 2.5 s"), L.Resume()] and a.is_leading


def test_a_suspended_leader_whose_lease_was_taken_steps_down() -> None:
    store, a, b = ModelStorage(), head("a"), head("b")
    drive(a, store, [L.ReadLease()], 0.0)
    drive(b, store, [L.ReadLease()], 0.1)
    assert drive(b, store, [L.ReadLease()], 3.2) == [L.BecomeLeader(2)]
    seen = drive(a, store, a.handle(L.Ticked(), 3.3), 3.3)
    assert [type(e) for e in seen] == [L.Suspend, L.StepDown] and a.role is L.Role.DEPOSED


def test_stop_releases_the_lease_and_the_next_head_takes_it_at_once() -> None:
    store, a, b = ModelStorage(), head("a"), head("b", standby=False)
    drive(a, store, [L.ReadLease()], 0.0)
    drive(a, store, a.handle(L.StopRequested(), 1.0), 1.0)
    assert L.Lease.decode(store.lease).is_released and a.role is L.Role.STOPPED
    assert drive(b, store, [L.ReadLease()], 1.1) == [L.BecomeLeader(2)]


def test_a_fenced_write_deposes_the_leader() -> None:
    store, a = ModelStorage(), head("a")
    drive(a, store, [L.ReadLease()], 0.0)
    seen = drive(a, store, a.handle(L.WriteFenced(), 0.2), 0.2)
    assert a.role is L.Role.DEPOSED and isinstance(seen[0], L.StepDown)


def test_invalid_transition_is_named() -> None:
    a = head("a")
    with pytest.raises(L.InvalidTransition, match="WATCHING -> DEPOSED"):
        a._move(L.Role.DEPOSED, 0.0, "test")


# --- simulation: several heads, late storage operations, pauses --------------------------------------------
# One step: (head index, action, delay).  Actions: tick the head; run the oldest of its in-flight storage
# operations; issue a guarded data write under the epoch it believes it leads.
STEP = st.tuples(st.integers(0, 2), st.sampled_from(["tick", "land", "land", "write"]), st.floats(0.0, 1.5))


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=20, max_size=200), st.booleans())
def test_never_two_leaders_in_one_epoch_and_no_stale_write_lands(steps, first_is_standby) -> None:
    store = ModelStorage()
    heads = [head(f"h{i}", standby=(first_is_standby or i > 0)) for i in range(3)]
    inflight: list[list] = [[] for _ in heads]  # storage operations sent, not yet landed (in order)
    leaders: dict[int, str] = {}
    now = 0.0

    def run(i: int, effects: list) -> None:
        for eff in effects:
            if isinstance(eff, L.BecomeLeader):
                assert leaders.setdefault(eff.epoch, heads[i].head_id) == heads[i].head_id, \
                    f"two leaders in epoch {eff.epoch}"
            elif isinstance(eff, (L.ReadLease, L.TryTakeover, L.TryRenew, L.Release)):
                inflight[i].append((eff, now))
            elif isinstance(eff, L.StepDown):
                pass
        heads[i].check_invariants()

    for i, action, delay in steps:
        now += delay
        h = heads[i]
        if action == "tick":
            run(i, h.handle(L.Ticked(), now))
        elif action == "write" and h.is_leading:
            inflight[i].append(("write", h.epoch))
        elif action == "land" and inflight[i]:
            eff, sent_at = inflight[i].pop(0)
            if eff == "write":
                if not store.guarded_write(sent_at):
                    run(i, h.handle(L.WriteFenced(), now))
            elif isinstance(eff, L.ReadLease):
                run(i, h.handle(store.read(), now))
            elif isinstance(eff, L.TryTakeover):
                run(i, h.handle(L.TakeoverDone(store.apply(eff), eff.lease), now))
            elif isinstance(eff, L.TryRenew):
                run(i, h.handle(L.RenewDone(store.apply(eff), sent_at), now))
            else:
                store.apply(eff)
        # the fence only grows, and every landed write carries the fence of its moment
        assert store.writes == sorted(store.writes)
        if store.writes:
            assert store.fence is not None and store.writes[-1] <= int(store.fence)
    epochs = sorted(leaders)
    assert epochs == list(range(1, len(epochs) + 1))  # each takeover adds exactly one to the epoch
