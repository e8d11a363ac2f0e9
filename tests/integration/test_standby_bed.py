"""Issue #11 section 3 on the multi-host bed: a standby head takes over when the active head's
host is killed (SIGKILL of everything on it) or cut off (its link down), while a job runs tasks
and actors; the job completes with correct results and the storage (a real Redis on the bed's
bridge) shows that no write of the old head landed after the new epoch began.

Hosts: 0 = the active head (control store + node daemon), 1 = the standby head (control store)
and a node daemon, 2 = a node daemon where the driver runs.  Everyone is given both head
addresses.  Each test gets a fresh bed (each ruins host 0).
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Iterator

import pytest

from bed.netbed import HEAD_PORT, HostSpec, NetBed, bed_unavailable_reason
from ember.logic.control import leadership as L
from ember.protocol import messages as m
from ember.shells.control.storage import open_storage
from ember.shells.wire import rpc

pytestmark = pytest.mark.timeout(420)


class StandbyBed(NetBed):
    """A bed whose head keeps its state in a Redis on the bridge and has a standby on host 1."""

    def __init__(self) -> None:
        super().__init__([HostSpec(num_cpus=1), HostSpec(num_cpus=2, resources={"w": 4}),
                          HostSpec(num_cpus=2, resources={"w": 4, "keeper": 1})],
                         env={"EMBER_HEARTBEAT_TIMEOUT_S": "4"})
        self.redis: subprocess.Popen | None = None
        self.redis_url = ""

    @property
    def address(self) -> str:
        if len(self.hosts) < 2:
            return super().address
        return f"{self.hosts[0].ip}:{HEAD_PORT},{self.hosts[1].ip}:{HEAD_PORT}"

    def _start_head(self) -> None:
        os.makedirs(os.path.join(self.root_dir, "redis"), exist_ok=True)
        self.redis = subprocess.Popen(
            ["redis-server", "--port", "16379", "--bind", self.bridge_ip, "--dir", os.path.join(self.root_dir, "redis"),
             "--save", "", "--appendonly", "yes", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.redis_url = f"redis://{self.bridge_ip}:16379/0"
        deadline = time.monotonic() + 20
        while self.exec(0, ["redis-cli", "-h", self.bridge_ip, "-p", "16379", "ping"]).stdout.strip() != "PONG":
            assert time.monotonic() < deadline, "redis-server on the bridge did not start"
            time.sleep(0.1)
        head = self.head
        done = self.ember(0, "start", "--head", "--port", str(HEAD_PORT), "--node-ip-address", head.ip,
                          "--storage", self.redis_url, "--include-dashboard", "false",
                          *head.spec.start_args(), timeout_s=self.start_timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"ember start --head failed:\n{done.stdout}\n{done.stderr}")
        with open(os.path.join(head.tmpdir, "current_cluster")) as f:
            session_dir = json.load(f)["session_dir"]
        with open(os.path.join(session_dir, "token")) as f:
            self.token = f.read().strip()
        standby = self.hosts[1]
        done = self.ember(1, "start", "--head", "--standby", "--port", str(HEAD_PORT), "--node-ip-address",
                          standby.ip, "--storage", self.redis_url, timeout_s=self.start_timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"ember start --head --standby failed:\n{done.stdout}\n{done.stderr}")

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.redis is not None:
                self.redis.terminate()
                self.redis.wait(10)
                self.redis = None


@pytest.fixture
def bed() -> Iterator[StandbyBed]:
    reason = bed_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with StandbyBed() as b:
        yield b


class _Quiet:
    def handle_message(self, *args: object) -> None:
        return None

    def connection_lost(self, conn: object) -> None:
        return None


def who_leads(address: str, token: str) -> m.HeadRole:
    async def ask() -> m.HeadRole:
        conn = await rpc.connect(address, token.encode(), _Quiet(), "client", 3)
        try:
            return await conn.request(m.WhoLeads(), timeout_s=3)
        finally:
            conn.close()
    return asyncio.run(ask())


def wait_role(address: str, token: str, ok, timeout_s: float = 90) -> m.HeadRole:
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            last = who_leads(address, token)
            if ok(last):
                return last
        except (OSError, rpc.ConnectionLost, TimeoutError, rpc.RpcError) as e:
            last = e
        assert time.monotonic() < deadline, f"{address}: {last}"
        time.sleep(0.2)


# The job: runs on host 2 (its node daemon is the driver's), given both head addresses.
JOB = textwrap.dedent("""
    import os, sys, time
    import ember
    flags = sys.argv[1]
    ember.init()  # EMBER_ADDRESS: both heads

    @ember.remote(resources={"keeper": 1}, num_cpus=0)
    class Counter:
        def __init__(self):
            self.n = 0
        def add(self):
            self.n += 1
            return self.n

    @ember.remote(resources={"w": 1}, num_cpus=0, max_retries=5)
    def square(x):
        time.sleep(0.05)
        return x * x

    keeper = Counter.options(name="keeper", lifetime="detached", namespace="keep").remote()
    assert ember.get(keeper.add.remote(), timeout=60) == 1
    refs = [square.remote(i) for i in range(100)]
    open(os.path.join(flags, "ready"), "w").close()
    while not os.path.exists(os.path.join(flags, "go")):
        time.sleep(0.05)
    calls = [ember.get(keeper.add.remote(), timeout=120) for _ in range(5)]  # no head needed
    refs += [square.remote(i) for i in range(100, 300)]
    print("OUTAGE calls", calls, flush=True)
    started = time.monotonic()
    again = ember.get_actor("keeper", namespace="keep")  # needs the head: the new leader
    print("HEAD_CALL_S %.2f" % (time.monotonic() - started), flush=True)
    print("AFTER actor", ember.get(again.add.remote(), timeout=120), flush=True)
    print("AFTER tasks", sum(ember.get(refs, timeout=240)) == sum(i * i for i in range(300)), flush=True)
    fresh = Counter.options(resources={"w": 1}).remote()
    print("AFTER new actor", ember.get(fresh.add.remote(), timeout=120), flush=True)
    ember.shutdown()
    print("DONE", flush=True)
""")

EXPECTED = ["OUTAGE calls [2, 3, 4, 5, 6]", "AFTER actor 7", "AFTER tasks True", "AFTER new actor 1", "DONE"]


def _start_job(bed: StandbyBed, flags: str) -> subprocess.Popen:
    env = bed._host_env(bed.hosts[2])
    env["EMBER_ADDRESS"] = bed.address
    return subprocess.Popen(["ip", "netns", "exec", bed.hosts[2].netns, sys.executable, "-c", JOB, flags],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def _wait_ready(job: subprocess.Popen, flags: str) -> None:
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(flags, "ready")):
        if job.poll() is not None:
            out, err = job.communicate()
            raise AssertionError(f"the job ended early:\n{out}\n{err[-4000:]}")
        assert time.monotonic() < deadline, "the job did not get ready"
        time.sleep(0.1)


def _finish(job: subprocess.Popen) -> list[str]:
    try:
        out, err = job.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        job.kill()
        out, err = job.communicate()
    lines = [ln for ln in out.splitlines() if ln.startswith(("OUTAGE", "AFTER", "DONE"))]
    assert job.returncode == 0 and lines == EXPECTED, f"rc={job.returncode}\n{out}\n{err[-6000:]}"
    return out.splitlines()


def _head_log(bed: StandbyBed, i: int) -> str:
    """The control store logs of host i (for a failure message)."""
    out = []
    for root, _, files in os.walk(bed.hosts[i].tmpdir):
        for name in files:
            if name.startswith("control_store"):
                with open(os.path.join(root, name), errors="replace") as f:
                    out.append(f"--- {name}\n" + f.read()[-6000:])
    return "\n".join(out)


def _leader_and_standby(bed: StandbyBed) -> tuple[str, str]:
    return f"{bed.hosts[0].ip}:{HEAD_PORT}", f"{bed.hosts[1].ip}:{HEAD_PORT}"


def _check_storage(bed: StandbyBed, new_leader: str) -> None:
    with open_storage(bed.redis_url, check=False) as s:
        lease = L.Lease.decode(s.get(L.TABLE, L.LEASE_KEY))
        assert lease is not None and lease.epoch == 2 and lease.address == new_leader, lease
        assert s.get(L.TABLE, L.EPOCH_KEY) == b"2"
        assert s.get("kv", b"test\0late") is None, "a write of the deposed head landed after epoch 2 began"


def test_standby_takes_over_when_the_head_host_is_killed(bed: StandbyBed, tmp_path) -> None:
    old, new = _leader_and_standby(bed)
    wait_role(old, bed.token, lambda r: r.is_leader and r.epoch == 1 and r.standbys)
    job = _start_job(bed, str(tmp_path))
    _wait_ready(job, str(tmp_path))
    bed.kill_host(0)
    killed = time.monotonic()
    open(os.path.join(tmp_path, "go"), "w").close()
    wait_role(new, bed.token, lambda r: r.is_leader and r.epoch == 2)
    print(f"standby leads {time.monotonic() - killed:.2f} s after the kill")
    _finish(job)
    _check_storage(bed, new)
    status = bed.ember(2, "status", "--address", bed.address)
    assert f"Leader: {new} (epoch 2)" in status.stdout, status.stdout + status.stderr


LATE_WRITE = textwrap.dedent("""
    import asyncio, sys
    from ember.protocol import messages as m
    from ember.shells.wire import rpc, session
    import os

    class Quiet:
        def handle_message(self, *a): pass
        def connection_lost(self, c): pass

    async def main():
        conn = await rpc.connect(sys.argv[1], os.environ["EMBER_CLUSTER_TOKEN"].encode(), Quiet(), "client", 5)
        print("SENT", flush=True)
        try:
            await conn.request(m.KvPut("test", b"late", b"old-head", True), timeout_s=120)
            print("ANSWER applied", flush=True)
        except rpc.RpcError as e:
            print("ANSWER", e.kind, e.message, flush=True)
        except rpc.ConnectionLost as e:
            print("ANSWER closed", e, flush=True)
    asyncio.run(main())
""")


def test_standby_takes_over_when_the_head_host_is_cut_off(bed: StandbyBed, tmp_path) -> None:
    """Cut host 0's link: the old head cannot renew and steps down, the standby takes over; a KV
    write sent to the old head (from its own host) during the cut is not applied: the storage
    never holds it.  After the link is back the old head is a standby naming the new leader."""
    old, new = _leader_and_standby(bed)
    wait_role(old, bed.token, lambda r: r.is_leader and r.epoch == 1 and r.standbys)
    job = _start_job(bed, str(tmp_path))
    _wait_ready(job, str(tmp_path))
    bed.cut(0)
    cut_at = time.monotonic()
    late = bed._popen(bed.hosts[0], [sys.executable, "-c", LATE_WRITE, old])
    open(os.path.join(tmp_path, "go"), "w").close()
    try:
        wait_role(new, bed.token, lambda r: r.is_leader and r.epoch == 2)
        print(f"standby leads {time.monotonic() - cut_at:.2f} s after the cut")
    finally:
        bed.restore(0)
    out, err = late.communicate(timeout=120)
    assert "ANSWER" in out and "ANSWER applied" not in out, out + err
    print("the old head answered the late write:", out.strip().splitlines()[-1])
    _finish(job)
    _check_storage(bed, new)
    try:
        role = wait_role(old, bed.token, lambda r: r.role == "watching" and r.leader_address == new)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_head_log(bed, 0)}") from None
    assert not role.is_leader
    status = bed.ember(2, "status", "--address", bed.address)
    assert f"Leader: {new} (epoch 2)" in status.stdout, status.stdout + status.stderr
