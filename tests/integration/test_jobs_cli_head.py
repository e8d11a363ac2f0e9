"""`ember start --head` starts the job server; `ember job` finds it and its token with no flags."""
from __future__ import annotations

import os

import psutil
import pytest

from cli_harness import CliHarness, free_port

pytestmark = pytest.mark.timeout(240)


def test_head_job_server_found_by_the_cli_and_stopped_by_ember_stop(tmp_path):
    harness = CliHarness(str(tmp_path / "root"))
    try:
        harness.start_head("--num-cpus", "1", "--dashboard-port", str(free_port()))
        roles = {e["role"]: e for e in harness.pid_entries()}
        assert "job_server" in roles, roles
        work = tmp_path / "wd"
        work.mkdir()
        (work / "hello.py").write_text("import ember\nember.init()\nprint('hello from', ember.get(ember.put('head')))\n")
        done = harness.ember("job", "submit", "--working-dir", str(work), "--", "python", "hello.py", timeout_s=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "hello from head" in done.stdout
        listed = harness.ember("job", "list")
        assert "SUCCEEDED" in listed.stdout
    finally:
        harness.ember("stop")
    pid = roles["job_server"]["pid"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_busy_dashboard_port_costs_only_the_jobs_api(tmp_path):
    import socket
    harness = CliHarness(str(tmp_path / "root"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            head_port = free_port()
            done = harness.ember("start", "--head", "--port", str(head_port), "--num-cpus", "1",
                                 "--dashboard-port", str(port))
            assert done.returncode == 0, done.stderr
            assert "job server (jobs API) did not start" in done.stderr
            assert "job_server" not in {e["role"] for e in harness.pid_entries()}
        finally:
            harness.ember("stop")


def test_non_loopback_job_server_without_tls_warns(tmp_path):
    harness = CliHarness(str(tmp_path / "root"))
    try:
        done = harness.ember("start", "--head", "--port", str(free_port()), "--num-cpus", "1",
                             "--dashboard-host", "0.0.0.0", "--dashboard-port", str(free_port()))
        assert done.returncode == 0, done.stderr
        assert "WARNING: the ember job server listens on 0.0.0.0 without TLS" in done.stderr
    finally:
        harness.ember("stop")
