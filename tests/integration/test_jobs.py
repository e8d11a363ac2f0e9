"""The jobs API end to end: a real job server (HTTP), real supervisors and entrypoint processes."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import psutil
import pytest

import ember
from ember.job_submission import JobDetails, JobStatus, JobSubmissionClient
from jobs_helpers import http, wait_for, wait_status

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server():
    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    with open(os.path.join(ctx["session_dir"], "token")) as f:
        token = f.read().strip()
    old = os.environ.get("EMBER_CLUSTER_TOKEN")
    os.environ["EMBER_CLUSTER_TOKEN"] = token
    yield ctx["dashboard_url"], token
    if old is None:
        os.environ.pop("EMBER_CLUSTER_TOKEN", None)
    else:
        os.environ["EMBER_CLUSTER_TOKEN"] = old
    ember.shutdown()


@pytest.fixture(scope="module")
def client(server):
    return JobSubmissionClient(server[0])


def test_shadowray_request_without_token_runs_nothing(server, client, tmp_path):
    url, token = server
    marker = f"/tmp/pwned-{uuid.uuid4().hex}"
    body = {"entrypoint": f"touch {marker}", "submission_id": f"pwn-{uuid.uuid4().hex[:8]}"}
    status, text = http(url, "POST", "/api/jobs/", body=body, headers={"Content-Type": "application/json"})
    assert status == 401, text
    assert "token" in json.loads(text)["error"]
    status, _ = http(url, "POST", "/api/jobs/", body=body, token="0" * 64)
    assert status == 401
    status, _ = http(url, "POST", "/api/jobs/", body=body, headers={"Authorization": f"Basic {token}"})
    assert status == 401
    for method, path in (("GET", "/api/jobs/"), ("GET", "/api/version"), ("GET", "/api/jobs/x/logs"),
                         ("POST", "/api/jobs/x/stop"), ("DELETE", "/api/jobs/x"),
                         ("PUT", "/api/packages/gcs/_ember_pkg_0.zip")):
        assert http(url, method, path)[0] == 401, (method, path)
    time.sleep(1.0)  # had anything been started, it would have run by now
    assert not os.path.exists(marker)
    assert body["submission_id"] not in [j.submission_id for j in client.list_jobs()]


def test_bad_requests_get_clear_4xx_without_traceback(server):
    url, token = server
    cases = [
        (dict(raw=b"{not json"), 400, "not valid JSON"),
        (dict(body=[1, 2]), 400, "JSON object"),
        (dict(body={"entrypoint": ""}), 400, "entrypoint"),
        (dict(body={"entrypoint": "true", "bogus": 1}), 400, "unknown field"),
        (dict(body={"entrypoint": "true", "entrypoint_num_cpus": -1}), 400, "entrypoint_num_cpus"),
        (dict(body={"entrypoint": "true", "runtime_env": {"conda": "x"}}), 400, "conda"),
        (dict(body={"entrypoint": "true", "runtime_env": {"working_dir": "/etc"}}), 400, "not an uploaded package"),
        (dict(body={"entrypoint": "true", "submission_id": "../../etc"}), 400, "submission_id"),
        (dict(raw=b"{" + b" " * (2 * 1024 * 1024) + b"}"), 413, "limit"),
    ]
    for kwargs, code, words in cases:
        status, text = http(url, "POST", "/api/jobs/", token=token, **kwargs)
        assert status == code, (kwargs.get("body"), status, text)
        assert words in json.loads(text)["error"], text
        assert "Traceback" not in text
    status, text = http(url, "GET", "/api/jobs/no-such-job", token=token)
    assert status == 404 and "does not exist" in text


def test_plain_http_submit_runs_a_driver_that_joins_the_cluster(server):
    url, token = server
    code = "import ember; ember.init(); print('answer', ember.get(ember.remote(lambda: 41).remote()) + 1)"
    status, text = http(url, "POST", "/api/jobs/", token=token,
                        body={"entrypoint": f"python -c \"{code}\"", "metadata": {"owner": "tests"}})
    assert status == 200, text
    sid = json.loads(text)["submission_id"]
    deadline = time.monotonic() + 90
    while True:
        job = json.loads(http(url, "GET", f"/api/jobs/{sid}", token=token)[1])
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert job["status"] == "SUCCEEDED", job["message"]
    assert job["metadata"] == {"owner": "tests"} and job["driver_exit_code"] == 0
    assert job["start_time"] <= job["end_time"]
    logs = json.loads(http(url, "GET", f"/api/jobs/{sid}/logs", token=token)[1])["logs"]
    assert "answer 42" in logs


def test_client_working_dir_and_env_vars(client, tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 7\n")
    (tmp_path / "main.py").write_text(
        "import os, helper\nprint('cwd-has-helper', os.path.exists('helper.py'), helper.VALUE, os.environ['FOO'])\n"
        "print('ignored-present', os.path.exists('skip.bin'), os.path.exists('drop.txt'))\n")
    (tmp_path / ".gitignore").write_text("skip.bin\n")
    (tmp_path / "skip.bin").write_bytes(b"x" * 1000)
    (tmp_path / "drop.txt").write_text("x")
    sid = client.submit_job(entrypoint="python main.py",
                            runtime_env={"working_dir": str(tmp_path), "env_vars": {"FOO": "bar"},
                                         "excludes": ["drop.txt"]})
    info = wait_status(client, sid)
    assert isinstance(info, JobDetails) and info.status == JobStatus.SUCCEEDED, info.message
    logs = client.get_job_logs(sid)
    assert "cwd-has-helper True 7 bar" in logs
    assert "ignored-present False False" in logs
    assert info.runtime_env["working_dir"].startswith("gcs://_ember_pkg_")
    # The same directory again: same package, not uploaded twice.
    sid2 = client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(tmp_path),
                                                                        "env_vars": {"FOO": "baz"},
                                                                        "excludes": ["drop.txt"]})
    info2 = wait_status(client, sid2)
    assert info2.runtime_env["working_dir"] == info.runtime_env["working_dir"]
    assert "7 baz" in client.get_job_logs(sid2)


def test_failed_job_names_exit_code_and_last_lines(client):
    sid = client.submit_job(entrypoint="python -c \"import sys; print('about to fail'); sys.exit(3)\"")
    info = wait_status(client, sid)
    assert info.status == JobStatus.FAILED
    assert info.driver_exit_code == 3
    assert "exit code 3" in info.message and "about to fail" in info.message
    assert client.get_job_status(sid) == "FAILED"


def test_stop_kills_the_whole_tree_even_a_child_ignoring_sigterm(client, tmp_path):
    pid_file = tmp_path / "pids"
    script = tmp_path / "tree.py"
    script.write_text(
        "import os, signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "print('running', flush=True)\n"
        "time.sleep(600)\n")
    sid = client.submit_job(entrypoint=f"python {script}")
    wait_status(client, sid, ("RUNNING",))
    wait_for(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2, what="the pid file")
    pids = [int(p) for p in pid_file.read_text().split()]
    assert all(psutil.pid_exists(p) for p in pids)
    assert client.stop_job(sid) is True
    info = wait_status(client, sid)
    assert info.status == JobStatus.STOPPED
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                             for p in pids), timeout_s=20, what="the job's processes to end")
    assert client.stop_job(sid) is False  # already stopped


def test_tail_job_logs_streams_until_the_end(client):
    code = "import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.3)\n"
    sid = client.submit_job(entrypoint=f"python -c \"{code}\"")

    async def collect():
        return "".join([chunk async for chunk in client.tail_job_logs(sid)])

    text = asyncio.run(asyncio.wait_for(collect(), 90))
    assert [ln for ln in text.splitlines() if ln.startswith("line")] == [f"line {i}" for i in range(5)]
    assert client.get_job_status(sid) == JobStatus.SUCCEEDED


def test_submission_id_unique_and_delete_only_when_finished(client):
    sid = f"mine-{uuid.uuid4().hex[:8]}"
    assert client.submit_job(entrypoint="sleep 600", submission_id=sid) == sid
    with pytest.raises(RuntimeError, match="already exists"):
        client.submit_job(entrypoint="true", submission_id=sid)
    wait_status(client, sid, ("RUNNING",))
    with pytest.raises(RuntimeError, match="400.*stop it before deleting"):
        client.delete_job(sid)
    client.stop_job(sid)
    wait_status(client, sid)
    assert client.delete_job(sid) is True
    with pytest.raises(RuntimeError, match="404"):
        client.get_job_info(sid)


def test_job_records_live_in_the_control_store_kv(server, client):
    from ember.shells.control.jobs.store import JobStore
    sid = client.submit_job(entrypoint="echo kept")
    wait_status(client, sid)
    gcs = ember.get_runtime_context().gcs_address if hasattr(ember.get_runtime_context(), "gcs_address") else None
    from ember.shells.worker import core_worker
    gcs = core_worker.get_core_worker().gcs_address

    async def load():
        store = JobStore(gcs, server[1].encode())
        try:
            return {r.submission_id: r for r in await store.load_jobs()}, await store.load_logs(sid)
        finally:
            store.close()

    records, logs = asyncio.run(load())
    assert records[sid].status == JobStatus.SUCCEEDED and logs == b"kept\n"


def test_entrypoint_resources_that_do_not_fit_stay_pending_and_can_be_stopped(client):
    sid = client.submit_job(entrypoint="echo never", entrypoint_resources={"no_such_resource": 1})
    time.sleep(1.0)
    assert client.get_job_status(sid) == JobStatus.PENDING
    assert client.stop_job(sid) is True
    assert wait_status(client, sid).status == JobStatus.STOPPED


def test_cli_submit_follows_logs_and_exits_with_the_outcome(server, tmp_path):
    url, token = server
    (tmp_path / "main.py").write_text("import os\nprint('from-cli', os.environ['GREETING'])\n")
    env = dict(os.environ, EMBER_CLUSTER_TOKEN=token)
    cli = [sys.executable, "-m", "ember.cli.main", "job"]
    done = subprocess.run([*cli, "submit", "--address", url, "--working-dir", str(tmp_path),
                           "--runtime-env-json", '{"env_vars": {"GREETING": "hi"}}', "--submission-id",
                           f"cli-{uuid.uuid4().hex[:6]}", "--", "python", "main.py"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "from-cli hi" in done.stdout and "succeeded" in done.stdout
    (tmp_path / "env.yaml").write_text("env_vars:\n  GREETING: from-yaml\n")
    done = subprocess.run([*cli, "submit", "--address", url, "--working-dir", str(tmp_path), "--runtime-env",
                           str(tmp_path / "env.yaml"), "--", "python", "main.py"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "from-cli from-yaml" in done.stdout, done.stderr
    failed = subprocess.run([*cli, "submit", "--address", url, "--", "sh", "-c", "echo oops; exit 4"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "oops" in failed.stdout and "failed" in failed.stdout
    sid = subprocess.run([*cli, "submit", "--address", url, "--no-wait", "--", "echo", "quick"],
                         env=env, capture_output=True, text=True, timeout=60).stdout.split("'")[1]
    logs = subprocess.run([*cli, "logs", "--address", url, "--follow", sid], env=env, capture_output=True,
                          text=True, timeout=60)
    assert "quick" in logs.stdout
    status = subprocess.run([*cli, "status", "--address", url, sid], env=env, capture_output=True, text=True,
                            timeout=60)
    assert "SUCCEEDED" in status.stdout
    listed = subprocess.run([*cli, "list", "--address", url], env=env, capture_output=True, text=True, timeout=60)
    assert sid in listed.stdout
    assert subprocess.run([*cli, "delete", "--address", url, sid], env=env, capture_output=True, text=True,
                          timeout=60).returncode == 0
    no_token = {k: v for k, v in env.items() if k != "EMBER_CLUSTER_TOKEN"}
    no_token["EMBER_TMPDIR"] = str(tmp_path / "empty")
    refused = subprocess.run([*cli, "list", "--address", url], env=no_token, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "token" in refused.stderr


def test_background_children_end_with_the_entrypoint(client, tmp_path):
    pid_file = tmp_path / "bg"
    sid = client.submit_job(entrypoint=f"sleep 600 & echo $! > {pid_file}; echo started")
    assert wait_status(client, sid).status == JobStatus.SUCCEEDED
    pid = int(pid_file.read_text())
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             timeout_s=20, what="the background child to end")


def test_large_working_dir_upload_and_chunked_bodies(server, client, tmp_path):
    url, token = server
    (tmp_path / "blob.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # incompressible: a 3 MiB upload
    (tmp_path / "main.py").write_text("import os\nprint('size', os.path.getsize('blob.bin'))\n")
    sid = client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(tmp_path)})
    assert wait_status(client, sid).status == JobStatus.SUCCEEDED
    assert f"size {3 * 1024 * 1024}" in client.get_job_logs(sid)

    def chunked(parts):
        yield from parts

    import urllib.error
    import urllib.request
    req = urllib.request.Request(url + "/api/jobs/", data=chunked([b'{"entrypoint": ', b'"echo chunked"}']),
                                 method="POST", headers={"Authorization": f"Bearer {token}",
                                                         "Transfer-Encoding": "chunked"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        sid = json.loads(resp.read())["submission_id"]
    assert wait_status(client, sid).status == JobStatus.SUCCEEDED
    # a chunked body over the limit, without Content-Length
    req = urllib.request.Request(url + "/api/jobs/", data=chunked([b"{"] + [b" " * (512 * 1024)] * 3 + [b"}"]),
                                 method="POST", headers={"Authorization": f"Bearer {token}",
                                                         "Transfer-Encoding": "chunked"})
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("an oversized chunked body was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 413 and "limit" in exc.read().decode()
