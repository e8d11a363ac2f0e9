"""Auth, malformed input and process failures against a real cluster."""
import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import ember
from ember import lifecycle
from ember import exceptions as exc
from ember.protocol import messages as m
from ember.shells.wire import rpc

pytestmark = pytest.mark.timeout(90)


class _Null:
    def handle_message(self, *a):
        pass

    def connection_lost(self, conn):
        pass


def _addresses():
    c = lifecycle._local_cluster
    return c.gcs_address, c.node_address, c.token


def test_token_file_is_private(cluster):
    path = os.path.join(lifecycle._local_cluster.session_dir, "token")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("which", [0, 1])
def test_wrong_token_is_refused_and_daemon_keeps_serving(cluster, which):
    address = _addresses()[which]

    async def attempt(token):
        conn = await rpc.connect(address, token, _Null(), "cli", timeout_s=5)
        reply = await conn.request(m.GetNodes() if which == 0 else m.NodeStats(), timeout_s=5)
        conn.close()
        return reply

    with pytest.raises((rpc.ConnectionLost, ConnectionError, OSError)):
        asyncio.run(attempt(b"not-the-token"))
    assert asyncio.run(attempt(_addresses()[2])) is not None


@ember.remote
def plus_1(x):
    return x + 1


@pytest.mark.parametrize("garbage", [
    b"\xff\xff\xff\xff" + b"x" * 100,          # a frame length far over the limit
    b"\x05\x00\x00\x00\xc1\xc1\xc1\xc1\xc1",  # a frame of invalid msgpack
    b"GET / HTTP/1.1\r\n\r\n",               # the wrong protocol entirely
])
def test_malformed_frames_close_only_that_connection(cluster, garbage):
    for address in _addresses()[:2]:
        host, port = rpc.split_address(address)
        with socket.create_connection((host, port), timeout=5) as s:
            s.recv(4096)  # the challenge
            s.sendall(garbage)
            s.settimeout(5)
            try:
                rest = s.recv(4096)
            except ConnectionResetError:
                rest = b""
            assert rest == b""  # closed by the daemon
    assert ember.get(plus_1.remote(1)) == 2


def test_killed_worker_is_retried(cluster, tmp_path):
    marker = str(tmp_path / "killed-once")

    @ember.remote(max_retries=2)
    def die_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"
    assert ember.get(die_once.remote(marker)) == "survived"


def test_worker_crash_without_retries_raises(cluster):
    @ember.remote(max_retries=0)
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    with pytest.raises(exc.WorkerCrashedError):
        ember.get(die.remote())
    assert ember.get(plus_1.remote(1)) == 2


DRIVER = textwrap.dedent("""
    import os, sys, time, ember
    ember.init(address=sys.argv[1])
    @ember.remote
    def hang():
        time.sleep(300)
    refs = [hang.remote() for _ in range(2)]
    time.sleep(1.5)
    print("READY", flush=True)
    time.sleep(300)
""")


def _worker_pids():
    """Pids of the workers forked by this test's cluster's zygote."""
    pids = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if "ember.shells.node.zygote" in " ".join(p.cmdline()):
                pids |= {c.pid for c in p.children() if c.status() != psutil.STATUS_ZOMBIE}
        except psutil.Error:
            pass
    return pids


def test_sigkilled_driver_frees_its_leases(cluster):
    gcs, _, token = _addresses()
    before = _worker_pids()
    env = dict(os.environ, EMBER_CLUSTER_TOKEN=token.decode())
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, gcs], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"READY"
        busy = _worker_pids() - before
        assert busy, "the other driver's tasks should run in new workers"
        proc.kill()
        proc.wait(10)
        deadline = time.time() + 15
        while time.time() < deadline and (busy & _worker_pids()):
            time.sleep(0.1)
        assert not (busy & _worker_pids()), "workers of the killed driver must be killed"
        assert ember.get([plus_1.remote(i) for i in range(4)]) == [1, 2, 3, 4]
    finally:
        if proc.poll() is None:
            proc.kill()


OWN_CLUSTER = textwrap.dedent("""
    import os, time, ember
    ember.init(num_cpus=1)
    @ember.remote
    def pid():
        return os.getpid()
    print("WORKER", ember.get(pid.remote()), flush=True)
    time.sleep(300)
""")


def test_sigkilled_driver_leaves_no_processes(no_cluster):
    proc = subprocess.Popen([sys.executable, "-c", OWN_CLUSTER], stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline().split()
        assert line[0] == b"WORKER"
        tree = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert int(line[1]) in tree  # the worker is forked by the zygote, inside the tree
        assert len(tree) >= 3
        proc.kill()
        proc.wait(10)
        deadline = time.time() + 10
        alive = [int(line[1])] + tree
        while time.time() < deadline:
            alive = [p for p in alive if _is_running(p)]
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, f"left behind: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_shutdown_leaves_no_processes(no_cluster):
    ember.init(num_cpus=1)
    assert ember.get(plus_1.remote(1)) == 2
    cluster_pids = [p.pid for p in psutil.Process().children(recursive=True)]
    assert cluster_pids
    ember.shutdown()
    deadline = time.time() + 10
    while time.time() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                         for p in cluster_pids):
        time.sleep(0.05)
    assert not [p for p in cluster_pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_driver_get_fails_when_its_node_daemon_dies(no_cluster):
    ember.init(num_cpus=1)
    try:
        @ember.remote
        def slow():
            time.sleep(60)
        ref = slow.remote()
        time.sleep(0.5)
        node = [p for p in psutil.Process().children() if "ember.shells.node.node_daemon" in " ".join(p.cmdline())][0]
        node.kill()
        with pytest.raises(exc.LocalRayletDiedError, match="node daemon"):
            ember.get(ref, timeout=20)
    finally:
        ember.shutdown()


def _is_running(pid: int) -> bool:
    """Alive and not a zombie; a process that exits while it is looked at is not running."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
