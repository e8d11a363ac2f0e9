"""The chaos run: a DAG of tasks and restartable actors on the multi-host bed while a seeded killer
breaks it; every result is checked against a local recomputation.

Builds a bed of ``--hosts`` hosts (network namespaces, tests/bed/netbed.py; needs root), connects
as the driver, and runs for ``--duration`` seconds:

- the job: waves of ``--wave`` tasks; every task of wave k takes two results of wave k-1 as
  object arguments (refs) and returns ``mix(i, a, b)``; one task in 16 returns its value as a
  128 KiB array, which lives in a node's shared-memory store (so its loss is a lost object).
  Each wave also calls every actor with refs of the wave (``Acc.apply``).  Two waves are in
  flight at a time; the driver keeps the refs of the newest large objects of every node as
  probes, which the killer reads back after killing that node (object rebuild times);
- the killer (benchmarks/chaos_killer.py): SIGKILLs task workers, actor processes and whole
  non-head hosts (then starts a new daemon there), and cuts one host's link for ``--cut-s``;
- each wave also makes ``PROBES_PER_WAVE`` large "probe" objects that the driver does not read
  (it reads only which node made them); after killing a node, the killer gets that node's newest
  probes: rebuilt from lineage (timed, and checked) or ``ObjectLostError`` (unrecoverable);
- every execution of a task or an actor method appends one line to a file in a directory shared
  by all hosts (the bed is one machine), so re-executions are counted exactly.

The report: tasks correct / wrong / missing, lost (``ObjectLostError``: an object whose only
copy died and was not rebuilt, and apart from those the tasks that never ran because an argument
was lost; with ``--retry-lost`` such a task is submitted again from the driver's checked values
of its arguments), other errors by type, executions and
re-executions, actor calls, and the p50/p99 of: declaring a node dead, restarting an actor,
rebuilding an object.  Exit status 0 when nothing is wrong or missing (and, with
``--strict``, nothing was lost or failed).

Run: sudo python benchmarks/chaos.py [--duration 600] [--seed 1] [--hosts 4] [--quick] [--json F]
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import ember  # noqa: E402
from bed.netbed import HostSpec, NetBed, bed_unavailable_reason  # noqa: E402
from chaos_killer import Killer  # noqa: E402
from ember import exceptions as exc  # noqa: E402

MOD = 1_000_003
LARGE_EVERY = 16
LARGE_WORDS = 16 * 1024           # 128 KiB of int64: above the 100 KiB inline limit
ACTORS = 3
ACTOR_CALLS_PER_WAVE = 4
PROBES_PER_NODE = 8
PROBES_PER_WAVE = 2


# --- the computation, and its local recomputation -------------------------------------------------
def mix(i: int, a: int, b: int) -> int:
    return (i * 7919 + a * 31 + b * 17 + (a ^ b)) % MOD


def value_of(x: Any) -> int:
    """A task result's value: an int, or a large array whose every word holds it."""
    if isinstance(x, np.ndarray):
        v = int(x[0])
        if not (x == v).all() or x.shape != (LARGE_WORDS,):
            return -1  # a torn or wrong array: counts as wrong
        return v
    return int(x)


def is_large(i: int) -> bool:
    return i % LARGE_EVERY == 0


def wrap(i: int, v: int) -> Any:
    return np.full(LARGE_WORDS, v, dtype=np.int64) if is_large(i) else v


def _record(log_dir: str, line: str) -> None:
    fd = os.open(os.path.join(log_dir, f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _work(i: int, task_ms: float) -> None:
    if task_ms > 0 and i % 4 == 0:  # a quarter of the tasks take a while: kills catch some running
        time.sleep(task_ms * 4 / 1000)


@ember.remote(max_retries=5)
def source(log_dir: str, i: int, task_ms: float) -> Any:
    _record(log_dir, f"t {i}")
    _work(i, task_ms)
    return wrap(i, (i * 104729) % MOD)


@ember.remote(max_retries=5)
def node_task(log_dir: str, i: int, a: Any, b: Any, task_ms: float) -> tuple:
    _record(log_dir, f"t {i}")
    _work(i, task_ms)
    return wrap(i, mix(i, value_of(a), value_of(b))), ember.get_runtime_context().get_node_id()


@ember.remote(max_retries=5)
def probe_task(log_dir: str, key: str, i: int, a: Any) -> tuple:
    """A large object nobody reads until its node is killed: its rebuild is what gets timed."""
    _record(log_dir, f"p {key}")
    return (np.full(LARGE_WORDS, mix(i, value_of(a), 7), dtype=np.int64),
            ember.get_runtime_context().get_node_id())


@ember.remote(num_cpus=0, resources={"chaos_actor": 1}, max_restarts=-1, max_task_retries=-1)
class Acc:
    """A restartable actor; its state (``calls``) starts again at 0 when it restarts."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.calls = 0

    def pid(self) -> int:
        return os.getpid()

    def apply(self, key: str, i: int, x: Any) -> int:
        _record(self.log_dir, f"a {key}")
        self.calls += 1
        return mix(i, value_of(x), 12345)


# --- the driver -----------------------------------------------------------------------------------
class Job:
    def __init__(self, args: argparse.Namespace, log_dir: str) -> None:
        self.args = args
        self.log_dir = log_dir
        self.rng = random.Random(args.seed)
        self.expected: dict[int, int] = {}
        self.outcome: collections.Counter = collections.Counter()
        self.errors: collections.Counter = collections.Counter()
        self.error_samples: dict[str, str] = {}
        self.actor_outcome: collections.Counter = collections.Counter()
        self.app_retries = 0
        self.actors: list = []
        self.actor_pids: dict[int, int] = {}
        self.probes: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=PROBES_PER_NODE))
        self.next_index = 0
        self.wave_deadline = 0.0
        self.wave_no = 0
        self.collecting_no = 0
        self.missing_samples: list = []
        self.last_progress_s = time.monotonic()

    def start_actors(self) -> None:
        self.actors = [Acc.remote(self.log_dir) for _ in range(ACTORS)]
        for k, a in enumerate(self.actors):
            self.actor_pids[k] = ember.get(a.pid.remote(), timeout=120)

    def actor_list(self) -> list:
        return [(a, self.actor_pids.get(k, 0)) for k, a in enumerate(self.actors)]

    def probe_refs(self, node_id: str) -> list:
        return list(self.probes.get(node_id, ()))

    # one wave: submit, collect -----------------------------------------------------------------
    def submit_wave(self, parents: Optional[list]) -> dict:
        n = self.args.wave
        self.wave_no += 1
        first = self.next_index
        self.next_index += n
        wave: dict = {"tasks": [], "calls": [], "no": self.wave_no}
        for i in range(first, first + n):
            if parents is None:
                self.expected[i] = (i * 104729) % MOD
                wave["tasks"].append((i, source.remote(self.log_dir, i, self.args.task_ms), None, None))
            else:
                (ia, ra), (ib, rb) = self.rng.sample(parents, 2)
                self.expected[i] = mix(i, self.expected[ia], self.expected[ib])
                refs = node_task.options(num_returns=2).remote(self.log_dir, i, ra, rb, self.args.task_ms)
                wave["tasks"].append((i, refs[0], refs[1], (ia, ib)))
        wave["probes"] = []
        for j in range(PROBES_PER_WAVE if parents is not None else 0):
            i, ref = self.rng.choice(parents)
            key = f"{first}.{j}"
            big, where = probe_task.options(num_returns=2).remote(self.log_dir, key, i, ref)
            wave["probes"].append((big, where, mix(i, self.expected[i], 7)))
        for k, actor in enumerate(self.actors):
            for j in range(ACTOR_CALLS_PER_WAVE):
                i, ref, _, _ = wave["tasks"][self.rng.randrange(n)]
                key = f"{k}.{i}.{j}"
                wave["calls"].append((key, i, actor.apply.remote(key, i, ref)))
        return wave

    def collect_wave(self, wave: dict) -> list:
        """Check every result of the wave and every actor call made with it; return [(index, ref)]
        of the tasks whose value was right (the next waves' arguments)."""
        self.wave_deadline = time.monotonic() + self.args.get_timeout_s  # for the whole wave
        self.collecting_no = wave["no"]
        refs = [t[1] for t in wave["tasks"]]
        ember.wait(refs, num_returns=len(refs), timeout=self.args.get_timeout_s)
        good = []
        for i, ref, _, parent_ids in wave["tasks"]:
            checked_ref = self._get_checked(i, ref, parent_ids)
            if checked_ref is not None:
                good.append((i, checked_ref))
        for big, where, expected in wave["probes"]:
            try:  # only the small "where" result is read: the large object keeps one copy
                self.probes[ember.get(where, timeout=self._left_s())].append((big, expected))
            except Exception as e:
                self.outcome["probe_failed"] += 1
                self.error_samples.setdefault("probe " + type(e).__name__, str(e)[:400])
        for key, i, ref in wave["calls"]:
            try:
                got = ember.get(ref, timeout=self._left_s())
            except exc.GetTimeoutError:
                self.actor_outcome["missing"] += 1
                continue
            except Exception as e:
                self.actor_outcome["error " + type(e).__name__] += 1
                self.error_samples.setdefault("actor " + type(e).__name__, str(e)[:400])
                continue
            expected = mix(i, self.expected[i], 12345)
            self.actor_outcome["correct" if got == expected else "wrong"] += 1
        return good

    def _left_s(self) -> float:
        return max(0.0, self.wave_deadline - time.monotonic())

    def _get_checked(self, i: int, ref: Any, parent_ids: Optional[tuple]) -> Optional[Any]:
        """Get and check task i; return its ref (or a retry's) when its value is right."""
        for attempt in range(2):
            try:
                got = ember.get(ref, timeout=self._left_s() if attempt == 0 else self.args.get_timeout_s)
            except exc.GetTimeoutError:
                self.outcome["missing"] += 1
                self.missing_samples.append(f"task {i} ({ref.hex()}) in wave {self.collecting_no}")
                return None
            except exc.ObjectLostError as e:
                # its own result lost, or (the task never ran) an argument lost upstream
                kind = "lost" if getattr(e, "object_ref_hex", "") == ref.hex() else "lost_dependency"
                if attempt == 0:
                    self.outcome[kind] += 1
                    self.error_samples.setdefault(kind, str(e)[:400])
                if attempt == 0 and self.args.retry_lost:
                    ref = self._resubmit(i, parent_ids)
                    continue
                return None
            except Exception as e:
                self.errors[type(e).__name__] += 1
                self.error_samples.setdefault(type(e).__name__, str(e)[:400])
                self.outcome["error"] += 1
                return None
            ok = value_of(got) == self.expected[i]
            self.outcome["correct" if ok else "wrong"] += 1
            if attempt == 1:
                self.outcome["recovered_by_app_retry"] += 1
            return ref if ok else None
        return None

    def _resubmit(self, i: int, parent_ids: Optional[tuple]) -> Any:
        """Application-level recovery of a lost result: run the task again from checked values."""
        self.app_retries += 1
        if parent_ids is None:
            return source.remote(self.log_dir, i)
        a, b = (ember.put(wrap(p, self.expected[p])) for p in parent_ids)
        return node_task.options(num_returns=2).remote(self.log_dir, i, a, b, self.args.task_ms)[0]

    def refresh_actor_pids(self) -> None:
        for k, a in enumerate(self.actors):
            try:
                self.actor_pids[k] = ember.get(a.pid.remote(), timeout=5)
            except Exception:
                pass

    def run(self, duration_s: float) -> None:
        """Waves back to back, two in flight; a wave takes as arguments the refs of the newest
        wave already checked (a task stuck or lost then costs its own wave, not every later one)."""
        t_end = time.monotonic() + duration_s
        checked: Optional[list] = None
        in_flight: collections.deque = collections.deque()
        while True:
            while len(in_flight) < 2 and time.monotonic() < t_end:
                in_flight.append(self.submit_wave(checked))
            if not in_flight:
                return
            t0 = time.monotonic()
            good = self.collect_wave(in_flight.popleft())
            if time.monotonic() - t0 > 5:
                print(f"  ... wave {self.collecting_no} took {time.monotonic() - t0:.1f} s to check", flush=True)
            if len(good) >= 2:
                checked = good
            self.refresh_actor_pids()
            if time.monotonic() - self.last_progress_s > 10:
                self.last_progress_s = time.monotonic()
                print(f"  ... {self.next_index} tasks submitted, {dict(self.outcome)}", flush=True)


# --- the report -----------------------------------------------------------------------------------
def count_executions(log_dir: str) -> tuple[int, int, int, int]:
    """(task executions, distinct tasks, actor call executions, distinct actor calls)."""
    tasks: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for name in os.listdir(log_dir):
        with open(os.path.join(log_dir, name)) as f:
            for line in f:
                kind, _, key = line.strip().partition(" ")
                if kind in ("t", "a"):
                    (tasks if kind == "t" else calls)[key] += 1
    return sum(tasks.values()), len(tasks), sum(calls.values()), len(calls)


def percentiles(xs: list) -> str:
    if not xs:
        return "n/a (0 samples)"
    s = sorted(xs)
    p50 = s[len(s) // 2]
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return f"p50 {p50:.2f} s, p99 {p99:.2f} s (n={len(s)})"


def report(args: argparse.Namespace, job: Job, killer: Killer, log_dir: str, wall_s: float) -> dict:
    execs, distinct, call_execs, distinct_calls = count_executions(log_dir)
    ks = killer.stats
    out = {
        "seed": args.seed, "hosts": args.hosts, "duration_s": round(wall_s, 1), "tasks": job.next_index,
        "correct": job.outcome["correct"], "wrong": job.outcome["wrong"], "missing": job.outcome["missing"],
        "lost": job.outcome["lost"], "lost_dependency": job.outcome["lost_dependency"], "recovered_by_app_retry": job.outcome["recovered_by_app_retry"],
        "failed": job.outcome["error"], "errors": dict(job.errors), "app_retries": job.app_retries,
        "task_executions": execs, "re_executions": execs - distinct,
        "actor_calls": dict(job.actor_outcome), "actor_call_re_executions": call_execs - distinct_calls,
        "probe_failed": job.outcome["probe_failed"], "probes_wrong": ks.probes_wrong, "kills": ks.events, "node_dead_s": ks.node_dead_s, "partition_dead_s": ks.partition_dead_s, "actor_restart_s": ks.actor_restart_s,
        "object_rebuild_s": ks.object_rebuild_s, "objects_unrecoverable": ks.objects_unrecoverable,
        "killer_errors": ks.errors, "missing_samples": job.missing_samples[:20], "error_samples": job.error_samples, "killer_log": ks.log,
    }
    print(f"chaos run: seed {args.seed}, {args.hosts} hosts, {wall_s:.0f} s, {job.next_index} tasks")
    print(f"  results:  correct {out['correct']}, wrong {out['wrong']}, missing {out['missing']}, "
          f"lost (ObjectLostError) {out['lost']} + {out['lost_dependency']} whose argument was lost, failed {out['failed']} {out['errors'] or ''}")
    if args.retry_lost:
        print(f"  app-level retries of lost results: {job.app_retries} "
              f"({out['recovered_by_app_retry']} recovered)")
    print(f"  executions: {execs} for {distinct} tasks ({execs - distinct} re-executions); actor calls "
          f"{dict(job.actor_outcome)}, {call_execs - distinct_calls} re-executed")
    print(f"  faults: {ks.events}")
    print(f"  declare a node dead: killed {percentiles(ks.node_dead_s)}; cut off {percentiles(ks.partition_dead_s)}")
    print(f"  restart an actor:    {percentiles(ks.actor_restart_s)}")
    print(f"  rebuild an object:   {percentiles(ks.object_rebuild_s)}; unrecoverable (ObjectLostError) "
          f"{ks.objects_unrecoverable}, wrong {ks.probes_wrong}, probes not made {out['probe_failed']}")
    for line in ks.log:
        print(f"  killer log: {line}")
    for line in ks.errors:
        print(f"  killer: {line}")
    for line in job.missing_samples[:5]:
        print(f"  missing: {line}")
    for kind, text in job.error_samples.items():
        print(f"  sample {kind}: {text[:300]}")
    return out


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of chaos (default 600)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hosts", type=int, default=4, help="hosts in the bed, the head included")
    parser.add_argument("--quick", action="store_true", help="a short run for CI: 45 s, small waves")
    parser.add_argument("--wave", type=int, default=0, help="tasks per wave (default 200; 50 with --quick)")
    parser.add_argument("--cut-s", type=float, default=0.0, help="how long one host's link is cut")
    parser.add_argument("--retry-lost", action="store_true",
                        help="submit a task again from its arguments' checked values when its result was lost")
    parser.add_argument("--strict", action="store_true", help="exit 1 also when results were lost or failed")
    parser.add_argument("--task-ms", type=float, default=5.0,
                        help="a quarter of the tasks sleep 4x this long (so that kills catch tasks running)")
    parser.add_argument("--get-timeout-s", type=float, default=0.0,
                        help="how long a wave's results may take before the rest count as missing "
                             "(default 120 s; 60 s with --quick)")
    parser.add_argument("--json", default="", help="write the report here as JSON")
    args = parser.parse_args(argv)
    if args.quick and args.duration == 600.0:
        args.duration = 45.0
    args.wave = args.wave or (50 if args.quick else 200)
    args.get_timeout_s = args.get_timeout_s or (60.0 if args.quick else 120.0)
    args.cut_s = args.cut_s or (8.0 if args.quick else 20.0)
    args.period = (1.0, 3.0) if args.quick else (4.0, 12.0)
    if args.hosts < 3:
        parser.error("--hosts must be at least 3 (the head, and two hosts to kill and fail over between)")
    return args


def run(args: argparse.Namespace) -> dict:
    reason = bed_unavailable_reason()
    if reason is not None:
        raise SystemExit(f"cannot build the bed: {reason}")
    log_dir = tempfile.mkdtemp(prefix="ember-chaos-exec-")
    os.chmod(log_dir, 0o777)
    specs = [HostSpec(num_cpus=1)] + [HostSpec(num_cpus=2, resources={"chaos_actor": 2})] * (args.hosts - 1)
    try:
        with NetBed(specs) as bed:
            bed.connect()
            job = Job(args, log_dir)
            job.start_actors()
            killer = Killer(bed, args.seed, args.duration, args.period, args.cut_s, job.actor_list, job.probe_refs)
            t0 = time.monotonic()
            killer.start()
            try:
                job.run(args.duration)
            finally:
                killer.stop.set()
                killer.join_all(timeout_s=300)
            out = report(args, job, killer, log_dir, time.monotonic() - t0)
            bed.disconnect()
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


def main() -> None:
    args = parse_args()
    # SIGTERM (timeout, a CI runner) unwinds so that the bed is torn down; a hang dumps every stack
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    faulthandler.dump_traceback_later(args.duration + 900, exit=False)
    faulthandler.register(signal.SIGUSR1)
    out = run(args)
    bad = out["wrong"] or out["missing"] or out["probes_wrong"] or (args.strict and (out["lost"] or out["lost_dependency"] or out["failed"]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
