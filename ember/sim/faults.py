"""The fault plan: a list of faults drawn from the seed before the run, so that it can be shrunk.

A fault is ``(at_s, kind, target, duration_s)``:

- ``crash``: a node daemon process dies (its connections reset at once); it restarts under a new
  node id after ``restart_after_s``;
- ``silent``: a node's machine goes silent (nothing resets; the head notices missed heartbeats);
- ``partition``: a node is cut off for ``duration_s`` (messages wait for the heal, as TCP does);
- ``worker``: one worker process on a node dies;
- ``failover``: the head's machine dies; a standby takes the leader lease once it expires;
- ``pause``: the head stops for ``duration_s`` (a long GC, a stalled VM); a standby takes over,
  and the old head, when it runs again, must be fenced off by the lease epoch.

Plus ``loss``: the probability that any message resets its connection (``NetParams.loss``).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

KINDS = ("crash", "silent", "partition", "worker", "failover", "pause")


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str
    target: int
    duration_s: float = 0.0

    def encode(self) -> str:
        return f"{self.at_s:.3f}:{self.kind}:{self.target}:{self.duration_s:.3f}"

    @staticmethod
    def decode(text: str) -> "Fault":
        try:
            at, kind, target, dur = text.split(":")
            fault = Fault(float(at), kind, int(target), float(dur))
        except ValueError:
            raise ValueError(f"bad fault {text!r}") from None
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {KINDS}")
        return fault


def draw(seed: int, nodes: int, horizon_s: float, rate_per_s: float, heads: bool = True) -> list[Fault]:
    """Faults at ``rate_per_s`` over ``[1, horizon_s]``; node targets among ``nodes`` (the drivers'
    nodes are skipped when the fault is applied)."""
    rng = random.Random(seed * 7919 + 13)
    out: list[Fault] = []
    t = 1.0
    weights = {"crash": 4, "silent": 2, "partition": 3, "worker": 6, "failover": 1 if heads else 0,
               "pause": 1 if heads else 0}
    kinds = [k for k in KINDS for _ in range(weights[k])]
    while rate_per_s > 0:
        t += rng.expovariate(rate_per_s)
        if t >= horizon_s:
            break
        kind = rng.choice(kinds)
        target = rng.randrange(1, nodes) if nodes > 1 else 0
        dur = {"partition": rng.uniform(0.5, 15.0), "pause": rng.uniform(1.0, 12.0)}.get(kind, 0.0)
        out.append(Fault(round(t, 3), kind, target, round(dur, 3)))
    return out


def schedule(cluster: Any, faults: list[Fault]) -> None:
    for f in faults:
        cluster.w.at(f.at_s, apply, cluster, f)


def apply(c: Any, f: Fault) -> None:
    if f.kind == "crash":
        c.crash_node(f.target, visible=True)
    elif f.kind == "silent":
        c.crash_node(f.target, visible=False)
    elif f.kind == "partition":
        node = c.nodes.get(f.target)
        if node is not None and node.alive and f.target not in c.protected:
            c.w.note(f"partition {node.name} for {f.duration_s:.1f} s")
            c.net.isolate([node.name], c.w.now + f.duration_s)
    elif f.kind == "worker":
        node = c.nodes.get(f.target)
        if node is not None and node.alive and node.workers:
            ids = sorted(node.workers)
            victim = ids[int(f.duration_s * 1000 + f.at_s * 1000) % len(ids)]
            c.w.note(f"kill worker {victim.hex()[-6:]} on {node.name}")
            node.run(node.lm.on_worker_died(victim))
            node.kill_worker(victim, "killed by the fault plan")
    elif f.kind in ("failover", "pause"):
        head = c.head_of(c.leader)
        if not head.active or len([h for h in c.heads if h.name not in c.net.down]) > 1:
            return  # one takeover at a time
        c.w.note(f"head {head.name} {'dies' if f.kind == 'failover' else f'pauses {f.duration_s:.1f} s'}")
        c.net.crash(head.name, visible=False)
        c.start_head()
        if f.kind == "pause":
            c.w.after(f.duration_s, head.resume)
