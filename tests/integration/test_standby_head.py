"""Issue #11 section 3 on one machine (loopback): an active head and a standby sharing a real
Redis; the standby takes over when the active head is SIGKILLed or paused, a deposed head's
late write never lands, a second active head is refused, ``ember status`` names the leader.

Each "machine" is a CLI harness with its own session root; both heads share the cluster token
(EMBER_CLUSTER_TOKEN).  The multi-host versions (kill a host, cut its link) are in
tests/integration/test_standby_bed.py.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import textwrap
import time
from typing import Iterator

import psutil
import pytest

from cli_harness import CliHarness, free_port
from ember.logic.control import leadership as L
from ember.protocol import messages as m
from ember.shells.control.storage import open_storage
from ember.shells.wire import rpc

pytestmark = pytest.mark.timeout(300)


class Redis:
    def __init__(self, directory: str, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", host, "--dir", directory,
                                      "--save", "", "--appendonly", "yes"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class TwoHeads:
    """Machine A: the active head (control store + node daemon); machine B: the standby head and a
    node daemon given both addresses."""

    def __init__(self, tmp: str, redis: Redis) -> None:
        self.token = secrets.token_hex(32)
        env = {"EMBER_CLUSTER_TOKEN": self.token, "EMBER_GCS_RECONNECT_TIMEOUT_S": "60"}
        self.a = CliHarness(os.path.join(tmp, "a"), env)
        self.b = CliHarness(os.path.join(tmp, "b"), env)
        os.makedirs(self.a.root)
        os.makedirs(self.b.root)
        self.redis = redis
        self.port_a, self.port_b = free_port(), free_port()
        self.addr_a, self.addr_b = f"127.0.0.1:{self.port_a}", f"127.0.0.1:{self.port_b}"
        self.addresses = f"{self.addr_a},{self.addr_b}"

    def start(self) -> None:
        done = self.a.ember("start", "--head", "--port", str(self.port_a), "--storage", self.redis.url,
                            "--num-cpus", "1", "--include-dashboard", "false")
        assert done.returncode == 0, done.stderr
        done = self.b.ember("start", "--head", "--standby", "--port", str(self.port_b), "--storage", self.redis.url)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Standby head (control store) waiting" in done.stdout, done.stdout
        done = self.b.ember("start", "--address", self.addresses, "--num-cpus", "4", "--resources", '{"b": 8}')
        assert done.returncode == 0, done.stdout + done.stderr

    def control_store(self, harness: CliHarness) -> psutil.Process:
        entry = next(e for e in harness.pid_entries() if e["role"] == "control_store")
        return psutil.Process(entry["pid"])

    def stop(self) -> None:
        for harness in (self.b, self.a):
            harness.ember("stop", "--force", timeout_s=60)


@pytest.fixture
def heads(tmp_path) -> Iterator[TwoHeads]:
    redis = Redis(str(tmp_path))
    two = TwoHeads(str(tmp_path), redis)
    try:
        two.start()
        yield two
    finally:
        two.stop()
        redis.stop()


class _Quiet:
    def handle_message(self, *args: object) -> None:
        return None

    def connection_lost(self, conn: object) -> None:
        return None


def who_leads(address: str, token: str) -> m.HeadRole:
    async def ask() -> m.HeadRole:
        conn = await rpc.connect(address, token.encode(), _Quiet(), "client", 5)
        try:
            return await conn.request(m.WhoLeads(), timeout_s=5)
        finally:
            conn.close()
    return asyncio.run(ask())


def wait_leader(address: str, token: str, epoch: int, timeout_s: float = 60) -> m.HeadRole:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            role = who_leads(address, token)
            if role.is_leader and role.epoch == epoch:
                return role
        except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError):
            pass
        assert time.monotonic() < deadline, f"{address} did not lead with epoch {epoch}"
        time.sleep(0.1)


DRIVER = textwrap.dedent("""
    import os, signal, sys, time
    import ember
    from ember import lifecycle
    from ember.protocol import messages as m

    addresses, victim = sys.argv[1], int(sys.argv[2])
    ember.init(address=addresses)
    cw = lifecycle.core_worker_or_init()

    @ember.remote(resources={"b": 1})
    class Counter:
        def __init__(self):
            self.n = 0
        def add(self):
            self.n += 1
            return self.n

    @ember.remote(resources={"b": 1})
    def square(x):
        time.sleep(0.02)
        return x * x

    keeper = Counter.options(name="keeper", lifetime="detached", namespace="keep").remote()
    assert ember.get(keeper.add.remote(), timeout=60) == 1
    cw.run_sync(cw.gcs.request(m.KvPut("user", b"before", b"1", True)), 30)
    from ember.util.placement_group import get_placement_group, placement_group, remove_placement_group
    from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    pg = placement_group([{"b": 1, "CPU": 1}], name="pg1", lifetime="detached")
    assert pg.wait(60)
    refs = [square.remote(i) for i in range(100)]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    calls = [ember.get(keeper.add.remote(), timeout=60) for _ in range(5)]  # no head needed
    refs += [square.remote(i) for i in range(100, 200)]
    print("OUTAGE calls", calls, flush=True)
    again = ember.get_actor("keeper", namespace="keep")  # needs the head: waits for the standby
    print("FAILOVER_S %.2f" % (time.monotonic() - killed), flush=True)
    print("AFTER actor", ember.get(again.add.remote(), timeout=60), flush=True)
    print("AFTER tasks", sum(ember.get(refs, timeout=120)) == sum(i * i for i in range(200)), flush=True)
    fresh = Counter.remote()
    print("AFTER new actor", ember.get(fresh.add.remote(), timeout=60), flush=True)
    conn = cw.run_sync(cw.head.conn(), 30)
    print("AFTER kv", cw.run_sync(conn.request(m.KvGet("user", b"before")), 30).value, flush=True)
    pg2 = get_placement_group("pg1")
    in_pg = square.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg2, 0)).remote(7)
    print("AFTER pg", pg2.id == pg.id, ember.get(in_pg, timeout=60), flush=True)
    remove_placement_group(pg2)
    cw.run_sync(conn.request(m.KvPut("user", b"after", b"2", True)), 30)
    ember.shutdown()
    print("DONE", flush=True)
""")


def test_standby_takes_over_when_the_active_head_is_killed(heads: TwoHeads) -> None:
    deadline = time.monotonic() + 30
    while not wait_leader(heads.addr_a, heads.token, 1).standbys:  # the standby notes itself every second
        assert time.monotonic() < deadline, "the leader never saw the standby"
        time.sleep(0.2)
    assert wait_leader(heads.addr_a, heads.token, 1).standbys[0][0] == heads.addr_b
    victim = heads.control_store(heads.a)
    done = heads.b.python(DRIVER.replace("sys.argv[1]", repr(heads.addresses))
                          .replace("int(sys.argv[2])", str(victim.pid)), timeout_s=240)
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr[-4000:]}"
    lines = [ln for ln in out.splitlines() if ln.startswith(("OUTAGE", "AFTER", "DONE"))]
    assert lines == ["OUTAGE calls [2, 3, 4, 5, 6]", "AFTER actor 7", "AFTER tasks True", "AFTER new actor 1",
                     "AFTER kv b'1'", "AFTER pg True 49", "DONE"], out
    role = wait_leader(heads.addr_b, heads.token, 2)
    assert role.leader_address == heads.addr_b
    with open_storage(heads.redis.url, check=False) as s:
        lease = L.Lease.decode(s.get(L.TABLE, L.LEASE_KEY))
        assert lease is not None and (lease.epoch, lease.address) == (2, heads.addr_b)
        assert s.get(L.TABLE, L.EPOCH_KEY) == b"2"
        assert s.get("kv", b"user\0after") == b"2"
    status = heads.b.ember("status", "--address", heads.addresses)
    assert status.returncode == 0, status.stderr
    assert f"Leader: {heads.addr_b} (epoch 2)" in status.stdout, status.stdout


def test_a_paused_head_is_deposed_and_its_late_write_never_lands(heads: TwoHeads) -> None:
    """SIGSTOP the leader with a KV write queued to it; the standby takes over; SIGCONT: the old
    head's write is fenced (or refused), the storage never holds it, and the old head comes back
    as a standby that names the new leader."""
    wait_leader(heads.addr_a, heads.token, 1)
    old = heads.control_store(heads.a)

    async def late_write() -> str:
        conn = await rpc.connect(heads.addr_a, heads.token.encode(), _Quiet(), "client", 5)
        await conn.request(m.KvPut("user", b"early", b"1", True), timeout_s=10)
        old.suspend()
        try:
            pending = asyncio.ensure_future(conn.request(m.KvPut("user", b"late", b"old-head", True), timeout_s=120))
            await asyncio.to_thread(wait_leader, heads.addr_b, heads.token, 2)
        finally:
            old.resume()
        try:
            await pending
            return "applied"
        except rpc.RpcError as e:
            return f"{e.kind}: {e.message}"
        except rpc.ConnectionLost:
            return "connection closed"
        finally:
            conn.close()

    answer = asyncio.run(late_write())
    assert answer != "applied", answer
    with open_storage(heads.redis.url, check=False) as s:
        assert s.get("kv", b"user\0early") == b"1"
        assert s.get("kv", b"user\0late") is None, "a write of the deposed head landed"
        assert s.get(L.TABLE, L.EPOCH_KEY) == b"2"
    deadline = time.monotonic() + 60
    while True:  # the old head restarted itself (same pid) as a standby naming the leader
        try:
            role = who_leads(heads.addr_a, heads.token)
            if role.role == "watching" and role.leader_address == heads.addr_b:
                break
        except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError):
            pass
        assert time.monotonic() < deadline, "the deposed head did not come back as a standby"
        time.sleep(0.2)
    assert old.is_running() and old.status() != psutil.STATUS_ZOMBIE
    status = heads.b.ember("status", "--address", heads.addresses)
    assert f"Leader: {heads.addr_b} (epoch 2)" in status.stdout, status.stdout
    deadline = time.monotonic() + 30
    while f"Standby: {heads.addr_a}" not in status.stdout and time.monotonic() < deadline:
        time.sleep(0.5)
        status = heads.b.ember("status", "--address", heads.addresses)
    assert f"Standby: {heads.addr_a}" in status.stdout, status.stdout


def test_second_active_head_is_refused_while_the_lease_is_held(heads: TwoHeads, tmp_path) -> None:
    wait_leader(heads.addr_a, heads.token, 1)
    third = CliHarness(str(tmp_path / "c"), {"EMBER_CLUSTER_TOKEN": heads.token})
    os.makedirs(third.root)
    done = third.ember("start", "--head", "--port", str(free_port()), "--storage", heads.redis.url,
                       "--include-dashboard", "false")
    try:
        assert done.returncode != 0
        assert "another head leads this storage" in done.stderr and heads.addr_a in done.stderr, done.stderr
        assert "--standby" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert who_leads(heads.addr_a, heads.token).is_leader
    finally:
        third.ember("stop", "--force")
    usage = third.ember("start", "--head", "--standby", "--port", str(free_port()))
    assert usage.returncode != 0 and "--standby needs a storage shared" in usage.stderr, usage.stderr


RECONCILE = textwrap.dedent("""
    import os, signal, sys, time
    import psutil
    import ember
    from ember import lifecycle
    from ember.protocol import messages as m

    addresses, victim = sys.argv[1], int(sys.argv[2])
    ember.init(address=addresses)

    @ember.remote(resources={"b": 1}, max_restarts=1)
    class Counter:
        def __init__(self):
            self.n = 0
        def add(self):
            self.n += 1
            return self.n, os.getpid()

    c = Counter.remote()
    n, worker = ember.get(c.add.remote(), timeout=60)
    os.kill(victim, signal.SIGKILL)      # the leading head
    os.kill(worker, signal.SIGKILL)      # the actor's worker, while no head listens
    try:
        psutil.Process(worker).wait(10)  # reaped by its zygote
    except psutil.NoSuchProcess:
        pass
    print("DEAD worker", not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE,
          flush=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            n2, worker2 = ember.get(c.add.remote(), timeout=30)
            break
        except ember.exceptions.RayActorError as e:
            assert time.monotonic() < deadline, e
            time.sleep(0.5)
    print("AFTER restarted", n2, worker2 != worker, flush=True)
    ember.shutdown()
""")


def test_restored_head_restarts_an_actor_whose_worker_died_while_no_head_listened(heads: TwoHeads) -> None:
    wait_leader(heads.addr_a, heads.token, 1)
    victim = heads.control_store(heads.a)
    done = heads.b.python(RECONCILE.replace("sys.argv[1]", repr(heads.addresses))
                          .replace("int(sys.argv[2])", str(victim.pid)), timeout_s=240)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("DEAD", "AFTER"))]
    assert lines == ["DEAD worker True", "AFTER restarted 1 True"], done.stdout + done.stderr[-4000:]


def test_a_node_declared_dead_stays_refused_by_the_next_leader(heads: TwoHeads) -> None:
    """The node table is in the storage: a node the old leader declared dead (drained here, while
    paused) is refused by the standby that took over, and exits when it resumes."""
    wait_leader(heads.addr_a, heads.token, 1)
    entry = next(e for e in heads.b.pid_entries() if e["role"] == "node_daemon")
    node = psutil.Process(entry["pid"])

    async def node_id_of(address: str) -> bytes:
        conn = await rpc.connect(heads.addr_a, heads.token.encode(), _Quiet(), "client", 5)
        try:
            nodes = (await conn.request(m.GetNodes(), timeout_s=10)).nodes
            node_id = next(n.node_id for n in nodes if n.address == address)
            node.suspend()
            await conn.request(m.DrainNode(node_id), timeout_s=10)
            return node_id
        finally:
            conn.close()

    node_id = asyncio.run(node_id_of(entry["address"]))
    try:
        heads.control_store(heads.a).kill()
        wait_leader(heads.addr_b, heads.token, 2)
    finally:
        node.resume()
    try:
        node.wait(60)  # refused by the new leader (NodeDeclaredDead): it exits
    except psutil.TimeoutExpired:
        raise AssertionError("the dead node was not refused by the new leader") from None
    status = heads.b.ember("status", "--address", heads.addresses)
    dead = status.stdout.split("Dead:", 1)[1].split("Resources", 1)[0]
    assert node_id.hex() in dead, status.stdout


def test_standby_start_refuses_an_incompatible_or_unreachable_storage(tmp_path) -> None:
    redis = Redis(str(tmp_path))
    harness = CliHarness(str(tmp_path / "s"), {"EMBER_CLUSTER_TOKEN": secrets.token_hex(32)})
    os.makedirs(harness.root)
    try:
        with open_storage(redis.url, check=False) as s:
            s.put("meta", b"schema_version", b"999")
            s.put("meta", b"ember_version", b"9.9.9")
        done = harness.ember("start", "--head", "--standby", "--port", str(free_port()), "--storage", redis.url)
        assert done.returncode != 0
        assert "written by ember 9.9.9 (storage schema 999)" in done.stderr and "this is ember" in done.stderr, \
            done.stderr
        done = harness.ember("start", "--head", "--standby", "--port", str(free_port()), "--storage",
                             f"redis://127.0.0.1:{free_port()}/0")
        assert done.returncode != 0 and "StorageUnavailable" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
    finally:
        harness.ember("stop", "--force")
        redis.stop()
