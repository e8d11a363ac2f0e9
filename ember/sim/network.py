"""The modelled network: delay and bandwidth, per-connection order, loss as a reset, partitions.

ember talks over TCP, so the model keeps TCP's promises and breaks them only as TCP does:

- one connection per pair of endpoints, ordered per direction (a message never overtakes an
  earlier one on the same connection); messages on different connections reorder freely
  (delay = latency + exponential jitter + bytes / bandwidth);
- a lost message is a reset connection: the message and everything else in flight on that
  connection is dropped, and both ends are told (``link_reset(peer)``) after one latency;
- a partition holds a set of endpoints apart: what crosses it is delivered when it heals (TCP
  retransmits); nothing is reset by the partition itself;
- a crashed endpoint drops what arrives; its peers are told by ``crash(..., visible=True)``
  (a process died: the kernel resets its sockets) or only when the head declares it dead
  (the machine went silent).

Every message to or from a head endpoint is counted by kind, with its size (the projection's input).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from ember.sim.world import World


@dataclass
class NetParams:
    latency_s: float = 0.0002         # one way, between machines
    local_latency_s: float = 0.00003  # between processes on one machine
    jitter_s: float = 0.0001          # mean of the exponential extra delay
    bandwidth_bytes_per_s: float = 1.25e9
    loss: float = 0.0                 # probability that a message resets its connection


class Network:
    def __init__(self, world: World, params: NetParams) -> None:
        self.w = world
        self.p = params
        self.endpoints: dict[str, Any] = {}       # name -> object with link_reset(peer)
        self.machine: dict[str, str] = {}        # endpoint -> machine (same machine: local latency)
        self.down: set[str] = set()
        self.incarnation: Counter[str] = Counter()
        self.link_gen: Counter[tuple[str, str]] = Counter()
        self.peers: dict[str, set[str]] = {}
        self._last: dict[tuple[str, str], float] = {}
        self.isolated: dict[str, float] = {}      # endpoint -> when its partition heals
        self.head_msgs: Counter[str] = Counter()
        self.head_bytes: Counter[str] = Counter()
        self.msgs = 0
        self.resets = 0

    def add(self, name: str, obj: Any, machine: str) -> None:
        self.endpoints[name] = obj
        self.machine[name] = machine
        self.down.discard(name)
        self.incarnation[name] += 1

    @staticmethod
    def _key(a: str, b: str) -> tuple[str, str]:
        return (a, b) if a < b else (b, a)

    def send(self, src: str, dst: str, kind: str, fn: Callable[..., Any], *args: Any, size: int = 200) -> None:
        """Deliver ``fn(*args)`` at ``dst`` unless the connection resets or an end is down."""
        if src in self.down:
            return
        w = self.w
        self.msgs += 1
        if src[0] == "h" or dst[0] == "h":
            label = kind if dst[0] == "h" else kind + ">"
            self.head_msgs[label] += 1
            self.head_bytes[label] += size
        key = self._key(src, dst)
        self.peers.setdefault(src, set()).add(dst)
        self.peers.setdefault(dst, set()).add(src)
        if self.p.loss and w.rng.random() < self.p.loss:
            self.reset(src, dst)
            return
        p = self.p
        same = self.machine.get(src) == self.machine.get(dst)
        t = w.now + (p.local_latency_s if same else p.latency_s + w.rng.expovariate(1.0 / p.jitter_s))
        t += size / p.bandwidth_bytes_per_s
        heal = max(self.isolated.get(src, 0.0), self.isolated.get(dst, 0.0))
        if heal > w.now and self._apart(src, dst):
            t = max(t, heal + p.latency_s)
        t = max(t, self._last.get((src, dst), 0.0))
        self._last[(src, dst)] = t
        w.at(t, self._deliver, dst, self.link_gen[key], self.incarnation[src], self.incarnation[dst], src, fn, args)

    def _apart(self, a: str, b: str) -> bool:
        now = self.w.now
        return (self.isolated.get(a, 0.0) > now) != (self.isolated.get(b, 0.0) > now)

    def _deliver(self, dst: str, gen: int, inc_src: int, inc_dst: int, src: str, fn: Callable[..., Any],
                 args: tuple) -> None:
        if dst in self.down or self.link_gen[self._key(src, dst)] != gen:
            return
        if self.incarnation[src] != inc_src or self.incarnation[dst] != inc_dst:
            return
        fn(*args)

    def reset(self, a: str, b: str) -> None:
        """The connection between a and b broke: drop what is in flight, tell both ends."""
        self.resets += 1
        self.link_gen[self._key(a, b)] += 1
        for me, peer in ((a, b), (b, a)):
            obj = self.endpoints.get(me)
            if obj is not None and me not in self.down:
                self.w.after(self.p.latency_s, self._tell, me, self.incarnation[me], peer)

    def _tell(self, me: str, inc: int, peer: str) -> None:
        if me in self.down or self.incarnation[me] != inc:
            return
        self.endpoints[me].link_reset(peer)

    def crash(self, name: str, visible: bool) -> None:
        self.down.add(name)
        if visible:
            self.reset_all(name)

    def reset_all(self, name: str) -> None:
        """Every peer of ``name`` sees its connection to it reset."""
        for peer in sorted(self.peers.get(name, ())):
            self.reset(name, peer)

    def isolate(self, names: list[str], until_s: float) -> None:
        for n in names:
            self.isolated[n] = max(self.isolated.get(n, 0.0), until_s)

    def is_isolated(self, name: str) -> bool:
        return self.isolated.get(name, 0.0) > self.w.now

    def can_reach(self, a: str, b: str) -> bool:
        return b not in self.down and not self._apart(a, b)
