"""Losing the head (control store) without a durable head: a driver must never hang.

The driver runs in a subprocess with ``EMBER_GCS_RECONNECT_TIMEOUT_S`` small; it SIGKILLs
its private cluster's control store and checks what goes on during the reconnect window
and what fails, with a clear error, after it.  Its stderr is captured and its lines
counted: the loss is reported once, not once per retry.
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
    import ember
    from ember import lifecycle

    ember.init(num_cpus=2)

    @ember.remote
    def plus_1(x):
        return x + 1

    @ember.remote
    class Echo:
        def echo(self, x):
            return x

    def outcome(fn):
        t0 = time.monotonic()
        try:
            value = repr(fn())
        except Exception as e:
            value = type(e).__name__ + ": " + str(e).replace("\\n", " ")
        return value, time.monotonic() - t0

    echo = Echo.remote()
    assert ember.get(echo.echo.remote(1), timeout=60) == 1
    assert ember.get(plus_1.remote(1), timeout=60) == 2
    os.kill(lifecycle._local_cluster.procs[0].pid, signal.SIGKILL)
    time.sleep(0.5)
    # Inside the window: what does not need the head goes on.
    print("DURING actor", outcome(lambda: ember.get(echo.echo.remote(2), timeout=30))[0], flush=True)
    print("DURING task", outcome(lambda: ember.get(plus_1.remote(2), timeout=30))[0], flush=True)
    # Needs the head: waits for the window, then fails (never hangs).
    print("DURING named", outcome(lambda: ember.get_actor("nobody"))[0], flush=True)
    time.sleep(3)  # the node daemon exits at the end of its window too
    for what, fn in [("task", lambda: ember.get(plus_1.remote(3))),
                     ("actor", lambda: ember.get(echo.echo.remote(3))),
                     ("new_actor", lambda: ember.get(Echo.remote().echo.remote(4))),
                     ("put", lambda: ember.get(ember.put(5)))]:
        value, took = outcome(fn)
        print("AFTER", what, value, "took %.1f" % took, flush=True)
    ember.shutdown()
    print("DONE", flush=True)
""")


def test_head_killed_calls_fail_clearly_after_the_window_and_the_loss_is_said_once(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "RAY_ADDRESS")}
    env.update(EMBER_TMPDIR=str(tmp_path), EMBER_GCS_RECONNECT_TIMEOUT_S=str(RECONNECT_TIMEOUT_S))
    done = subprocess.run([sys.executable, "-c", DRIVER], env=env, capture_output=True, text=True, timeout=150)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = {" ".join(line.split(" ", 2)[:2]): line.split(" ", 2)[2] for line in out.splitlines()
             if line.startswith(("DURING", "AFTER"))}
    assert lines["DURING actor"] == "2" and lines["DURING task"] == "3", out
    head_lost = "System error: The control store (head) at"
    assert lines["DURING named"].startswith("HeadUnreachableError: " + head_lost), out
    assert lines["AFTER task"].startswith("LocalRayletDiedError:"), out
    assert "after losing the control store (head)" in lines["AFTER task"], out
    assert lines["AFTER actor"].startswith("ActorUnavailableError:") and head_lost in lines["AFTER actor"], out
    assert lines["AFTER new_actor"].startswith("ActorDiedError:") and head_lost in lines["AFTER new_actor"], out
    assert lines["AFTER put"].startswith("5 took"), out
    assert "DONE" in out
    # Said once each, not once per retry; nothing left pending at exit.
    assert err.count("Lost the connection to the control store") == 1, err
    assert err.count("stayed unreachable") == 1, err
    assert "retrying" not in err, err
    assert "Task was destroyed but it is pending" not in err, err


DRIVER_HEAD_COMES_BACK = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    import ember
    from ember import lifecycle
    from ember.shells.wire import session

    ember.init(num_cpus=2)

    @ember.remote
    def plus_1(x):
        return x + 1

    @ember.remote
    class Echo:
        def echo(self, x):
            return x

    @ember.remote
    def shout():
        print("HELLO-AFTER-RECONNECT", flush=True)
        return 5

    echo = Echo.remote()
    assert ember.get(echo.echo.remote(1), timeout=60) == 1
    cluster = lifecycle._local_cluster
    old = cluster.procs[0]
    os.kill(old.pid, signal.SIGKILL)
    old.wait()
    time.sleep(1.0)
    print("DURING actor", ember.get(echo.echo.remote(2), timeout=30), flush=True)
    # A head comes back at the same address (empty: no durable storage yet).
    port = cluster.gcs_address.rpartition(":")[2]
    log = open(os.path.join(cluster.session_dir, "logs", "control_store_again.err"), "wb")
    new = subprocess.Popen([sys.executable, "-m", "ember.shells.control.control_store", "--port", port,
                            "--token-file", session.token_path(cluster.session_dir),
                            "--session-dir", cluster.session_dir], stdout=subprocess.PIPE, stderr=log)
    cluster.procs[0] = new  # ember.shutdown() stops it
    assert new.stdout.readline().startswith(b"READY")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [n for n in ember.nodes() if n["Alive"]]:
        time.sleep(0.2)
    print("AFTER nodes", len([n for n in ember.nodes() if n["Alive"]]), flush=True)
    print("AFTER task", ember.get(plus_1.remote(1), timeout=30), flush=True)
    print("AFTER actor", ember.get(echo.echo.remote(3), timeout=30), flush=True)
    print("AFTER new_actor", ember.get(Echo.remote().echo.remote(4), timeout=30), flush=True)
    print("AFTER shout", ember.get(shout.remote(), timeout=30), flush=True)
    from ember.protocol import messages as m
    cw = lifecycle.core_worker_or_init()
    async def jobs():
        return (await (await cw.gcs_conn()).request(m.GetJobs())).jobs
    print("AFTER job_known", [j[0] for j in cw.run_sync(jobs()) if j[3]] == [cw.job_id], flush=True)
    time.sleep(1.0)  # the task's output streams back through the new control store
    ember.shutdown()
    print("DONE", flush=True)
""")


def test_head_back_at_the_same_address_within_the_window_is_reconnected(tmp_path) -> None:
    """The plug for the durable head: a control store restarted at the same address is found
    again by the driver and the node daemon (which registers again), and work goes on."""
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "RAY_ADDRESS")}
    env.update(EMBER_TMPDIR=str(tmp_path), EMBER_GCS_RECONNECT_TIMEOUT_S="60")
    done = subprocess.run([sys.executable, "-c", DRIVER_HEAD_COMES_BACK], env=env, capture_output=True, text=True,
                          timeout=150)
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    ours = [line for line in out.splitlines() if line.startswith(("DURING", "AFTER", "DONE"))]
    assert ours == ["DURING actor 2", "AFTER nodes 1", "AFTER task 2", "AFTER actor 3", "AFTER new_actor 4",
                    "AFTER shout 5", "AFTER job_known True", "DONE"], f"{out}\n{err}"
    assert "HELLO-AFTER-RECONNECT" in out, f"{out}\n{err}"  # the driver follows its job's logs again
    assert err.count("Lost the connection to the control store") == 1, err
    assert err.count("Reconnected to the control store") == 1, err
    assert "stayed unreachable" not in err and "Task was destroyed but it is pending" not in err, err
