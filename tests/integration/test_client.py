"""The remote client (ember://HOST:PORT, docs/client.md) against a head on this machine.

The test process is the client; the head (control store, node daemon, client server) runs
in its own processes, started once for the module.  Several-clients, bad-version and
wrong-token cases run a second client in a subprocess.  The multi-host cases (a cut link,
the grace period) are in test_client_bed.py.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ember
from ember import exceptions as exc
from ember.shells.shared import local_cluster
from ember.shells.wire import session

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def head():
    cluster = local_cluster.start_head(tied_to_parent=True, node_args=local_cluster.node_args(
        num_cpus=2, num_gpus=0, resources={"extra": 2}, object_store_memory=200 * 1024 * 1024, memory=None,
        spill_dir=None, labels=None))
    try:
        address = local_cluster.start_client_server(cluster, host="127.0.0.1", port=0, tied_to_parent=True)
        yield cluster, address
    finally:
        local_cluster.stop_cluster(cluster)
        session.remove_session_dir(cluster.session_dir)


@pytest.fixture(scope="module")
def client(head):
    cluster, address = head
    os.environ["EMBER_CLUSTER_TOKEN"] = cluster.token.decode()
    ember.init(f"ember://{address}", namespace="client-tests")
    try:
        yield address
    finally:
        ember.shutdown()
        os.environ.pop("EMBER_CLUSTER_TOKEN", None)


def _run_client(address: str, code: str, token: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBER_CLUSTER_TOKEN": token, "CLIENT_ADDRESS": f"ember://{address}"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout_s)


@ember.remote
def add(x, y=0):
    return x + y


@ember.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def inc(self, by=1):
        self.n += by
        return self.n


def test_the_client_is_a_core_worker_without_a_node(client):
    from ember.shells.worker.core_worker import get_core_worker
    cw = get_core_worker()
    assert cw.tunnel is not None and cw.shm is None
    assert cw.address.endswith(tuple("0123456789")) and cw.address != client  # its listener on the head


def test_tasks_and_wait(client):
    assert ember.get(add.remote(1, 2)) == 3
    refs = [add.remote(i, 1) for i in range(100)]
    ready, not_ready = ember.wait(refs, num_returns=100, timeout=60)
    assert len(ready) == 100 and not not_ready
    assert ember.get(refs) == list(range(1, 101))


def test_errors_come_back_as_task_errors(client):
    @ember.remote
    def boom():
        raise KeyError("bad key")

    with pytest.raises(KeyError, match="bad key"):
        ember.get(boom.remote())


def test_actors_named_detached_and_async(client):
    a = Counter.options(name="counter").remote(10)
    assert ember.get([a.inc.remote() for _ in range(3)]) == [11, 12, 13]
    same = ember.get_actor("counter")
    assert ember.get(same.inc.remote(2)) == 15

    @ember.remote
    class AsyncActor:
        async def double(self, x):
            await asyncio.sleep(0.01)
            return 2 * x

    b = AsyncActor.remote()
    assert ember.get([b.double.remote(i) for i in range(10)]) == [2 * i for i in range(10)]
    d = Counter.options(name="kept", lifetime="detached").remote()
    assert ember.get(d.inc.remote()) == 1
    ember.kill(d)
    ember.kill(a)
    with pytest.raises(exc.RayActorError):
        ember.get(a.inc.remote())


def test_put_get_small_and_large(client):
    assert ember.get(ember.put({"a": 1})) == {"a": 1}
    big = np.arange(3_000_000, dtype=np.int64)  # 24 MB: into the head node's store, in chunks
    ref = ember.put(big)
    back = ember.get(ref)
    assert back.dtype == big.dtype and np.array_equal(back, big)

    @ember.remote
    def total(x):
        return int(x.sum())

    assert ember.get(total.remote(ref)) == int(big.sum())          # the cluster reads the client's object
    assert ember.get(total.remote(big)) == int(big.sum())          # a large argument

    @ember.remote
    def make(n):
        return np.ones(n, dtype=np.uint8)

    assert ember.get(make.remote(20_000_000)).sum() == 20_000_000   # a large result, read in chunks


def test_refs_passed_both_ways(client):
    inner = ember.put(21)

    @ember.remote
    def deref(lst):
        return ember.get(lst[0]) * 2

    assert ember.get(deref.remote([inner])) == 42                  # a worker borrows the client's object

    @ember.remote
    def produce():
        return [ember.put("from the cluster")]

    [ref] = ember.get(produce.remote())                            # the client borrows a worker's object
    assert ember.get(ref) == "from the cluster"


def test_cancel(client):
    @ember.remote
    def sleepy():
        time.sleep(60)

    ref = sleepy.remote()
    time.sleep(0.5)
    ember.cancel(ref, force=True)
    with pytest.raises((exc.TaskCancelledError, exc.WorkerCrashedError)):
        ember.get(ref, timeout=60)


def test_runtime_context_and_resources(client):
    ctx = ember.get_runtime_context()
    assert ctx.namespace == "client-tests"
    assert ctx.get_job_id()
    assert ember.cluster_resources()["CPU"] == 2
    assert ember.cluster_resources()["extra"] == 2
    assert "CPU" in ember.available_resources()


def test_placement_group(client):
    from ember.util.placement_group import placement_group, remove_placement_group
    from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    pg = placement_group([{"CPU": 1}, {"extra": 1}], strategy="PACK")
    assert pg.wait(30)
    ref = add.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote(1, 1)
    assert ember.get(ref) == 2
    remove_placement_group(pg)


def test_runtime_env_working_dir_is_uploaded(client, tmp_path):
    (tmp_path / "client_only_module.py").write_text("VALUE = 'shipped from the client'\n")

    @ember.remote(runtime_env={"working_dir": str(tmp_path)})
    def read():
        import client_only_module
        return client_only_module.VALUE

    assert ember.get(read.remote()) == "shipped from the client"


def test_worker_output_is_streamed_to_the_client(client, capfd):
    @ember.remote
    def speak():
        print("hello from a worker via the client server")
        return 1

    assert ember.get(speak.remote()) == 1
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline and "hello from a worker" not in seen:
        time.sleep(0.2)
        seen += capfd.readouterr().out
    assert "hello from a worker via the client server" in seen


def test_unpicklable_value_is_a_clear_error_and_the_client_goes_on(client):
    import threading
    with pytest.raises(TypeError, match="lock"):
        ember.put(threading.Lock())
    with pytest.raises(TypeError):
        add.remote(threading.Lock())
    assert ember.get(add.remote(1, 1)) == 2


def test_object_over_the_store_limit_is_refused_clearly(client):
    with pytest.raises(exc.ObjectStoreFullError):
        ember.put(np.zeros(300 * 1024 * 1024, dtype=np.uint8))   # the store holds 200 MiB
    assert ember.get(ember.put(np.ones(10))).sum() == 10


def test_a_dropped_tunnel_is_resumed_without_repeating_a_call(client):
    from ember.shells.worker.core_worker import get_core_worker
    cw = get_core_worker()
    counter = Counter.remote()
    before = ember.put(np.arange(1_000_000))
    assert ember.get(counter.inc.remote()) == 1
    reconnects = cw.tunnel.reconnects
    cw.loop.call_soon_threadsafe(cw.tunnel.conn.abort)              # the connection drops
    refs = [counter.inc.remote() for _ in range(20)]                # calls made while it is down
    assert ember.get(refs, timeout=60) == list(range(2, 22))        # each ran once, in order
    assert ember.get(before).sum() == np.arange(1_000_000).sum()   # refs from before still work
    assert cw.tunnel.reconnects == reconnects + 1


def test_several_clients_each_with_its_own_job_and_namespace(client, head):
    cluster, address = head
    mine = Counter.options(name="shared-name").remote(100)
    assert ember.get(mine.inc.remote()) == 101
    job = ember.get_runtime_context().get_job_id()
    out = _run_client(address, """
        import os, ember
        ember.init(os.environ["CLIENT_ADDRESS"])
        ctx = ember.get_runtime_context()
        try:
            ember.get_actor("shared-name")
            print("SEEN")
        except ValueError:
            print("NOT-SEEN")
        @ember.remote
        class C:
            def v(self): return "theirs"
        c = C.options(name="shared-name").remote()
        print(ember.get(c.v.remote()), ctx.namespace, ctx.get_job_id())
        ember.shutdown()
    """, cluster.token.decode())
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "NOT-SEEN"
    value, namespace, other_job = lines[1].split()
    assert value == "theirs" and namespace != "client-tests" and other_job != job
    assert ember.get(mine.inc.remote()) == 102                      # the other client did not disturb this one


def test_a_client_without_the_token_is_refused(head):
    cluster, address = head
    out = _run_client(address, """
        import os, ember
        try:
            ember.init(os.environ["CLIENT_ADDRESS"])
        except ConnectionError as e:
            print("REFUSED", e)
    """, "not-the-token")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("REFUSED") and "token" in out.stdout


def test_a_version_mismatch_is_refused_clearly(head):
    cluster, address = head
    out = _run_client(address, """
        import os, ember
        import ember.shells.wire.tunnel as tunnel
        tunnel.CLIENT_PROTOCOL_VERSION = "0"
        try:
            ember.init(os.environ["CLIENT_ADDRESS"])
        except RuntimeError as e:
            print("MISMATCH", e)
    """, cluster.token.decode())
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("MISMATCH Version mismatch"), out.stdout


def test_ray_scheme_works_with_import_ember_as_ray(head):
    cluster, address = head
    out = _run_client(address, f"""
        import ember as ray
        ray.init("ray://{address}")
        @ray.remote
        def f(x):
            return x * 3
        print(ray.get(f.remote(5)))
        ray.shutdown()
    """, cluster.token.decode())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "15"


def test_garbage_on_the_client_port_does_not_disturb_the_server(client):
    import socket
    host, port = client.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"\x00\x00\x00\x10" + b"\x80\x05garbage-pickle!!" * 4)
        sock.settimeout(10)
        try:
            while sock.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass
    assert ember.get(add.remote(2, 2)) == 4


def test_ember_scheme_naming_a_control_store_still_joins_it_as_a_driver(head):
    cluster, _ = head
    out = _run_client(cluster.gcs_address, """
        import os, ember
        from ember.shells.worker.core_worker import get_core_worker
        ember.init(os.environ["CLIENT_ADDRESS"])
        @ember.remote
        def f():
            return 7
        print(ember.get(f.remote()), get_core_worker().tunnel is None)
        ember.shutdown()
    """, cluster.token.decode())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7 True"
