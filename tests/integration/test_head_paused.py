"""A paused head (SIGSTOP): its sockets stay open, so only its silence tells.

The driver runs in a subprocess with ``EMBER_GCS_RECONNECT_TIMEOUT_S`` small; it pauses its
private cluster's control store and checks that a call that needs the head fails with
``HeadUnreachableError`` after the window instead of waiting forever, that tasks (which never
need the head) go on meanwhile, and that the node daemon, which sees its heartbeats go
unanswered, fences its actors and exits (the head counts as lost).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(180)

RECONNECT_TIMEOUT_S = 4

DRIVER = textwrap.dedent("""
    import os, signal, sys, time
    import psutil
    import ember
    from ember import lifecycle

    ember.init(num_cpus=2)

    @ember.remote
    def plus_1(x):
        return x + 1

    def outcome(fn):
        t0 = time.monotonic()
        try:
            value = repr(fn())
        except Exception as e:
            value = type(e).__name__ + ": " + str(e).replace("\\n", " ")
        return value, time.monotonic() - t0

    assert ember.get(plus_1.remote(1), timeout=60) == 2
    head = lifecycle._local_cluster.procs[0].pid
    daemons = [p.pid for p in lifecycle._local_cluster.procs[1:]]
    os.kill(head, signal.SIGSTOP)
    try:
        print("DURING task", outcome(lambda: ember.get(plus_1.remote(2), timeout=30))[0], flush=True)
        value, took = outcome(lambda: ember.get_actor("nobody"))
        print("DURING named", value, flush=True)
        print("TOOK", "%.1f" % took, flush=True)
        value, _ = outcome(lambda: ember.nodes())
        print("AFTER nodes", value, flush=True)
        deadline = time.monotonic() + 60
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in daemons):
            assert time.monotonic() < deadline, "the node daemon did not exit"
            time.sleep(0.2)
        print("DAEMONS gone", flush=True)
    finally:
        os.kill(head, signal.SIGCONT)
    ember.shutdown()
    print("DONE", flush=True)
""")


def test_paused_head_counts_as_lost_after_the_window(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "RAY_ADDRESS")}
    env.update(EMBER_TMPDIR=str(tmp_path), EMBER_GCS_RECONNECT_TIMEOUT_S=str(RECONNECT_TIMEOUT_S))
    done = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=150)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = {" ".join(line.split(" ", 2)[:2]): line.split(" ", 2)[2] for line in out.splitlines()
             if line.startswith(("DURING", "AFTER"))}
    assert lines["DURING task"] == "3", out
    head_lost = "HeadUnreachableError: System error: The control store (head) at"
    assert lines["DURING named"].startswith(head_lost), out
    assert lines["AFTER nodes"].startswith(head_lost), out
    assert "DAEMONS gone" in out and "DONE" in out, out
    assert err.count("answered nothing for") == 1, err
