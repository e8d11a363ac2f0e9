"""Issue #11: SIGKILL the head's control store of an ``ember start --head`` cluster (file
storage) and start it again with the same storage and port: the cluster goes on.

The control store is restarted with its own command line (what a supervisor - systemd,
a container's restart policy - runs; docs/head.md).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(300)

DRIVER = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    import ember
    from ember import lifecycle
    from ember.protocol import messages as m
    from ember.shells.wire import session

    session_dir, storage, port, supervised = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    ember.init(address="127.0.0.1:" + port)
    cw = lifecycle.core_worker_or_init()

    def kv(msg):
        return cw.run_sync(cw.gcs.request(msg), 30)

    @ember.remote
    class Counter:
        def __init__(self):
            self.n = 0
        def add(self):
            self.n += 1
            return self.n, os.getpid()

    @ember.remote
    def slow(x):
        time.sleep(4)
        return x + 1

    c = Counter.options(name="keeper", lifetime="detached", namespace="keep").remote()
    n, pid = ember.get(c.add.remote(), timeout=60)
    kv(m.KvPut("user", b"k1", b"v1", True))
    kv(m.KvPut("user", b"k2", b"v2", True))
    running = slow.remote(41)
    time.sleep(1)
    store = [p for p in session.read_pids(session_dir) if p["role"] == "control_store"][0]
    if supervised:  # ember start --head --supervise: the supervisor starts it again
        import psutil
        os.kill(psutil.Process(store["pid"]).children()[0].pid, signal.SIGKILL)
    else:  # what a supervisor of one's own (systemd, ...) runs
        os.kill(store["pid"], signal.SIGKILL)
        time.sleep(1)
        log = open(os.path.join(session_dir, "logs", "control_store_again.err"), "wb")
        new = subprocess.Popen([sys.executable, "-m", "ember.shells.control.control_store", "--port", port,
                                "--token-file", session.token_path(session_dir), "--session-dir", session_dir,
                                "--storage", storage], stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        assert new.stdout.readline().startswith(b"READY")
        print("NEWPID", new.pid, flush=True)
    print("AFTER running_task", ember.get(running, timeout=60), flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len([n for n in ember.nodes() if n["Alive"]]) < 2:
        time.sleep(0.2)
    print("AFTER nodes", len([n for n in ember.nodes() if n["Alive"]]), flush=True)
    again = ember.get_actor("keeper", namespace="keep")
    n2, pid2 = ember.get(again.add.remote(), timeout=60)
    print("AFTER actor", n2, pid2 == pid, flush=True)
    print("AFTER kv", kv(m.KvGet("user", b"k1")).value, kv(m.KvGet("user", b"k2")).value, flush=True)
    print("AFTER task", ember.get(slow.remote(1), timeout=60), flush=True)
    ember.shutdown()
    print("DONE", flush=True)
""")

SECOND_DRIVER = textwrap.dedent("""
    import sys
    import ember
    ember.init(address="127.0.0.1:" + sys.argv[1])
    a = ember.get_actor("keeper", namespace="keep")
    n, pid = ember.get(a.add.remote(), timeout=60)
    print("LATER actor", n, flush=True)
    ember.kill(a)
    import psutil, time
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and psutil.pid_exists(pid):
        time.sleep(0.2)
    print("LATER killed", not psutil.pid_exists(pid), flush=True)
    ember.shutdown()
""")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", ["file", "supervised", pytest.param("redis", marks=pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server missing: run scripts/install_test_deps.sh"))])
def test_control_store_killed_and_restarted_keeps_the_cluster(tmp_path, backend) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "RAY_ADDRESS")}
    env.update(EMBER_TMPDIR=str(tmp_path), EMBER_GCS_RECONNECT_TIMEOUT_S="60")
    ember_cli = [sys.executable, "-m", "ember.cli.main"]
    port = str(_free_port())
    redis = None
    if backend == "redis":
        redis_port = _free_port()
        redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir",
                                  str(tmp_path), "--save", "", "--appendonly", "yes"], stdout=subprocess.DEVNULL)
        storage = f"redis://127.0.0.1:{redis_port}/0"
    else:
        storage = f"file://{tmp_path}/state.db"
    new_pid = None

    def run(args, timeout=120):
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)

    try:
        started = run(ember_cli + ["start", "--head", "--port", port, "--storage", storage, "--num-cpus", "2",
                                   "--include-dashboard", "false"] + (["--supervise"] if backend == "supervised" else []))
        assert started.returncode == 0, started.stderr
        joined = run(ember_cli + ["start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1"])
        assert joined.returncode == 0, joined.stderr
        session_dir = [os.path.join(str(tmp_path), d) for d in os.listdir(tmp_path)
                       if os.path.exists(os.path.join(tmp_path, d, "token"))]
        from ember.shells.wire import session
        session_dir = [d for d in session_dir if any(p["role"] == "control_store" for p in session.read_pids(d))][0]
        done = run([sys.executable, "-c", DRIVER, session_dir, storage, port, "1" if backend == "supervised" else "0"], timeout=240)
        out, err = done.stdout, done.stderr
        new_pid = next((int(line.split()[1]) for line in out.splitlines() if line.startswith("NEWPID")), None)
        assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
        ours = [line for line in out.splitlines() if line.startswith(("AFTER", "DONE"))]
        assert ours == ["AFTER running_task 42", "AFTER nodes 2", "AFTER actor 2 True", "AFTER kv b'v1' b'v2'",
                        "AFTER task 2", "DONE"], f"{out}\n{err}"
        later = run([sys.executable, "-c", SECOND_DRIVER, port])
        assert "LATER actor 3" in later.stdout, later.stdout + later.stderr
        assert "LATER killed True" in later.stdout, later.stdout + later.stderr  # restored: no lease, still killed
        status = run(ember_cli + ["status", "--address", f"127.0.0.1:{port}"])
        assert status.returncode == 0, status.stderr
        assert "2 node(s)" in status.stdout and "(no dead nodes)" in status.stdout, status.stdout
    finally:
        if new_pid is not None:
            try:
                os.kill(new_pid, 9)
            except ProcessLookupError:
                pass
        run(ember_cli + ["stop", "--force"])
        if redis is not None:
            redis.terminate()
            redis.wait(10)
