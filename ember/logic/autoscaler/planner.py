"""The budget-aware planner: one pure function from the cluster's state to launch/terminate orders.

    plan(PlanInput) -> Plan

Steps, each deterministic (ties broken by type name, node id, shape key; never by set or dict order):
  1. Fit: queued demand is first-fit (largest shape first) onto the free resources of the nodes there are
     (launching nodes count with their type's full resources); request_resources bundles onto their totals.
     A node that absorbs demand or a request is "in use" and is not terminated.
  2. Scale down: idle nodes past idle_timeout, not in use, holding no object that only they hold, never the
     head, most expensive first, while their type keeps more than max(min_workers, prepaid count).
  3. Budget drain: if the running rate is above max_cost_per_hour, or the forecast (spent + rate * hours
     left in the period) above total (the budget shrank), idle nodes in any idle time go, most expensive first
     (request_resources does not hold a node against the budget; queued demand does).
  4. Scale up: min_workers first, then the unmet shapes, largest first: first-fit into nodes planned this
     round, else launch the node type with the lowest marginal cost per copy of the shape it holds (prepaid
     capacity costs 0, so it goes first), within each type's max_workers, the cluster's max_workers, the
     upscaling_speed limit and the budget.  A shape no type can hold is "infeasible"; one blocked by a limit
     waits with the reason (and, over budget, what the cheapest node would cost).
Pending placement groups are demand too: STRICT_PACK as one summed shape, PACK/SPREAD bundle by bundle,
STRICT_SPREAD each bundle on a node of its own (existing, planned this round, or launched for it).
The bin packing is a greedy (first-fit decreasing with a cost-per-copy choice of type), not an optimum.
"""
from __future__ import annotations

import math

from ember.logic.resources import from_units, to_units

from .model import (Budget, LaunchNode, NodeState, NodeType, Plan, PlanInput, TerminateNode, Waiting)

EPS = 1e-9
MIN_PENDING = 5          # Ray's rule: scaling up always allows at least 5 pending launches


def _units(shape: dict) -> dict:
    return {k: u for k, v in shape.items() if (u := to_units(float(v))) > 0}


def _key(units: dict) -> tuple:
    return tuple(sorted(units.items()))


def _human(key: tuple) -> tuple:
    return tuple((r, from_units(u)) for r, u in key)


def _fits(bin_: dict, units: dict) -> int:
    """How many copies of `units` fit into `bin_` (a large number for an empty shape)."""
    n = 1 << 30
    for r, u in units.items():
        have = bin_.get(r, 0)
        if have < u:
            return 0
        n = min(n, have // u)
    return n


def _take(bin_: dict, units: dict, k: int) -> None:
    for r, u in units.items():
        bin_[r] -= u * k


def _first_fit(shapes: list, bins: list, used: set) -> list:
    """Pack [key, units, count] shapes into (id, bin) pairs; returns what is left, marks bins used."""
    left = []
    for key, units, count in shapes:
        for bid, b in bins:
            if count == 0:
                break
            k = min(count, _fits(b, units))
            if k:
                _take(b, units, k)
                count -= k
                used.add(bid)
        if count:
            left.append([key, units, count])
    return left


def _aggregate(pairs) -> list:
    agg: dict = {}
    for shape, count in pairs:
        units = _units(shape)
        if not units or count <= 0:
            continue
        key = _key(units)
        agg[key] = agg.get(key, 0) + int(count)
    return sorted(([k, dict(k), n] for k, n in agg.items()), key=lambda s: (-sum(s[1].values()), s[0]))


class _Ledger:
    """Counts, rate and budget as the plan is built."""

    def __init__(self, inp: PlanInput, types: dict) -> None:
        self.inp, self.types = inp, types
        self.count = {name: 0 for name in types}
        for n in inp.nodes:
            if not n.is_head and n.node_type in self.count:
                self.count[n.node_type] += 1
        self.workers = sum(self.count.values())
        self.rate = sum(self.marginal_at(name, c) for name in types for c in range(self.count[name]))

    def marginal_at(self, name: str, index: int) -> float:
        t = self.types[name]
        return 0.0 if index < t.prepaid_count(self.inp.now) else t.cost_per_hour

    def launch_cost(self, name: str) -> float:
        return self.marginal_at(name, self.count[name])

    def drop_saving(self, name: str) -> float:
        return self.marginal_at(name, self.count[name] - 1)

    def within(self, rate: float) -> bool:
        b: Budget = self.inp.budget
        if b.max_cost_per_hour is not None and rate > b.max_cost_per_hour + EPS:
            return False
        return b.total is None or self.forecast(rate) <= b.total + EPS

    def forecast(self, rate: float) -> float:
        return self.inp.spent + rate * max(0.0, self.inp.period_hours_left)

    def affordable(self, cost: float) -> bool:
        return cost <= 0 or self.within(self.rate + cost)


def _idle_candidates(inp: PlanInput, used: set, min_idle_s: float) -> list:
    out = []
    for n in inp.nodes:
        if n.is_head or n.launching or n.holds_only_copy or n.node_id in used or n.idle_since is None:
            continue
        if inp.now - n.idle_since >= min_idle_s:
            out.append(n)
    return out


def _terminate(inp, led, types, used, reason, min_idle_s, keep, stop) -> list:
    orders = []
    cands = _idle_candidates(inp, used, min_idle_s)
    cands.sort(key=lambda n: (-types[n.node_type].cost_per_hour, n.node_id))
    for n in cands:
        if stop():
            break
        if led.count[n.node_type] <= keep(types[n.node_type]):
            continue
        led.rate -= led.drop_saving(n.node_type)
        led.count[n.node_type] -= 1
        led.workers -= 1
        used.add(n.node_id)
        orders.append(TerminateNode(n.node_id, n.node_type, reason))
    return orders


class _Upscaler:
    def __init__(self, inp: PlanInput, led: _Ledger, types: dict) -> None:
        self.inp, self.led, self.types = inp, led, types
        self.tunits = {name: _units(t.resources) for name, t in types.items()}
        self.order = sorted(types)
        running = sum(1 for n in inp.nodes if not n.launching)
        pending = sum(1 for n in inp.nodes if n.launching)
        limit = max(MIN_PENDING, math.ceil(inp.upscaling_speed * max(1, running)))
        self.launch_room = max(0, limit - pending)
        self.launches: list = []
        self.bins: list = []          # [launch index, remaining units]
        self.waiting: list = []

    def _room(self, name: str) -> bool:
        return self.led.count[name] < self.types[name].max_workers and self.led.workers < self.inp.max_workers

    def _launch(self, name: str, serves: tuple) -> dict:
        cost = self.led.launch_cost(name)
        self.led.rate += cost
        self.led.count[name] += 1
        self.led.workers += 1
        self.launch_room -= 1
        self.launches.append(LaunchNode(name, cost, serves))
        b = dict(self.tunits[name])
        self.bins.append([len(self.launches) - 1, b])
        return b

    def min_workers(self) -> None:
        for name in self.order:
            t = self.types[name]
            while self.led.count[name] < t.min_workers:
                cost = self.led.launch_cost(name)
                why = self._blocked(name, cost)
                if why:
                    self.waiting.append(Waiting(dict(t.resources), t.min_workers - self.led.count[name], why,
                                                cost if why == "over budget" else None, f"min_workers of {name}"))
                    break
                self._launch(name, ("min_workers",))

    def _blocked(self, name: str, cost: float) -> str:
        if not self._room(name):
            return "max_workers"
        if self.launch_room <= 0:
            return "upscaling_speed"
        if not self.led.affordable(cost):
            return "over budget"
        return ""

    def shape(self, key: tuple, units: dict, count: int) -> None:
        fitting = [n for n in self.order if _fits(self.tunits[n], units)]
        if not fitting:
            self.waiting.append(Waiting(dict(_human(key)), count, "infeasible", None,
                                        "no node type has these resources"))
            return
        while count:
            for idx, b in self.bins:
                k = min(count, _fits(b, units))
                if k:
                    _take(b, units, k)
                    count -= k
                    self._note(idx, key)
                    if not count:
                        return
            name, why, cost = self._choose(fitting, units, count)
            if why:
                self.waiting.append(Waiting(dict(_human(key)), count, why, cost if why == "over budget" else None,
                                            self._detail(why, cost or 0.0)))
                return
            b = self._launch(name, (_human(key),))
            k = min(count, _fits(b, units))
            _take(b, units, k)
            count -= k

    def distinct(self, key: tuple, units: dict, taken: set) -> None:
        """One copy of a shape on a planned node not in ``taken`` (a STRICT_SPREAD group's), else a new one."""
        for idx, b in self.bins:
            if ("launch", idx) not in taken and _fits(b, units):
                _take(b, units, 1)
                taken.add(("launch", idx))
                self._note(idx, key)
                return
        fitting = [n for n in self.order if _fits(self.tunits[n], units)]
        if not fitting:
            self.waiting.append(Waiting(dict(_human(key)), 1, "infeasible", None, "no node type has these resources"))
            return
        name, why, cost = self._choose(fitting, units, 1)
        if why:
            self.waiting.append(Waiting(dict(_human(key)), 1, why, cost if why == "over budget" else None,
                                        self._detail(why, cost or 0.0)))
            return
        b = self._launch(name, (_human(key),))
        _take(b, units, 1)
        taken.add(("launch", len(self.launches) - 1))

    def _note(self, idx: int, key: tuple) -> None:
        ln = self.launches[idx]
        hk = _human(key)
        if hk not in ln.serves:
            self.launches[idx] = LaunchNode(ln.node_type, ln.cost_per_hour, ln.serves + (hk,))

    def _choose(self, fitting: list, units: dict, count: int):
        best, reasons = None, []
        for name in fitting:
            cost = self.led.launch_cost(name)
            why = self._blocked(name, cost)
            if why:
                reasons.append((why, cost))
                continue
            per = cost / min(count, _fits(self.tunits[name], units))
            score = (per, sum(self.tunits[name].values()), name)
            if best is None or score < best[0]:
                best = (score, name)
        if best is not None:
            return best[1], "", 0.0
        for why in ("over budget", "upscaling_speed", "max_workers"):
            costs = [c for w, c in reasons if w == why]
            if costs:
                return None, why, min(costs)
        return None, "max_workers", None

    def _detail(self, why: str, cost: float = 0.0) -> str:
        b = self.inp.budget
        if why == "over budget":
            parts = []
            if b.max_cost_per_hour is not None:
                parts.append(f"running ${self.led.rate:.2f}/h of max ${b.max_cost_per_hour:.2f}/h")
            if b.total is not None:
                parts.append(f"the period's forecast would be ${self.led.forecast(self.led.rate + cost):.2f} "
                             f"of total ${b.total:.2f}")
            return ", ".join(parts)
        if why == "upscaling_speed":
            return "too many launches pending; waits for the next round"
        return "every node type that fits is at its max_workers (or the cluster at max_workers)"


def _pg_demands(groups: tuple) -> tuple[list, list]:
    """Pending placement groups as demand: (shape, 1) pairs, and the STRICT_SPREAD groups' bundle lists.

    STRICT_PACK needs its bundles' sum on one node; PACK and SPREAD are best effort, so their bundles count
    one by one; STRICT_SPREAD needs each bundle on a node of its own (placed by _spread_group)."""
    pairs, spread = [], []
    for strategy, bundles in groups:
        shapes = [dict(b) for b in bundles if _units(dict(b))]
        if not shapes:
            continue
        if strategy == "STRICT_PACK":
            total: dict = {}
            for b in shapes:
                for r, v in b.items():
                    total[r] = total.get(r, 0.0) + float(v)
            pairs.append((total, 1))
        elif strategy == "STRICT_SPREAD":
            spread.append(sorted(shapes, key=lambda b: (-sum(_units(b).values()), _key(_units(b)))))
        else:
            pairs += [(b, 1) for b in shapes]
    return pairs, spread


def _spread_existing(bundles: list, free: list, used: set) -> tuple[list, set]:
    """A STRICT_SPREAD group's bundles onto existing nodes' free resources, at most one per node; returns
    the bundles left and the nodes taken (later bundles go to distinct new nodes: _Upscaler.distinct)."""
    taken: set = set()
    left = []
    for shape in bundles:
        units = _units(shape)
        for bid, b in free:
            if ("node", bid) not in taken and _fits(b, units):
                _take(b, units, 1)
                used.add(bid)
                taken.add(("node", bid))
                break
        else:
            left.append(units)
    return left, taken


def plan(inp: PlanInput) -> Plan:
    types = {t.name: t for t in inp.node_types}
    led = _Ledger(inp, types)
    nodes = sorted(inp.nodes, key=lambda n: n.node_id)
    used: set = set()
    free = [(n.node_id, _units(n.available if n.available is not None and not n.launching
                               else types[n.node_type].resources if n.node_type in types else {}))
            for n in nodes]
    pg_pairs, spread_groups = _pg_demands(inp.placement_groups)
    unmet = _first_fit(_aggregate(list(inp.demands) + pg_pairs), free, used)
    spread_left = [_spread_existing(bundles, free, used) for bundles in spread_groups]
    totals = [(n.node_id, _units(types[n.node_type].resources)) for n in nodes if n.node_type in types]
    pinned: set = set()    # nodes a request_resources bundle needs: kept when idle, not against the budget
    unmet += _first_fit(_aggregate((r, 1) for r in inp.requests), totals, pinned)
    tunits = [_units(t.resources) for t in types.values()]
    # the most constrained shapes first (fewest types hold them), then the largest
    unmet.sort(key=lambda s: (sum(1 for tu in tunits if _fits(tu, s[1])), -sum(s[1].values()), s[0]))

    terms = _terminate(inp, led, types, used | pinned, "idle", inp.idle_timeout_s,
                       keep=lambda t: max(t.min_workers, t.prepaid_count(inp.now)), stop=lambda: False)
    used |= {t.node_id for t in terms}
    terms += _terminate(inp, led, types, used, "budget", 0.0, keep=lambda t: t.min_workers,
                        stop=lambda: led.within(led.rate))
    up = _Upscaler(inp, led, types)
    up.min_workers()
    for left, taken in spread_left:
        for units in left:
            up.distinct(_key(units), units, taken)
    for key, units, count in unmet:
        up.shape(key, units, count)
    notes = () if led.within(led.rate) else (
        f"over budget: running ${led.rate:.2f}/h and no more idle nodes can be drained",)
    return Plan(tuple(up.launches), tuple(terms), tuple(up.waiting), led.rate, led.forecast(led.rate), notes)


def running_rate(inp: PlanInput) -> float:
    """What the worker nodes there are cost per hour (prepaid ones nothing)."""
    return _Ledger(inp, {t.name: t for t in inp.node_types}).rate
