"""Runtime environments of jobs: pip from a local wheel (no network), py_modules, setup failures."""
from __future__ import annotations

import os
import time

import pytest

import ember
from ember.job_submission import JobStatus, JobSubmissionClient
from jobs_helpers import build_wheel, wait_status

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def client():
    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    with open(os.path.join(ctx["session_dir"], "token")) as f:
        token = f.read().strip()
    yield JobSubmissionClient(ctx["dashboard_url"], headers={"Authorization": f"Bearer {token}"})
    ember.shutdown()


def test_pip_from_a_local_wheel_with_ember_importable(client, tmp_path):
    wheel = build_wheel(str(tmp_path), f"embertinypkg{os.getpid()}", "1.0", "X = 'from-the-wheel'\n")
    name = os.path.basename(wheel).split("-")[0]
    code = (f"import sys, {name}, ember; ember.init(); "
            f"print('ok', {name}.X, ember.get(ember.put(5)), sys.prefix.split('/')[-2])")
    t0 = time.monotonic()
    sid = client.submit_job(entrypoint=f"python -c \"{code}\"", runtime_env={"pip": [wheel]})
    info = wait_status(client, sid, timeout_s=240)
    first_s = time.monotonic() - t0
    assert info.status == JobStatus.SUCCEEDED, info.message
    assert "ok from-the-wheel 5 pip" in client.get_job_logs(sid)
    # The same requirement set again: the venv is reused (no rebuild), so the job gets the same prefix.
    t1 = time.monotonic()
    sid2 = client.submit_job(entrypoint=f"python -c \"{code}\"", runtime_env={"pip": [wheel]})
    assert wait_status(client, sid2, timeout_s=240).status == JobStatus.SUCCEEDED
    print(f"pip job: first {first_s:.2f} s, warm {time.monotonic() - t1:.2f} s")
    # A job without pip does not see the package.
    sid3 = client.submit_job(entrypoint=f"python -c \"import {name}\"")
    assert wait_status(client, sid3).status == JobStatus.FAILED


def test_py_modules_are_importable(client, tmp_path):
    pkg = tmp_path / "mymod_for_job"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mymod_for_job.py").write_text("")
    # py_modules entries are directories put on the path as they are (their contents importable).
    (pkg / "shout.py").write_text("def shout(s):\n    return s.upper()\n")
    sid = client.submit_job(entrypoint="python -c \"import shout; print(shout.shout('hey'))\"",
                            runtime_env={"py_modules": [str(pkg)]})
    info = wait_status(client, sid)
    assert info.status == JobStatus.SUCCEEDED, info.message
    assert "HEY" in client.get_job_logs(sid)


def test_failing_setup_names_the_step_and_leaves_the_cluster_working(client, tmp_path):
    missing = str(tmp_path / "nope-1.0-py3-none-any.whl")
    sid = client.submit_job(entrypoint="echo should-not-run", runtime_env={"pip": [missing]})
    info = wait_status(client, sid, timeout_s=240)
    assert info.status == JobStatus.FAILED
    assert info.error_type == "RUNTIME_ENV_SETUP_FAILURE"
    assert "RuntimeEnvSetupError" in info.message and "pip" in info.message and "installing" in info.message
    assert "should-not-run" not in client.get_job_logs(sid)
    wheel = build_wheel(str(tmp_path), "embertimeoutpkg", "1.0", "")
    sid = client.submit_job(entrypoint="true", runtime_env={"pip": [wheel], "config": {"setup_timeout_seconds": 0.01}})
    info = wait_status(client, sid, timeout_s=240)
    assert info.status == JobStatus.FAILED and "timed out" in info.message
    ok = client.submit_job(entrypoint="echo still-fine")
    assert wait_status(client, ok).status == JobStatus.SUCCEEDED


def test_bad_runtime_env_is_refused_before_submission(client, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        client.submit_job(entrypoint="true", runtime_env={"working_dir": str(tmp_path / "missing")})
    with pytest.raises(TypeError, match="env_vars"):
        client.submit_job(entrypoint="true", runtime_env={"env_vars": {"A": 1}})
    with pytest.raises(ValueError, match="unknown runtime_env field"):
        client.submit_job(entrypoint="true", runtime_env={"wokring_dir": "."})
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob.bin").write_bytes(b"\0" * 1024)
    from ember.shells.shared.runtime_env import packaging
    with pytest.raises(ValueError, match="over the size limit"):
        packaging.pack_dir(str(big), max_bytes=100)
