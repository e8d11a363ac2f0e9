"""Job state lives in the control store: a restarted job server finds finished and running jobs."""
from __future__ import annotations

import os
import signal

import pytest

import ember
from ember import lifecycle
from ember.job_submission import JobStatus, JobSubmissionClient
from ember.shells.shared import local_cluster
from jobs_helpers import wait_status

pytestmark = pytest.mark.timeout(180)


def test_restarted_job_server_adopts_running_jobs_and_remembers_finished_ones(no_cluster, tmp_path):
    ctx = ember.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    token = open(os.path.join(ctx["session_dir"], "token")).read().strip()
    headers = {"Authorization": f"Bearer {token}"}
    client = JobSubmissionClient(ctx["dashboard_url"], headers=headers)
    done = client.submit_job(entrypoint="echo before-restart")
    assert wait_status(client, done).status == JobStatus.SUCCEEDED
    go = tmp_path / "go"
    running = client.submit_job(
        entrypoint=f"python -c \"import os, time\nwhile not os.path.exists('{go}'): time.sleep(0.05)\nprint('after')\"")
    wait_status(client, running, ("RUNNING",))

    cluster = lifecycle._local_cluster
    old = cluster.procs.pop()  # the job server is the last process started
    old.send_signal(signal.SIGTERM)
    old.wait(timeout=30)
    url = local_cluster.start_job_server(cluster, host="127.0.0.1", port=0, tied_to_parent=True)

    client = JobSubmissionClient(url, headers=headers)
    assert client.get_job_status(done) == JobStatus.SUCCEEDED
    assert "before-restart" in client.get_job_logs(done)
    assert client.get_job_status(running) == JobStatus.RUNNING
    go.write_text("")
    assert wait_status(client, running).status == JobStatus.SUCCEEDED
    assert "after" in client.get_job_logs(running)
    ember.shutdown()


def test_entrypoint_gpus_are_reserved_and_visible(no_cluster):
    ctx = ember.init(num_cpus=1, num_gpus=2, include_dashboard=True, dashboard_port=0)
    token = open(os.path.join(ctx["session_dir"], "token")).read().strip()
    client = JobSubmissionClient(ctx["dashboard_url"], headers={"Authorization": f"Bearer {token}"})
    sid = client.submit_job(entrypoint="echo gpus=$CUDA_VISIBLE_DEVICES", entrypoint_num_gpus=1)
    assert wait_status(client, sid).status == JobStatus.SUCCEEDED
    visible = client.get_job_logs(sid).strip().split("=", 1)[1]
    assert visible in ("0", "1")
    too_many = client.submit_job(entrypoint="true", entrypoint_num_gpus=3)
    assert client.get_job_status(too_many) == JobStatus.PENDING
    client.stop_job(too_many)
    assert wait_status(client, too_many).status == JobStatus.STOPPED
    ember.shutdown()
