"""The `ssh` provider end to end: real sshd servers on three bed hosts, `ember up` over SSH from here.

Each host of a bed made without ember runs Debian's sshd (a generated host key, a generated client key
in its authorized keys, ember's virtualenv on the session PATH, the host's own EMBER_TMPDIR). `ember up`
runs the head's start command on host 0 over SSH; the autoscaler there launches workers on hosts 1 and 2
over SSH; `ember exec` / `ember submit` run on the head; `ember down` stops every machine.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from bed.netbed import NetBed, bed_unavailable_reason

pytestmark = pytest.mark.timeout(420)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _sshd_config(tmp, host, venv_bin: str) -> str:
    path = os.path.join(tmp, f"sshd_{host.index}.conf")
    with open(path, "w") as f:
        f.write(f"""Port 22
ListenAddress {host.ip}
HostKey {tmp}/host_key
PidFile {tmp}/sshd_{host.index}.pid
AuthorizedKeysFile {tmp}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
# root's ~/.bashrc may put other interpreters first on PATH: `ember submit` uses $EMBER_PYTHON
SetEnv PATH={venv_bin}:/usr/local/bin:/usr/bin:/bin EMBER_TMPDIR={host.tmpdir} PYTHONUNBUFFERED=1 EMBER_PYTHON={sys.executable}
""")
    return path


@pytest.fixture(scope="module")
def ssh_bed(tmp_path_factory):
    reason = bed_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp = str(tmp_path_factory.mktemp("ssh"))
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{tmp}/host_key"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{tmp}/client_key"], check=True)
    shutil.copyfile(f"{tmp}/client_key.pub", f"{tmp}/authorized_keys")
    os.makedirs("/run/sshd", exist_ok=True)
    with NetBed(3, start_ember=False) as bed:
        venv_bin = os.path.dirname(sys.executable)
        for host in bed.hosts:
            conf = _sshd_config(tmp, host, venv_bin)
            subprocess.Popen(["ip", "netns", "exec", host.netns, SSHD, "-D", "-e", "-f", conf],
                             stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/sshd_{host.index}.log", "w"))
        yield bed, tmp


def _config(bed, tmp) -> str:
    path = os.path.join(tmp, "cluster.yaml")
    with open(path, "w") as f:
        f.write(f"""cluster_name: sshbed
max_workers: 2
idle_timeout_minutes: 5
provider:
  type: ssh
  head_ip: {bed.hosts[0].ip}
  worker_ips: [{bed.hosts[1].ip}, {bed.hosts[2].ip}]
auth:
  ssh_user: root
  ssh_private_key: {tmp}/client_key
  ssh_known_hosts_file: {tmp}/known_hosts
available_node_types:
  head: {{resources: {{CPU: 1}}, max_workers: 0}}
  worker: {{resources: {{CPU: 1, w: 1}}, min_workers: 1, max_workers: 2, cost_per_hour: 0.5}}
head_node_type: head
setup_commands: ["echo setup-ran-on-$EMBER_NODE_IP >> $EMBER_TMPDIR/setup.log"]
""")
    return path


def _ember(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBER_ADDRESS", "EMBER_CLUSTER_TOKEN")}
    return subprocess.run([sys.executable, "-m", "ember.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)


SCALE = """
import time, ember
from ember.autoscaler.sdk import request_resources
ember.init(address="auto")
request_resources(bundles=[{"w": 1}, {"w": 1}])
deadline = time.time() + 180
while len([n for n in ember.nodes() if n["Alive"]]) < 3 and time.time() < deadline:
    time.sleep(0.5)
@ember.remote(resources={"w": 1})
def where():
    time.sleep(1)
    return ember.get_runtime_context().get_node_id()
print("NODES", len([n for n in ember.nodes() if n["Alive"]]))
print("WORKER_NODES_USED", len(set(ember.get([where.remote() for _ in range(4)], timeout=120))))
"""


def _wait_for(cond, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_launches_workers_over_ssh_and_down_stops_every_machine(ssh_bed):
    bed, tmp = ssh_bed
    config = _config(bed, tmp)
    done = _ember("up", config, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        # the head's autoscaler starts min_workers=1 on the first worker address, over SSH
        status = _wait_for(lambda: (lambda d: d.stdout if "worker:" in d.stdout and "Active" in d.stdout
                                    and d.stdout.count("node_") >= 2 else None)(_ember("exec", config, "ember status")),
                           120, "the min_workers node to join (ember status on the head)")
        assert "Autoscaler (cluster sshbed)" in status
        with open(os.path.join(bed.hosts[1].tmpdir, "setup.log")) as f:
            assert f"setup-ran-on-{bed.hosts[1].ip}" in f.read()
        script = os.path.join(tmp, "scale.py")
        with open(script, "w") as f:
            f.write(SCALE)
        done = _ember("submit", config, script)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "NODES 3" in done.stdout and "WORKER_NODES_USED 2" in done.stdout, done.stdout
        assert _ember("exec", config, "exit 7").returncode == 7
    finally:
        down = _ember("down", config)
    assert down.returncode == 0, down.stdout + down.stderr

    def only_sshd_left():
        for host in bed.hosts:
            for pid in bed.pids(host.index):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"ember" in f.read():
                            return False
                except OSError:
                    continue
        return True
    _wait_for(only_sshd_left, 60, "every ember process on the three machines to exit")


def test_bad_ssh_configs_are_refused_with_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: x\nprovider:\n  type: ssh\n  worker_ips: [10.0.0.1]\n"
                   "available_node_types: {h: {resources: {CPU: 1}}}\nhead_node_type: h\n")
    done = _ember("up", str(bad), "--yes")
    assert done.returncode != 0 and "head_ip" in done.stderr and "line 2: provider" in done.stderr, done.stderr
    bad.write_text("cluster_name: x\nprovider: {type: ssh, head_ip: 10.0.0.1, worker_ips: [10.0.0.1]}\n"
                   "available_node_types: {h: {resources: {CPU: 1}}}\nhead_node_type: h\n")
    done = _ember("up", str(bad), "--yes")
    assert done.returncode != 0 and "provider.worker_ips" in done.stderr, done.stderr


def test_unreachable_machine_gives_a_clear_error(tmp_path):
    cfg = tmp_path / "gone.yaml"
    cfg.write_text(f"cluster_name: gone\nprovider: {{type: ssh, head_ip: 127.0.0.1, ssh_port: 1}}\n"
                   f"auth: {{ssh_user: root, ssh_known_hosts_file: {tmp_path}/kh}}\n"
                   "available_node_types: {h: {resources: {CPU: 1}}}\nhead_node_type: h\n")
    done = _ember("up", str(cfg), "--yes", timeout_s=60)
    assert done.returncode != 0 and "ssh could not connect" in done.stderr, done.stderr
