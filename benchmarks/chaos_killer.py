"""The chaos run's killer: a seeded thread that breaks a multi-host bed and times recoveries.

Every ``period`` seconds (drawn from the seed) it does one of:

- ``worker``: SIGKILL a random task worker (a child of a zygote, not hosting an actor) on a
  random non-head host;
- ``actor``:  SIGKILL the process of a random actor, then time until the actor answers from a new
  process (``actor_restart_s``);
- ``node``:   SIGKILL every process of a random non-head host (the machine dies), time until
  ``ember.nodes()`` shows it dead (``node_dead_s``), time gets of large objects that lived only
  there (``object_rebuild_s``; an ``ObjectLostError`` is counted in ``objects_unrecoverable``),
  then start a new daemon on that host so that capacity returns;
- ``cut``:    once per run (the others are random after one of each), take a random non-head host's link down for ``cut_s`` (a partition):
  time until it is declared dead, read its probes as for ``node``, restore the link, wait for its old daemon to exit (it is told it
  was declared dead), and start a new daemon there.

The head host (0) is never touched.  At most one host is down at a time.  All randomness comes
from ``random.Random(seed)``, so a seed replays the same schedule of faults (not the same timing).
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import psutil

import ember
from ember import exceptions as exc


@dataclass
class KillerStats:
    events: dict = field(default_factory=lambda: {"worker": 0, "actor": 0, "node": 0, "cut": 0})
    node_dead_s: list = field(default_factory=list)       # killed host: its connections reset
    partition_dead_s: list = field(default_factory=list)  # cut host: silence only
    actor_restart_s: list = field(default_factory=list)
    object_rebuild_s: list = field(default_factory=list)
    objects_unrecoverable: int = 0
    probes_wrong: int = 0
    errors: list = field(default_factory=list)
    log: list = field(default_factory=list)


class Killer(threading.Thread):
    def __init__(self, bed: Any, seed: int, duration_s: float, period_s: tuple[float, float], cut_s: float,
                 actors: Callable[[], list], probes: Callable[[str], list]) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.bed = bed
        self.rng = random.Random(seed)
        self.duration_s = duration_s
        self.period_s = period_s
        self.cut_s = cut_s
        self.actors = actors      # -> [(handle, last known pid)]
        self.probes = probes      # node id hex -> [(ObjectRef of a large object made there, its value)]
        self.stats = KillerStats()
        self.stop = threading.Event()
        self._down: set = set()             # hosts whose node is dead and not yet replaced
        self._replacing: list = []          # threads starting a new daemon on such a host
        self._t0 = 0.0

    # --- the schedule -------------------------------------------------------------------------
    def run(self) -> None:
        self._t0 = time.monotonic()
        first = ["worker", "actor", "node", "cut"]  # every kind of fault once, in a seeded order
        self.rng.shuffle(first)
        while not self.stop.is_set():
            if self.stop.wait(self.rng.uniform(*self.period_s)):
                return
            if time.monotonic() - self._t0 > self.duration_s - 5:
                return
            action = first[0] if first else self.rng.choices(["worker", "actor", "node"], weights=[5, 3, 1])[0]
            host = self.rng.randrange(1, len(self.bed.hosts))
            if host in self._down or (action in ("node", "cut") and self._down):
                continue  # at most one host down at a time: draw again after the next pause
            if first:
                first.pop(0)
            try:
                getattr(self, "_" + action)(host)
            except Exception as e:  # the run goes on; the report lists what the killer could not do
                self.stats.errors.append(f"{action} on host {host}: {type(e).__name__}: {e}")

    def _note(self, what: str) -> None:
        self.stats.log.append(f"{time.monotonic() - self._t0:7.1f}s {what}")

    # --- actions ----------------------------------------------------------------------------
    def _worker(self, host: int) -> None:
        actor_pids = {pid for _, pid in self.actors()}
        workers = [p for p in _zygote_children(self.bed, host) if p not in actor_pids]
        if not workers:
            return
        pid = self.rng.choice(sorted(workers))
        _kill(pid)
        self.stats.events["worker"] += 1
        self._note(f"SIGKILL task worker {pid} on host {host}")

    def _actor(self, host: int) -> None:
        actors = self.actors()
        if not actors:
            return
        index = self.rng.randrange(len(actors))
        handle, pid = actors[index]
        if not pid:
            return
        t0 = time.monotonic()
        _kill(pid)
        self.stats.events["actor"] += 1
        self._note(f"SIGKILL actor process {pid}")
        deadline = t0 + 120
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                new_pid = ember.get(handle.pid.remote(), timeout=2)
            except (exc.GetTimeoutError, exc.RayActorError, exc.ActorUnavailableError):
                time.sleep(0.05)
                continue
            if new_pid != pid:
                self.stats.actor_restart_s.append(time.monotonic() - t0)
                return
            time.sleep(0.05)

    def _node(self, host: int) -> None:
        node_id = self.bed.node_id(host)
        probes = list(self.probes(node_id))[:5]
        t0 = time.monotonic()
        self.bed.kill_host(host)
        self.stats.events["node"] += 1
        self._note(f"SIGKILL every process of host {host} (node {node_id[:8]})")
        self._down.add(host)
        self._time_death(node_id, t0)
        self._time_rebuilds(probes)
        self._replace_soon(host)

    def _cut(self, host: int) -> None:
        node_id = self.bed.node_id(host)
        daemons = _daemon_pids(self.bed, host)
        t0 = time.monotonic()
        self._down.add(host)
        self.bed.cut(host)
        self.stats.events["cut"] += 1
        self._note(f"cut host {host}'s link (node {node_id[:8]}) for {self.cut_s:.0f} s")
        probes = list(self.probes(node_id))[:5]
        try:
            self._time_death(node_id, t0, is_cut=True)
            self._time_rebuilds(probes)  # their only copy is behind the cut
            self.stop.wait(max(0.0, t0 + self.cut_s - time.monotonic()))
        finally:
            self.bed.restore(host)
        self._note(f"restored host {host}'s link")
        self._replace_soon(host, daemons)

    # --- helpers ----------------------------------------------------------------------------
    def _time_death(self, node_id: str, t0: float, is_cut: bool = False) -> None:
        deadline = t0 + 120
        while time.monotonic() < deadline:
            if {n["NodeID"]: n["Alive"] for n in ember.nodes()}.get(node_id) is False:
                (self.stats.partition_dead_s if is_cut else self.stats.node_dead_s).append(time.monotonic() - t0)
                self._note(f"node {node_id[:8]} declared dead after {time.monotonic() - t0:.1f} s")
                return
            time.sleep(0.05)
        self.stats.errors.append(f"node {node_id[:8]} not declared dead within 120 s")

    def _time_rebuilds(self, probes: list) -> None:
        for ref, expected in probes:
            t0 = time.monotonic()
            try:
                value = ember.get(ref, timeout=120)
                self.stats.object_rebuild_s.append(time.monotonic() - t0)
                if not (value == expected).all():
                    self.stats.probes_wrong += 1
            except exc.ObjectLostError:
                self.stats.objects_unrecoverable += 1
            except Exception as e:
                self.stats.errors.append(f"rebuilding an object: {type(e).__name__}: {str(e)[:200]}")

    def _replace_soon(self, host: int, old_daemons: Optional[list] = None) -> None:
        """Start a new daemon on the host in the background (capacity returns) while faults go on."""
        thread = threading.Thread(target=self._replace, args=(host, old_daemons or []), daemon=True)
        self._replacing.append(thread)
        thread.start()

    def _replace(self, host: int, old_daemons: list) -> None:
        try:
            deadline = time.monotonic() + 60  # a healed partition: told it was declared dead, it exits
            while any(psutil.pid_exists(p) and _status(p) != psutil.STATUS_ZOMBIE for p in old_daemons):
                if time.monotonic() > deadline:
                    self.stats.errors.append(f"host {host}'s old daemon outlived the healed partition by 60 s")
                    break
                time.sleep(0.1)
            self.bed.kill_host(host)  # leftovers of the old node (none, normally)
            self.bed.rejoin(host)
            self._note(f"host {host} rejoined as a new node")
        except Exception as e:
            self.stats.errors.append(f"replacing host {host}: {type(e).__name__}: {e}")
        finally:
            self._down.discard(host)

    def join_all(self, timeout_s: float) -> None:
        self.join(timeout_s)
        for thread in self._replacing:
            thread.join(timeout_s)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _status(pid: int) -> Optional[str]:
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return None


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def _daemon_pids(bed: Any, host: int) -> list[int]:
    return [p for p in bed.pids(host) if "node_daemon" in _cmdline(p)]


def _zygote_children(bed: Any, host: int) -> list[int]:
    pids = set(bed.pids(host))
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.ppid() in pids and "zygote" in _cmdline(proc.ppid()) and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out
