"""``ember start / status / stop`` with real processes, plus the status formatter and flag checks.

One head (``--num-cpus 1``) serves the module; the last test stops it with ``ember stop``
and checks that nothing of it is left. Every cluster lives under a private EMBER_TMPDIR.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Iterator

import psutil
import pytest
from click.testing import CliRunner

from cli_harness import CliHarness, free_port
from ember.cli import main as cli_main
from ember.cli.status import format_bytes, format_status
from ember.protocol import messages as m

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliHarness]:
    h = CliHarness(str(tmp_path_factory.mktemp("ember_cli_root")))
    try:
        yield h
    finally:
        h.ember("stop")
        leftovers = h.kill_leftovers()
        assert not leftovers, f"processes left after ember stop: {leftovers}"


@pytest.fixture(scope="module")
def head_port(harness: CliHarness) -> int:
    return harness.start_head("--num-cpus", "1")


# --- pure parts: no processes -------------------------------------------------------------------

def _node(n: int, *, alive: bool = True, head: bool = False, total: dict, avail: dict,
          demands: list | None = None, used_bytes: int = 0) -> m.NodeInfo:
    return m.NodeInfo(bytes([n]) * 16, f"127.0.0.1:{5000 + n}", total, avail, alive, head, "/dev/shm/x", {},
                      demands or [], used_bytes, 1024 ** 3)


def test_format_status_sums_alive_nodes_and_lists_dead_ones() -> None:
    nodes = [_node(1, head=True, total={"CPU": 2.0, "memory": 2 * 1024 ** 3}, avail={"CPU": 1.0, "memory": 2 * 1024 ** 3},
                   demands=[[{"CPU": 1.0}, 3]], used_bytes=20 * 1024 ** 2),
             _node(2, total={"CPU": 1.0, "special": 1.0}, avail={"CPU": 1.0, "special": 0.0},
                   demands=[[{"CPU": 1.0}, 2]]),
             _node(3, alive=False, total={"CPU": 8.0}, avail={"CPU": 8.0})]
    text = format_status(nodes, 0.0, "127.0.0.1:6379")
    assert " 2 node(s)" in text
    assert f"node_{(bytes([1]) * 16).hex()}  127.0.0.1:5001 (head)" in text
    dead_part = text.split("Dead:")[1].split("Resources")[0]
    assert (bytes([3]) * 16).hex() in dead_part and (bytes([2]) * 16).hex() not in dead_part
    assert " 1.0/3.0 CPU" in text          # the dead node's 8 CPUs are not counted
    assert " 1.0/1.0 special" in text
    assert " 0B/2.00GiB memory" in text
    assert " 20.00MiB/2.00GiB object_store_memory" in text
    assert " {'CPU': 1.0}: 5+ pending tasks/actors" in text


def test_format_status_with_no_demands_and_no_dead_nodes() -> None:
    text = format_status([_node(1, head=True, total={"CPU": 1.0}, avail={"CPU": 1.0})], 0.0)
    assert "(no resource demands)" in text and "(no dead nodes)" in text and " 0.0/1.0 CPU" in text


def test_format_bytes() -> None:
    assert [format_bytes(0), format_bytes(1023), format_bytes(1536), format_bytes(3 * 1024 ** 3)] == \
        ["0B", "1023B", "1.50KiB", "3.00GiB"]


@pytest.mark.parametrize("flags, message", [
    (["--head", "--address", "127.0.0.1:1"], "exactly one of --head"),
    ([], "exactly one of --head"),
    (["--address", "127.0.0.1:1", "--port", "5"], "--port"),
    (["--head", "--resources", "[1, 2]"], "JSON object"),
    (["--head", "--resources", "{bad"], "not valid JSON"),
    (["--head", "--resources", '{"CPU": 2}'], "--num-cpus"),
    (["--head", "--resources", '{"x": -1}'], "non-negative"),
])
def test_start_rejects_bad_flags_before_starting_anything(flags: list[str], message: str) -> None:
    result = CliRunner().invoke(cli_main.cli, ["start", *flags])
    assert result.exit_code == 2
    assert message in result.output


def test_help_lists_commands_and_a_broken_optional_command_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli_main.COMMANDS, "nosuchcmd", ("ember.cli.no_such_module_xyz", "nosuchcmd"))
    result = CliRunner().invoke(cli_main.cli, ["--help"])
    assert result.exit_code == 0
    for name in ("start", "stop", "status"):
        assert f"  {name} " in result.output
    assert "nosuchcmd" not in result.output
    assert CliRunner().invoke(cli_main.cli, ["nosuchcmd"]).exit_code == 2


# --- real clusters ------------------------------------------------------------------------------

def test_status_without_a_cluster_fails_clearly(tmp_path: os.PathLike) -> None:
    empty = CliHarness(str(tmp_path))
    done = empty.ember("status")
    assert done.returncode != 0
    assert "no ember cluster is running" in done.stderr
    assert "ember start --head" in done.stderr
    unreachable = CliHarness(str(tmp_path), {"EMBER_CLUSTER_TOKEN": "x"}).ember(
        "status", "--address", f"127.0.0.1:{free_port()}")
    assert unreachable.returncode != 0 and "could not reach" in unreachable.stderr


def test_start_writes_current_cluster_and_pid_file(harness: CliHarness, head_port: int) -> None:
    current = harness.current_cluster()
    assert current is not None and current["address"] == f"127.0.0.1:{head_port}"
    token_file = os.path.join(current["session_dir"], "token")
    assert os.stat(token_file).st_mode & 0o777 == 0o600
    roles = sorted(e["role"] for e in harness.pid_entries())
    # The job server starts too when its port (8265) is free; another cluster may hold it. The
    # client server (ember://) starts on a free port here (tests/conftest.py).
    assert [r for r in roles if r != "job_server"] == ["client_server", "control_store", "node_daemon"]
    for entry in harness.pid_entries():
        assert psutil.Process(entry["pid"]).is_running()


def test_driver_with_address_auto_runs_a_task(harness: CliHarness, head_port: int) -> None:
    code = (
        "import ember\n"
        "ctx = ember.init(address='auto')\n"
        "@ember.remote\n"
        "def add(a, b):\n"
        "    return a + b\n"
        "print('RESULT', ember.get(add.remote(2, 3)), ctx['address'], len(ember.nodes()))\n"
        "ember.shutdown()\n")
    done = harness.python(code)
    assert done.returncode == 0, done.stderr
    assert f"RESULT 5 127.0.0.1:{head_port} 1" in done.stdout


def test_status_shows_one_node_and_cpu_totals(harness: CliHarness, head_port: int) -> None:
    done = harness.ember("status")
    assert done.returncode == 0, done.stderr
    assert f"Control store: 127.0.0.1:{head_port}" in done.stdout
    assert " 1 node(s)" in done.stdout and "(head)" in done.stdout
    assert "/1.0 CPU" in done.stdout
    assert "object_store_memory" in done.stdout
    assert "(no dead nodes)" in done.stdout


def test_start_on_a_busy_port_fails_clearly(harness: CliHarness, head_port: int) -> None:
    before = {p.pid for p in harness.processes()}
    done = harness.ember("start", "--head", "--port", str(head_port), "--num-cpus", "1")
    assert done.returncode != 0
    assert f"port {head_port} on 127.0.0.1 is already in use" in done.stderr
    assert {p.pid for p in harness.processes()} == before
    assert harness.current_cluster()["address"] == f"127.0.0.1:{head_port}"


def test_block_stays_in_the_foreground_and_ctrl_c_stops_its_processes(tmp_path: os.PathLike) -> None:
    blocker = CliHarness(str(tmp_path))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ember.cli.main", "start", "--head", "--port", str(port),
                             "--num-cpus", "1", "--block"], env=blocker.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("--block"):
                break
        assert any("Ember runtime started" in line for line in seen), "".join(seen)
        time.sleep(0.5)
        assert proc.poll() is None, "--block returned early"
        assert len(blocker.processes()) >= 3  # control store, node daemon, zygote
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while blocker.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert blocker.processes() == []
        assert blocker.current_cluster() is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        blocker.kill_leftovers()


def test_stop_stops_everything_including_busy_workers(harness: CliHarness, head_port: int, tmp_path: os.PathLike) -> None:
    # A driver whose task is running in a worker while the cluster is stopped.
    marker = os.path.join(str(tmp_path), "worker_pid")
    code = (
        "import os, time, ember\n"
        "ember.init(address='auto')\n"
        "@ember.remote\n"
        "def sleeper(path):\n"
        f"    open(path + '.tmp', 'w').write(str(os.getpid())); os.rename(path + '.tmp', path)\n"
        "    time.sleep(120)\n"
        f"ref = sleeper.remote({marker!r})\n"
        "time.sleep(120)\n")
    driver = subprocess.Popen([sys.executable, "-c", code], env=harness.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.exists(marker), "the task never started"
        with open(marker) as f:
            worker_pid = int(f.read())
        assert worker_pid in {p.pid for p in harness.processes()}
        done = harness.ember("stop")
        assert done.returncode == 0, done.stderr
        assert "Stopped" in done.stdout
        stopped = int(done.stdout.split("Stopped ")[1].split()[0])
        assert stopped >= 4  # control store, node daemon, zygote, the busy worker
        assert harness.processes() == []
        assert harness.current_cluster() is None
        assert harness.pid_entries() == []
        again = harness.ember("stop")
        assert again.returncode == 0 and "Did not find any active ember processes" in again.stdout
        status = harness.ember("status")
        assert status.returncode != 0 and "no ember cluster is running" in status.stderr
    finally:
        driver.kill()
        driver.wait()
