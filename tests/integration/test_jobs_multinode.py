"""A job placed on another node by its entrypoint resources: the working dir and pip env are fetched
from the control store and set up on that node (which has its own session root here)."""
from __future__ import annotations

import pytest

from cli_harness import CliHarness, free_port
from ember.job_submission import JobStatus, JobSubmissionClient
from jobs_helpers import build_wheel, wait_status

pytestmark = pytest.mark.timeout(300)

def test_job_with_working_dir_and_pip_runs_on_the_node_that_has_its_resources(tmp_path):
    head = CliHarness(str(tmp_path / "head_root"))
    other = CliHarness(str(tmp_path / "other_root"))
    try:
        port = head.start_head("--num-cpus", "1", "--dashboard-port", str(free_port()))
        token = head.token()
        token_file = tmp_path / "token"
        token_file.write_text(token)
        joined = other.ember("start", "--address", f"127.0.0.1:{port}", "--token-file", str(token_file),
                             "--num-cpus", "1", "--resources", '{"special": 1}')
        assert joined.returncode == 0, joined.stderr
        url = open(f"{head.current_cluster()['session_dir']}/job_server").read().strip()
        client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"})
        wd = tmp_path / "wd"
        wd.mkdir()
        (wd / "where.py").write_text(
            "import os, sys, embermnpkg, ember\n"
            "ember.init()\n"
            "@ember.remote\n"
            "def task():\n"
            "    import where_helper\n"
            "    return where_helper.VALUE\n"
            "print('cwd', os.getcwd())\nprint('prefix', sys.prefix)\nprint('pkg', embermnpkg.X)\n"
            "print('task', ember.get(task.remote()))\n")
        (wd / "where_helper.py").write_text("VALUE = 'helper-ok'\n")
        wheel = build_wheel(str(tmp_path), "embermnpkg", "1.0", "X = 'mn'\n")
        sid = client.submit_job(entrypoint="python where.py", entrypoint_resources={"special": 1},
                                runtime_env={"working_dir": str(wd), "pip": [wheel]})
        info = wait_status(client, sid, timeout_s=240)
        logs = client.get_job_logs(sid)
        assert info.status == JobStatus.SUCCEEDED, info.message + logs
        lines = dict(line.split(" ", 1) for line in logs.splitlines() if " " in line)
        assert lines["cwd"].startswith(other.root), lines  # unpacked on the node with "special"
        assert lines["prefix"].startswith(other.root), lines
        assert lines["pkg"] == "mn" and lines["task"] == "helper-ok"
    finally:
        other.ember("stop")
        head.ember("stop")
