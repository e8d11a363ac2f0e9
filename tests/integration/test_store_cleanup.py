"""Objects and shared memory that must be given back (issue 8, "Objects and memory that
are never given back"):

* on a cluster started with ``ember start --head``, a driver that exits or is killed
  leaves nothing in its node's store (its node daemon frees what the dead owner owned);
* a private cluster's node daemon (started by ``ember.init()``) removes its /dev/shm
  directory when its driver is killed with SIGKILL or SIGTERM.

Every cluster lives under a private EMBER_TMPDIR; every driver is a subprocess.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

from cli_harness import CliHarness
from store_probe import wait_for

pytestmark = pytest.mark.timeout(180)

MiB = 1024 * 1024
N_OBJECTS = 10
OBJECT_BYTES = 4 * MiB

_PUTS = (
    "import numpy as np\n"
    f"refs = [ember.put(np.full({OBJECT_BYTES} // 8, i, dtype=np.int64)) for i in range({N_OBJECTS})]\n"
    "assert int(ember.get(refs[-1])[0]) == len(refs) - 1\n"
)


def _store_dirs(session_dir: str, root: str = "/dev/shm") -> list[str]:
    return glob.glob(f"{root}/ember-{os.path.basename(session_dir)}-*")


def _object_files(store_dir: str) -> list[str]:
    """Sealed objects in a store directory (pooled files, tmp files and owner.pid excluded)."""
    try:
        return [n for n in os.listdir(store_dir) if "." not in n]
    except FileNotFoundError:
        return []


def _started_driver(harness: CliHarness, code: str) -> subprocess.Popen:
    """A driver subprocess; returns once it printed READY (its objects are stored)."""
    proc = subprocess.Popen([sys.executable, "-c", code], env=harness.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "READY" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"driver failed: {line!r}\n{err}")
    return proc


# --- a cluster started with `ember start --head`: owners that exit -----------------------------

@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CliHarness, str]]:
    h = CliHarness(str(tmp_path_factory.mktemp("ember_owner_exit")))
    try:
        h.start_head("--num-cpus", "1", "--object-store-memory", str(200 * MiB))
        current = h.current_cluster()
        assert current is not None
        (store_dir,) = _store_dirs(current["session_dir"])
        yield h, store_dir
    finally:
        h.ember("stop")
        leftovers = h.kill_leftovers()
        assert not leftovers, f"processes left after ember stop: {leftovers}"


@pytest.mark.parametrize("how", ["exit", "shutdown", "sigkill"])
def test_objects_of_a_driver_that_ends_are_freed(cli_cluster, how):
    harness, store_dir = cli_cluster
    wait_for(lambda: not _object_files(store_dir), what="an empty store before the driver")
    code = "import ember, sys, time\nember.init(address='auto')\n" + _PUTS
    code += "print('READY', flush=True)\nsys.stdin.readline()\n"  # until the test has looked
    code += {"exit": "sys.exit(0)\n",
             "shutdown": "ember.shutdown()\n",
             "sigkill": "time.sleep(120)\n"}[how]
    proc = _started_driver(harness, code)
    try:
        assert len(_object_files(store_dir)) == N_OBJECTS  # refs alive: all stored
        if how == "sigkill":
            proc.send_signal(signal.SIGKILL)
        else:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    wait_for(lambda: not _object_files(store_dir), timeout_s=30,
             what=f"the objects of a driver that ended by {how} to be freed "
                  f"(left: {len(_object_files(store_dir))})")


def test_objects_of_a_killed_worker_owner_are_freed(cli_cluster):
    """An actor (a worker) puts objects and keeps their refs; killing its process frees them."""
    harness, store_dir = cli_cluster
    wait_for(lambda: not _object_files(store_dir), what="an empty store before the driver")
    code = (
        "import os, signal, sys, time, ember\n"
        "ember.init(address='auto')\n"
        "@ember.remote(num_cpus=0)\n"
        "class Keeper:\n"
        "    def keep(self):\n"
        "        import numpy as np\n"
        f"        self.refs = [ember.put(np.zeros({OBJECT_BYTES} // 8)) for _ in range(3)]\n"
        "        return os.getpid()\n"
        "k = Keeper.remote()\n"
        "pid = ember.get(k.keep.remote())\n"
        "print('READY', pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "os.kill(pid, signal.SIGKILL)\n"
        "print('KILLED', flush=True)\n"
        "sys.stdin.readline()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=harness.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert "READY" in line, proc.stderr.read() if proc.poll() is not None else line
        assert len(_object_files(store_dir)) == 3
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert "KILLED" in proc.stdout.readline()
        wait_for(lambda: not _object_files(store_dir), timeout_s=30,
                 what="the objects of a killed worker to be freed while its driver lives")
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


# --- a private cluster (`ember.init()`): its driver is killed ------------------------------------

@pytest.fixture
def private_shm_root() -> Iterator[str]:
    """A store root of this test's own on the tmpfs (EMBER_SHM_DIR): the sweeps of stale
    store directories that other clusters on this machine run at their start never see
    it, so only the killed cluster's own node daemon can remove its directory."""
    root = f"/dev/shm/embertest-{os.getpid()}-{time.monotonic_ns()}"
    os.makedirs(root, mode=0o700)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_shm_of_a_private_cluster_goes_when_its_driver_is_killed(tmp_path, private_shm_root, sig):
    harness = CliHarness(str(tmp_path / "root"), {"EMBER_SHM_DIR": private_shm_root})
    code = ("import ember, time\n"
            "ctx = ember.init(address='local', num_cpus=1, object_store_memory=200 * 1024 * 1024)\n"
            + _PUTS +
            "@ember.remote\n"
            "def read(a):\n"
            "    return int(a[0])\n"
            "assert ember.get(read.remote(refs[3])) == 3\n"  # a worker maps an object too
            "print('READY', ctx['session_dir'], flush=True)\n"
            "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=harness.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), proc.stderr.read() if proc.poll() is not None else line
        session_dir = line.split()[1]
        (store_dir,) = _store_dirs(session_dir, private_shm_root)
        assert len(_object_files(store_dir)) == N_OBJECTS
        proc.send_signal(sig)
        proc.wait(timeout=60)
        wait_for(lambda: not harness.processes(), timeout_s=30,
                 what="the private cluster's processes to exit")
        assert not os.path.exists(store_dir), (
            f"{store_dir} outlived its node daemon (driver ended by {signal.Signals(sig).name})")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        harness.kill_leftovers()
