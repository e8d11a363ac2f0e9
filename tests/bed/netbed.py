"""A multi-host test bed on one machine: N hosts, each a Linux network namespace with its own IP.

Theory of operation
-------------------
Every bed gets a run id (6 hex digits) and a private /24 inside 10.213.0.0/16, chosen under a lock
file so that beds of parallel test runs never share names or addresses::

    root namespace (the test process)          bridge  ebr<rid>   10.213.K.1/24
        veth ebv<rid><i>  <---->  eth0 in namespace  ebed-<rid>-h<i>   10.213.K.(i+2)/24

Host 0 runs ``ember start --head --port 6379 --node-ip-address 10.213.K.2``; the others run
``ember start --address 10.213.K.2:6379 --node-ip-address <their ip>`` (each inside its namespace with
``ip netns exec``, each with its own EMBER_TMPDIR under the bed's directory, all with the head's token).
The namespaces have no default route: nothing they send leaves the bridge.

The driver: **the test process itself**, in the root namespace, reaches every host through the
bridge (``bed.connect()`` is ``ember.init(address=bed.address)``; the driver listens on 10.213.K.1 and
attaches to the head's node daemon). A test that needs a driver *on* a host runs one there with
``bed.python(i, code)`` (a subprocess inside host i's namespace, its stdout returned).

Cutting host i's link (``bed.cut(i)``: ``ip link set ebv<rid><i> down``) isolates it from every other host
and from the driver: packets are dropped, connections hang (no reset), exactly as a network partition.
``bed.restore(i)`` brings the link back. Cutting the head also cuts the driver off: cut other hosts.

API (stable: other issues build on it)
--------------------------------------
``bed_unavailable_reason() -> str | None``       why namespaces cannot be made here (not root, no ``ip``...)
``HostSpec(num_cpus=1, num_gpus=None, resources=None, labels=None, object_store_memory=None,
          extra_args=())``                        what ``ember start`` is given on one host
``NetBed(hosts=3 | [HostSpec...], env={...}, root_dir=None, link_rate_mbit=None, start_ember=True)``
  context manager; ``start()`` / ``stop()``; ``link_rate_mbit`` shapes every host's link both ways (tc tbf),
  as a real NIC; ``start_ember=False`` makes the hosts only (a test starts what runs there, e.g. sshd)
  ``.hosts: list[Host]``   ``Host(index, netns, ip, veth, tmpdir, spec)``; ``.head`` is ``hosts[0]``
  ``.address``             "10.213.K.2:6379", the head's control store;  ``.token`` the cluster token
  ``.bridge_ip``           10.213.K.1, the driver's address
  ``.connect(**init_kwargs)`` / ``.disconnect()``   ember.init / ember.shutdown in this process
  ``.node_id(i)``          the NodeID (hex) of host i, from ``ember.nodes()`` (needs ``connect()``)
  ``.wait_nodes(n_alive, timeout_s)``  poll ``ember.nodes()`` until exactly n_alive nodes are alive
  ``.cut(i)`` / ``.restore(i)`` / ``with bed.partitioned(i):``   take host i's link down / up
  ``.set_link_rate(i, mbit | None)``   shape (or unshape) host i's link, both directions
  ``.add_host(spec) -> Host``   a new host joins the running cluster
  ``.kill_host(i)``        SIGKILL every process in host i's namespace (a machine dying)
  ``.stop_host(i)``        ``ember stop`` on host i (a clean leave)
  ``.exec(i, argv, timeout_s=, check=)``  any command inside host i's namespace, with the bed's env
  ``.ember(i, *args)``     the ember CLI on host i;   ``.python(i, code)``  a Python script on host i
  ``.pids(i)``             pids living in host i's namespace
``bed_fixture(hosts=..., env=..., scope="module", connect=True)``  a pytest fixture yielding a started
  bed (skips with the reason when namespaces cannot be made; always cleaned up).

Cleanup: ``stop()`` sends SIGTERM to every process in every namespace (what ``ember stop`` does; the
daemons remove their stores), SIGKILLs whatever is left after 8 s
(``ip netns pids``), deletes the namespaces (their veth ends go with them) and the bridge, and frees
the subnet lock. It runs from ``__exit__``, from the fixture's teardown and from ``atexit``; a bed
whose test process was SIGKILLed is swept by the next bed that starts (its lock file names a dead pid).
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Optional, Sequence, Union

SUBNET_PREFIX = "10.213"
HEAD_PORT = 6379
STATE_DIR = "/run/ember-netbed"
_SUBNETS = range(1, 255)
_CLEARED_ENV = ("EMBER_ADDRESS", "RAY_ADDRESS", "EMBER_CLUSTER_TOKEN", "EMBER_TMPDIR", "EMBER_NODE_IP_ADDRESS")


def bed_unavailable_reason() -> Optional[str]:
    """None when this process can build network namespaces, else why not (for ``pytest.skip``)."""
    if not sys.platform.startswith("linux"):
        return "the multi-host bed needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the multi-host bed needs root (network namespaces, veth pairs, a bridge)"
    if shutil.which("ip") is None:
        return "the multi-host bed needs the `ip` command (iproute2)"
    probe = f"ebed-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@dataclasses.dataclass(frozen=True)
class HostSpec:
    num_cpus: float = 1
    num_gpus: Optional[float] = None
    resources: Optional[dict[str, float]] = None
    labels: Optional[dict[str, str]] = None
    object_store_memory: Optional[int] = None
    extra_args: tuple[str, ...] = ()

    def start_args(self) -> list[str]:
        args = ["--num-cpus", str(self.num_cpus)]
        if self.num_gpus is not None:
            args += ["--num-gpus", str(self.num_gpus)]
        if self.resources:
            args += ["--resources", json.dumps(self.resources)]
        if self.labels:
            args += ["--labels", json.dumps(self.labels)]
        if self.object_store_memory:
            args += ["--object-store-memory", str(int(self.object_store_memory))]
        return args + list(self.extra_args)


@dataclasses.dataclass
class Host:
    index: int
    netns: str
    ip: str
    veth: str
    tmpdir: str
    spec: HostSpec
    is_cut: bool = False


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns_processes(netns: str) -> None:
    for _ in range(3):
        done = _ip("netns", "pids", netns, check=False)
        pids = [int(p) for p in done.stdout.split() if p.strip().isdigit()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _teardown_record(record: dict) -> None:
    """Remove what one bed made (namespaces, bridge, subnet lock); safe to call twice."""
    for netns in record.get("namespaces", []):
        _kill_netns_processes(netns)
        _ip("netns", "del", netns, check=False)
    if record.get("bridge"):
        _ip("link", "del", record["bridge"], check=False)
    for path in (record.get("subnet_lock"), record.get("record_path")):
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)


def sweep_stale_beds() -> list[str]:
    """Tear down beds whose test process died without cleaning up (their record names a dead pid)."""
    swept = []
    if not os.path.isdir(STATE_DIR):
        return swept
    for name in sorted(os.listdir(STATE_DIR)):
        if not name.startswith("bed-"):
            continue
        path = os.path.join(STATE_DIR, name)
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if not _pid_alive(int(record.get("pid", 0))):
            _teardown_record(record)
            swept.append(record.get("run_id", name))
    return swept


class NetBed:
    """N ember hosts in network namespaces on one bridge; see the module docstring."""

    def __init__(self, hosts: Union[int, Sequence[HostSpec]] = 3, *, env: Optional[dict[str, str]] = None,
                 root_dir: Optional[str] = None, start_timeout_s: float = 120,
                 link_rate_mbit: Optional[float] = None, start_ember: bool = True) -> None:
        specs = [HostSpec() for _ in range(hosts)] if isinstance(hosts, int) else list(hosts)
        if not specs:
            raise ValueError("a bed needs at least one host")
        self._specs = specs
        self.run_id = secrets.token_hex(3)
        self.extra_env = dict(env or {})
        self._given_root = root_dir
        self.root_dir = ""
        self.start_timeout_s = start_timeout_s
        self.link_rate_mbit = link_rate_mbit
        self.start_ember = start_ember
        self.hosts: list[Host] = []
        self.subnet = -1
        self.bridge = f"ebr{self.run_id}"
        self.token = ""
        self._record: dict[str, Any] = {}
        self._started = False
        self._connected = False

    # --- addresses ---------------------------------------------------------------------------
    @property
    def head(self) -> Host:
        return self.hosts[0]

    @property
    def bridge_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    @property
    def address(self) -> str:
        return f"{self.head.ip}:{HEAD_PORT}"

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "NetBed":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "NetBed":
        reason = bed_unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        os.makedirs(STATE_DIR, exist_ok=True)
        sweep_stale_beds()
        atexit.register(self.stop)
        self._started = True
        try:
            self._claim_subnet()
            self.root_dir = self._given_root or tempfile.mkdtemp(prefix=f"ember-netbed-{self.run_id}-")
            self._make_bridge()
            for spec in self._specs:
                self._make_host(spec)
            if self.start_ember:
                self._start_head()
                self._start_joiners(self.hosts[1:])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._connected:
            self.disconnect()
        self._terminate_all(grace_s=8.0)
        _teardown_record(self._record)
        if not self._given_root and self.root_dir:
            shutil.rmtree(self.root_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def _terminate_all(self, grace_s: float) -> None:
        """SIGTERM every process of every host (daemons clean up their stores), SIGKILL stragglers."""
        for host in self.hosts:
            for pid in self.pids(host.index):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(self.pids(h.index) for h in self.hosts):
            time.sleep(0.1)

    def _save_record(self) -> None:
        path = os.path.join(STATE_DIR, f"bed-{self.run_id}.json")
        self._record.update(run_id=self.run_id, pid=os.getpid(), record_path=path)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._record, f)
        os.replace(tmp, path)

    def _claim_subnet(self) -> None:
        for k in _SUBNETS:
            lock = os.path.join(STATE_DIR, f"subnet-{k}")
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                continue
            os.write(fd, f"{os.getpid()} {self.run_id}\n".encode())
            os.close(fd)
            self.subnet = k
            self._record = {"subnet_lock": lock, "namespaces": [], "bridge": None}
            self._save_record()
            return
        raise RuntimeError(f"no free subnet left under {SUBNET_PREFIX}.0.0/16 (see {STATE_DIR})")

    def _make_bridge(self) -> None:
        self._record["bridge"] = self.bridge
        self._save_record()
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def _make_host(self, spec: HostSpec) -> Host:
        index = len(self.hosts)
        if index + 2 > 254:
            raise ValueError("a bed holds at most 252 hosts")
        host = Host(index=index, netns=f"ebed-{self.run_id}-h{index}", ip=f"{SUBNET_PREFIX}.{self.subnet}.{index + 2}",
                    veth=f"ebv{self.run_id}{index}", tmpdir=os.path.join(self.root_dir, f"h{index}"), spec=spec)
        os.makedirs(host.tmpdir, exist_ok=True)
        self._record["namespaces"].append(host.netns)
        self._save_record()
        peer = f"ebp{self.run_id}{index}"
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", host.netns)
        _ip("link", "set", host.veth, "master", self.bridge)
        _ip("link", "set", host.veth, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        _ip("-n", host.netns, "link", "set", peer, "name", "eth0")
        _ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        _ip("-n", host.netns, "link", "set", "eth0", "up")
        self.hosts.append(host)
        if self.link_rate_mbit:
            self.set_link_rate(index, self.link_rate_mbit)
        return host

    def _host_env(self, host: Host) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
        env.update(self.extra_env)
        env["EMBER_TMPDIR"] = host.tmpdir
        if self.token:
            env["EMBER_CLUSTER_TOKEN"] = self.token
        return env

    def _start_head(self) -> None:
        head = self.head
        done = self.ember(0, "start", "--head", "--port", str(HEAD_PORT), "--node-ip-address", head.ip,
                          *head.spec.start_args(), timeout_s=self.start_timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"ember start --head failed on {head.netns}:\n{done.stdout}\n{done.stderr}")
        with open(os.path.join(head.tmpdir, "current_cluster")) as f:
            session_dir = json.load(f)["session_dir"]
        with open(os.path.join(session_dir, "token")) as f:
            self.token = f.read().strip()

    def _start_joiners(self, hosts: Sequence[Host]) -> None:
        procs = [(host, self._popen(host, [sys.executable, "-m", "ember.cli.main", "start", "--address",
                                           self.address, "--node-ip-address", host.ip,
                                           *host.spec.start_args()])) for host in hosts]
        failures = []
        for host, proc in procs:
            try:
                out, err = proc.communicate(timeout=self.start_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            if proc.returncode != 0:
                failures.append(f"{host.netns} ({host.ip}): rc={proc.returncode}\n{out}\n{err}")
        if failures:
            raise RuntimeError("ember start --address failed on:\n" + "\n".join(failures))

    def _popen(self, host: Host, argv: Sequence[str]) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", host.netns, *argv], env=self._host_env(host),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    # --- running things on hosts ------------------------------------------------------------
    def exec(self, i: int, argv: Sequence[str], *, timeout_s: float = 90, check: bool = False,
             env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        host = self.hosts[i]
        full_env = self._host_env(host)
        full_env.update(env or {})
        done = subprocess.run(["ip", "netns", "exec", host.netns, *argv], env=full_env, capture_output=True,
                              text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise RuntimeError(f"{argv} on {host.netns} failed (rc={done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def ember(self, i: int, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
        return self.exec(i, [sys.executable, "-m", "ember.cli.main", *args], timeout_s=timeout_s)

    def python(self, i: int, code: str, *, timeout_s: float = 120,
               env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        """Run ``code`` as a Python script inside host i (EMBER_ADDRESS points at the head)."""
        extra = {"EMBER_ADDRESS": self.address, **(env or {})}
        return self.exec(i, [sys.executable, "-c", code], timeout_s=timeout_s, env=extra)

    def pids(self, i: int) -> list[int]:
        done = _ip("netns", "pids", self.hosts[i].netns, check=False)
        return [int(p) for p in done.stdout.split() if p.strip().isdigit()]

    # --- topology changes -------------------------------------------------------------------
    def cut(self, i: int) -> None:
        _ip("link", "set", self.hosts[i].veth, "down")
        self.hosts[i].is_cut = True

    def restore(self, i: int) -> None:
        _ip("link", "set", self.hosts[i].veth, "up")
        self.hosts[i].is_cut = False

    def set_link_rate(self, i: int, mbit: Optional[float]) -> None:
        """Shape host i's link to ``mbit`` megabits/s each way (token bucket), or remove the shaping."""
        host = self.hosts[i]
        for prefix, dev in (([], host.veth), (["ip", "netns", "exec", host.netns], "eth0")):
            if mbit:
                argv = [*prefix, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{mbit}mbit",
                        "burst", "256kb", "latency", "50ms"]
            else:
                argv = [*prefix, "tc", "qdisc", "del", "dev", dev, "root"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if mbit and done.returncode != 0:
                raise RuntimeError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")

    @contextlib.contextmanager
    def partitioned(self, i: int) -> Iterator[Host]:
        self.cut(i)
        try:
            yield self.hosts[i]
        finally:
            self.restore(i)

    def add_host(self, spec: Optional[HostSpec] = None, *, start_node: bool = True) -> Host:
        """A new host; with ``start_node=False`` a bare one (e.g. a remote client's machine)."""
        host = self._make_host(spec or HostSpec())
        if start_node:
            self._start_joiners([host])
        return host

    def rejoin(self, i: int) -> None:
        """Start host ``i``'s node again (``ember start --address``): a new node, with a new id."""
        self._start_joiners([self.hosts[i]])

    def kill_host(self, i: int) -> None:
        _kill_netns_processes(self.hosts[i].netns)

    def stop_host(self, i: int) -> subprocess.CompletedProcess:
        return self.ember(i, "stop", timeout_s=60)

    # --- the driver (this process) ----------------------------------------------------------
    def connect(self, **init_kwargs: Any) -> Any:
        import ember
        if ember.is_initialized():
            ember.shutdown()
        os.environ["EMBER_CLUSTER_TOKEN"] = self.token
        for name in ("EMBER_ADDRESS", "RAY_ADDRESS"):
            os.environ.pop(name, None)
        context = ember.init(address=self.address, **init_kwargs)
        self._connected = True
        self.wait_nodes(sum(1 for h in self.hosts), timeout_s=60)
        return context

    def disconnect(self) -> None:
        import ember
        if ember.is_initialized():
            ember.shutdown()
        os.environ.pop("EMBER_CLUSTER_TOKEN", None)
        self._connected = False

    def wait_nodes(self, n_alive: int, timeout_s: float = 60) -> list[dict]:
        import ember
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = [n for n in ember.nodes() if n["Alive"]]
            if len(nodes) == n_alive:
                return nodes
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(nodes)} node(s) alive after {timeout_s}s, expected {n_alive}: {nodes}")
            time.sleep(0.1)

    def node_id(self, i: int) -> str:
        import ember
        ip = self.hosts[i].ip
        for node in ember.nodes():
            if node["NodeManagerAddress"] == ip and node["Alive"]:
                return str(node["NodeID"])
        raise LookupError(f"no live node at {ip} (host {i})")

    def host_of(self, node_id: str) -> int:
        """The index of the host running node ``node_id``."""
        import ember
        for node in ember.nodes():
            if node["NodeID"] == node_id:
                for host in self.hosts:
                    if host.ip == node["NodeManagerAddress"]:
                        return host.index
        raise LookupError(f"node {node_id} is on no host of this bed")


def bed_fixture(hosts: Union[int, Sequence[HostSpec]] = 3, *, env: Optional[dict[str, str]] = None,
                scope: str = "module", connect: bool = True) -> Callable[..., Iterator[NetBed]]:
    """A pytest fixture yielding a started bed (connected as the driver unless connect=False)."""
    import pytest

    @pytest.fixture(scope=scope)
    def _bed() -> Iterator[NetBed]:
        reason = bed_unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        with NetBed(hosts, env=env) as bed:
            if connect:
                bed.connect()
            yield bed

    return _bed
