"""Failover time of a standby head (issue #11, section 3): SIGKILL of the leading control
store -> the first successful head call of a driver, over N failovers.

Run: ``.venv/bin/python benchmarks/failover.py [--failovers 20] [--ttl 3]`` (needs
redis-server: scripts/install_test_deps.sh).  On loopback: a real Redis, two control stores
(``--standby``), one node daemon and a driver, all given both head addresses.  Each round kills
the leader, times ``ember.nodes()`` (a call that needs the head) from the kill to its answer,
restarts the killed control store as a standby on its port and waits until the leader lists it.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Quiet:
    def handle_message(self, *args: object) -> None:
        return None

    def connection_lost(self, conn: object) -> None:
        return None


def _role(address: str, token: bytes):  # type: ignore[no-untyped-def]
    from ember.protocol import messages as m
    from ember.shells.wire import rpc

    async def ask():  # type: ignore[no-untyped-def]
        conn = await rpc.connect(address, token, _Quiet(), "client", 2)
        try:
            return await conn.request(m.WhoLeads(), timeout_s=2)
        finally:
            conn.close()
    try:
        return asyncio.run(ask())
    except Exception:
        return None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--failovers", type=int, default=20)
    parser.add_argument("--ttl", type=float, default=3.0, help="head_lease_ttl_s")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ember-failover-")
    os.environ.update(EMBER_TMPDIR=tmp, EMBER_HEAD_LEASE_TTL_S=str(args.ttl), EMBER_GCS_RECONNECT_TIMEOUT_S="60")
    from ember.shells.wire import session
    token = secrets.token_hex(32).encode()
    session_dir = session.new_session_dir()
    session.write_token(session_dir, token)
    os.environ["EMBER_CLUSTER_TOKEN"] = token.decode()
    redis_port = _free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", tmp,
                              "--save", "", "--appendonly", "yes"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    url = f"redis://127.0.0.1:{redis_port}/0"
    ports = [_free_port(), _free_port()]
    addrs = [f"127.0.0.1:{p}" for p in ports]
    heads: dict[int, subprocess.Popen] = {}
    log = open(os.path.join(tmp, "heads.err"), "ab")

    def start_head(i: int, standby: bool) -> None:
        heads[i] = subprocess.Popen(
            [sys.executable, "-m", "ember.shells.control.control_store", "--port", str(ports[i]), "--token-file",
             session.token_path(session_dir), "--session-dir", session_dir, "--storage", url]
            + (["--standby"] if standby else []), stdout=subprocess.PIPE, stderr=log)
        assert heads[i].stdout is not None and heads[i].stdout.readline().startswith(b"READY")

    start_head(0, False)
    start_head(1, True)
    node = subprocess.Popen([sys.executable, "-m", "ember.shells.node.node_daemon", "--gcs-address", ",".join(addrs),
                             "--token-file", session.token_path(session_dir), "--session-dir", session_dir,
                             "--num-cpus", "1"], stdout=subprocess.PIPE, stderr=log)
    assert node.stdout is not None and node.stdout.readline().startswith(b"READY")
    import ember
    ember.init(address=",".join(addrs))
    call_s: list[float] = []
    leader = 0
    try:
        for round_ in range(args.failovers):
            other = 1 - leader
            deadline = time.monotonic() + 60
            while True:  # the leader lists the standby: it is in place
                role = _role(addrs[leader], token)
                if role is not None and role.is_leader and any(a == addrs[other] for a, _ in role.standbys):
                    break
                assert time.monotonic() < deadline, f"round {round_}: no standby in place ({role})"
                time.sleep(0.1)
            time.sleep(0.5)
            heads[leader].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            heads[leader].wait()
            ember.nodes()
            call_s.append(time.monotonic() - killed)
            role = _role(addrs[other], token)
            print(f"failover {round_ + 1}: first head call after {call_s[-1]:.2f} s (epoch {role.epoch if role else '?'})", flush=True)
            start_head(leader, True)
            leader = other
    finally:
        ember.shutdown()
        node.terminate()
        node.wait(10)
        for proc in heads.values():
            proc.terminate()
            proc.wait(10)
        redis.terminate()
        redis.wait(10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nhead_lease_ttl_s={args.ttl:g}, {len(call_s)} failovers (SIGKILL of the leading control store):")
    for name, values in (("kill -> first successful head call (ember.nodes())", call_s),):
        print(f"  {name}: p50 {statistics.median(values):.2f} s, p99 {_percentile(values, 0.99):.2f} s, "
              f"min {min(values):.2f} s, max {max(values):.2f} s")


if __name__ == "__main__":
    main()
