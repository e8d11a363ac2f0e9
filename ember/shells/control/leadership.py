"""The control store's leadership lease, carried out (issue #11, section 3).

The decisions are ``ember.logic.control.leadership.Leadership``; this shell runs it on a
thread of its own, with its own storage connection (short timeouts), so that a busy control
store event loop never delays a renewal and a slow storage never blocks the event loop.
``BecomeLeader`` and ``StepDown`` are posted to the event loop.  Standbys also note themselves
in the storage (``leader/standby/<id>``: address and wall time) so ``ember status`` can list
them; that is the only unfenced write, and only a standby makes it (to its own key).

The ``memory://`` storage has no leadership: nobody else can share it, so its head leads
(epoch 1) from the start and its writes are not fenced.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Optional

from ember.config import CONFIG
from ember.logic.control import leadership as L
from ember.protocol import messages as m
from ember.shells.control.storage.base import Storage, StorageError

log = logging.getLogger("ember.gcs.leadership")


class HeadRefused(Exception):
    """Not a standby, and another head holds the lease."""


def lease_timings() -> tuple[float, float, float]:
    """(ttl, renew interval, poll interval) in seconds."""
    ttl = CONFIG.head_lease_ttl_s
    return ttl, ttl / 6, min(0.25, ttl / 12)


class HeadLeadership:
    def __init__(self, storage: Storage, address: str, *, is_standby: bool,
                 on_leader: Callable[[int], None], on_step_down: Callable[[str], None],
                 on_refused: Callable[[str], None], on_serving: Callable[[bool], None]) -> None:
        ttl, renew, self.poll_s = lease_timings()
        self.head_id = os.urandom(8).hex()
        self.logic = L.Leadership(self.head_id, address, ttl_s=ttl, renew_interval_s=renew, is_standby=is_standby)
        self.storage = storage
        self.address = address
        self._on_leader, self._on_step_down, self._on_refused = on_leader, on_step_down, on_refused
        self._on_leader = lambda epoch: (self._mark_led(), on_leader(epoch))  # led_since before the restore
        self._on_serving = on_serving
        self._events: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ember-lease", daemon=True)
        self._last_standby_note = 0.0
        self._standbys: list[list[Any]] = []
        self.view = m.HeadRole(False, 0, "", address, "watching", [])  # read by the event loop
        self.led_since = 0.0  # time.monotonic() when this head began leading (0: it does not lead)

    def _mark_led(self) -> None:
        """Before the control store restores (so restored nodes' grace never starts earlier):
        ``led_s`` in ``WhoLeads`` answers then over-states the time since the restore (safe)."""
        if not self.led_since:
            self.led_since = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def write_fenced(self) -> None:
        """From any thread: a fenced write was refused."""
        self._events.put(L.WriteFenced())

    def stop(self, release: bool) -> None:
        """Stop the thread; a leader releases the lease first (the next head takes it at once)."""
        if release:
            self._events.put(L.StopRequested())
        self._stop.set()
        self._thread.join(timeout=5)
        if self.logic.is_standby and not self.logic.epoch:  # a standby that never led: no longer there
            try:
                self.storage.delete(L.TABLE, L.STANDBY_PREFIX + self.head_id.encode())
            except StorageError:
                pass
        self.storage.close()

    # --- the lease thread -------------------------------------------------------------------------
    def _run(self) -> None:
        self._carry_out([L.ReadLease()])
        while True:
            stopping = self._stop.wait(self.poll_s)
            while not self._events.empty():
                self._carry_out(self.logic.handle(self._events.get(), time.monotonic()))
            if stopping or self.logic.role in (L.Role.REFUSED, L.Role.STOPPED, L.Role.DEPOSED):
                return
            self._carry_out(self.logic.handle(L.Ticked(), time.monotonic()))
            self._note_standby()

    def _carry_out(self, effects: list[Any]) -> None:
        while effects:
            eff = effects.pop(0)
            try:
                effects += self._one(eff)
            except StorageError as e:
                if isinstance(eff, L.TryRenew):
                    effects += self.logic.handle(L.RenewFailed(str(e)), time.monotonic())
                elif isinstance(eff, L.TryTakeover):
                    effects += self.logic.handle(L.TakeoverDone(False, eff.lease), time.monotonic())
                else:
                    log.warning("lease storage: %s", e)
        self._update_view()

    def _one(self, eff: Any) -> list[Any]:
        s, now = self.storage, time.monotonic
        if isinstance(eff, L.ReadLease):
            raw, fence = s.get(L.TABLE, L.LEASE_KEY), s.get(L.TABLE, L.EPOCH_KEY)
            return self.logic.handle(L.LeaseRead(raw, int(fence) if fence else 0), now())
        if isinstance(eff, L.TryTakeover):
            won = s.guarded_batch([(L.TABLE, L.LEASE_KEY, eff.expected_raw), (L.TABLE, L.EPOCH_KEY, eff.expected_fence)],
                                  [(L.TABLE, L.LEASE_KEY, eff.lease.encode()),
                                   (L.TABLE, L.EPOCH_KEY, L.fence_value(eff.lease.epoch)),
                                   (L.TABLE, L.STANDBY_PREFIX + self.head_id.encode(), None)])
            return self.logic.handle(L.TakeoverDone(won, eff.lease), now())
        if isinstance(eff, L.TryRenew):
            started = now()
            ok = s.guarded_batch([(L.TABLE, L.LEASE_KEY, eff.expected_raw)], [(L.TABLE, L.LEASE_KEY, eff.lease.encode())])
            return self.logic.handle(L.RenewDone(ok, started), now())
        if isinstance(eff, L.Release):
            s.guarded_batch([(L.TABLE, L.LEASE_KEY, eff.expected_raw)], [(L.TABLE, L.LEASE_KEY, eff.lease.encode())])
            log.info("released the lease (epoch %d)", eff.lease.epoch)
        elif isinstance(eff, L.BecomeLeader):
            log.warning("this head leads now (epoch %d)", eff.epoch)
            self._on_leader(eff.epoch)
        elif isinstance(eff, L.StepDown):
            log.error("this head steps down: %s", eff.reason)
            self._on_step_down(eff.reason)
        elif isinstance(eff, L.Refuse):
            self._on_refused(eff.message)
        elif isinstance(eff, L.Suspend):
            log.error("this head stops serving until it renews its lease: %s", eff.reason)
            self._on_serving(False)
        elif isinstance(eff, L.Resume):
            log.warning("this head renewed its lease again (nobody took over): serving")
            self._on_serving(True)
        return []

    def _note_standby(self) -> None:
        """About once a second: a waiting head says it is there, and every head reads the list
        of standbys (for ``ember status``)."""
        t = time.time()
        if t - self._last_standby_note < 1.0:
            return
        self._last_standby_note = t
        try:
            if self.logic.role is L.Role.WATCHING and self.logic.is_standby:
                self.storage.put(L.TABLE, L.STANDBY_PREFIX + self.head_id.encode(),
                                 json.dumps([self.address, t]).encode())
            self._standbys = [s for s in standbys(self.storage) if s[0] != self.address]
        except StorageError:
            pass

    def _update_view(self) -> None:
        lg = self.logic
        hint = lg.leader_hint
        if not lg.is_leading:
            self.led_since = 0.0
        self.view = m.HeadRole(lg.is_leading, lg.epoch if lg.is_leading else (hint.epoch if hint else 0),
                               hint.address if hint else "", self.address, lg.role.value, self._standbys)


def standbys(storage: Storage) -> list[list[Any]]:
    """[[address, seconds since last seen]] of the standbys seen within three TTLs."""
    now, out = time.time(), []
    for _, raw in storage.scan(L.TABLE, L.STANDBY_PREFIX):
        try:
            address, seen = json.loads(raw)
        except ValueError:
            continue
        if now - float(seen) < 3 * CONFIG.head_lease_ttl_s:
            out.append([str(address), round(now - float(seen), 1)])
    return sorted(out)


def role_reply(leadership: Optional[HeadLeadership], address: str, is_leading: bool) -> m.HeadRole:
    """The answer to ``WhoLeads`` (never touches the storage: the lease thread keeps the view)."""
    if leadership is None:  # memory storage: no lease, this head leads
        return m.HeadRole(is_leading, 1 if is_leading else 0, address if is_leading else "", address,
                          "leading" if is_leading else "starting", [])
    v = leadership.view
    led_s = time.monotonic() - leadership.led_since if v.is_leader and leadership.led_since else 0.0
    return m.HeadRole(v.is_leader and is_leading, v.epoch, v.leader_address, address, v.role, v.standbys, led_s)
