"""A job with a working directory and a pip requirement, submitted from outside the cluster over
the network (the Python client, plain HTTP and the CLI), runs to SUCCEEDED on the host that has
its entrypoint's resources (issue #13 on the multi-host bed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from bed.netbed import HostSpec, NetBed, bed_fixture

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jobs_helpers import build_wheel, wait_status  # noqa: E402

from ember.job_submission import JobStatus, JobSubmissionClient  # noqa: E402

pytestmark = pytest.mark.timeout(420)
JOBS_PORT = 8265

two_hosts = bed_fixture([HostSpec(num_cpus=1, extra_args=("--dashboard-host", "0.0.0.0",
                                                            "--dashboard-port", str(JOBS_PORT))),
                         HostSpec(num_cpus=1, resources={"special": 1})], connect=False)


def test_a_job_submitted_over_the_network_runs_where_its_resources_are(two_hosts: NetBed, tmp_path) -> None:
    url = f"http://{two_hosts.head.ip}:{JOBS_PORT}"
    auth = {"Authorization": f"Bearer {two_hosts.token}"}
    client = JobSubmissionClient(url, headers=auth)
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "where.py").write_text(
        "import os, sys, embedbedpkg, ember\n"
        "ember.init()\n"
        "@ember.remote\n"
        "def task():\n"
        "    import helper\n"
        "    return helper.VALUE\n"
        "print('cwd', os.getcwd())\nprint('pkg', embedbedpkg.X)\n"
        "print('task', ember.get(task.remote()))\n")
    (wd / "helper.py").write_text("VALUE = 'helper-ok'\n")
    wheel = build_wheel(str(tmp_path), "embedbedpkg", "1.0", "X = 'bed'\n")
    sid = client.submit_job(entrypoint="python where.py", entrypoint_resources={"special": 1},
                            runtime_env={"working_dir": str(wd), "pip": [wheel]})
    info = wait_status(client, sid, timeout_s=300)
    logs = client.get_job_logs(sid)
    assert info.status == JobStatus.SUCCEEDED, info.message + logs
    lines = dict(line.split(" ", 1) for line in logs.splitlines() if " " in line)
    assert lines["cwd"].startswith(two_hosts.hosts[1].tmpdir), lines   # unpacked on the host with "special"
    assert lines["pkg"] == "bed" and lines["task"] == "helper-ok"

    # plain HTTP with the token, from outside the cluster
    request = urllib.request.Request(f"{url}/api/jobs/{sid}", headers=auth)
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert json.loads(reply.read())["status"] == "SUCCEEDED"
    # ... and nothing without it
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/jobs/", timeout=30)
    assert refused.value.code == 401

    # the CLI, given the address and the token through the environment
    env = dict(os.environ, EMBER_CLUSTER_TOKEN=two_hosts.token)
    done = subprocess.run([sys.executable, "-m", "ember.cli.main", "job", "status", "--address", url, sid],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and "SUCCEEDED" in done.stdout, done.stdout + done.stderr
