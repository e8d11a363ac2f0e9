"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

One cluster and one browser for the module.  The cluster holds a running actor, a finished and a
failed task, a placement group and a finished submitted job; every page is opened after logging
in, must show them, must log no console error, and is saved as a screenshot (test artifacts:
``$EMBER_TEST_ARTIFACTS/dashboard/`` when set, else pytest's tmp dir).  Without the session cookie
(or the token) pages and API calls are refused.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import time

import pytest
from playwright import sync_api as playwright_sync

import ember
from ember.job_submission import JobSubmissionClient
from ember.util.placement_group import placement_group, remove_placement_group
from jobs_helpers import http, wait_status

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.timeout(600)


@ember.remote
class DashActor:
    def ping(self) -> int:
        return os.getpid()


@ember.remote
def dash_ok() -> int:
    return 7


@ember.remote
def dash_fail() -> None:
    raise ValueError("dashboard-boom")


def _wait(what: str, check, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout_s} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster():
    if ember.is_initialized():
        ember.shutdown()
    ctx = ember.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    with open(os.path.join(ctx["session_dir"], "token")) as f:
        token = f.read().strip()
    actor = DashActor.options(name="dash-actor").remote()
    actor_pid = ember.get(actor.ping.remote(), timeout=240)
    assert ember.get(dash_ok.remote(), timeout=240) == 7
    with pytest.raises(ember.exceptions.RayTaskError):
        ember.get(dash_fail.remote(), timeout=240)
    pg = placement_group([{"CPU": 0.5}], name="dash-pg")
    ember.get(pg.ready(), timeout=240)
    client = JobSubmissionClient(ctx["dashboard_url"], headers={"Authorization": f"Bearer {token}"})
    job_id = client.submit_job(entrypoint="echo hello-from-job")
    assert wait_status(client, job_id, timeout_s=240).status.value == "SUCCEEDED"
    from ember.util import state
    _wait("failed task in the state API", lambda: state.list_tasks(filters=[("state", "=", "FAILED")]))
    yield {"url": ctx["dashboard_url"], "token": token, "actor_pid": actor_pid, "job_id": job_id}
    remove_placement_group(pg)
    ember.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = os.environ.get("EMBER_TEST_ARTIFACTS")
    if root:
        path = pathlib.Path(root) / "dashboard"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("dashboard-screenshots")


@pytest.fixture(scope="module")
def page(cluster, browser):
    """A logged-in page whose console errors and uncaught exceptions are collected."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(120_000)  # a loaded 2-core machine
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.errors = errors
    pg.goto(cluster["url"] + "/actors")
    assert "/login" in pg.url
    pg.fill("#token", cluster["token"])
    pg.click("button[type=submit]")
    pg.wait_for_url(re.compile(r"/actors$"))
    yield pg
    context.close()


def _cookie_name(token: str) -> str:
    from ember.dashboard.auth import cookie_name
    return cookie_name(token.encode())


def _open(page, url: str, path: str, expect: str, artifacts: pathlib.Path, name: str) -> str:
    page.goto(url + path)
    page.wait_for_function("text => document.getElementById('main').innerText.includes(text)", arg=expect,
                           timeout=120_000)
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    assert not page.errors, page.errors
    return page.inner_text("#main")


def test_cookie_is_httponly_and_strict(page):
    (cookie,) = [c for c in page.context.cookies() if c["name"].startswith("ember_session_")]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert len(cookie["value"]) >= 40


def test_overview_shows_nodes_charts_and_jobs(page, cluster, artifacts):
    text = _open(page, cluster["url"], "/", "nodes alive", artifacts, "overview")
    assert "1 / 1" in text and "actors alive" in text
    assert cluster["job_id"] in text
    assert page.locator(".chart svg polyline").count() >= 4  # the history has at least one sample
    assert "tasks failed" in text


def test_nodes_page_shows_the_actor_worker(page, cluster, artifacts):
    text = _open(page, cluster["url"], "/nodes", "DashActor", artifacts, "nodes")
    assert "Workers on" in text and str(cluster["actor_pid"]) in text
    assert "Machine memory" in text and "Object store" in text


def test_actors_page_with_filters(page, cluster, artifacts):
    text = _open(page, cluster["url"], "/actors", "DashActor", artifacts, "actors")
    row = page.locator("tr", has_text="DashActor").first.inner_text()
    assert "ALIVE" in row and "dash-actor" in row and str(cluster["actor_pid"]) in row
    page.select_option("#actor-state", "ALIVE")
    page.fill("#actor-search", "no-such-actor")
    page.press("#actor-search", "Enter")
    page.wait_for_function("() => !document.getElementById('main').innerText.includes('DashActor')")
    page.fill("#actor-search", "dash")
    page.press("#actor-search", "Enter")
    page.wait_for_function("() => document.getElementById('main').innerText.includes('DashActor')")
    assert "JobSupervisor" not in page.inner_text("#main")  # the job's dead supervisor is filtered out
    assert not page.errors, page.errors


def test_tasks_page_shows_finished_and_failed(page, cluster, artifacts):
    text = _open(page, cluster["url"], "/tasks", "dashboard-boom", artifacts, "tasks")
    ok_row = page.locator("tr", has_text="dash_ok").first.inner_text()
    assert "NORMAL_TASK" in ok_row and "1" in ok_row
    assert "FINISHED" in text and "FAILED" in text
    failure = page.locator("tr", has_text="dashboard-boom").first.inner_text()
    assert "dash_fail" in failure and "ValueError" in failure


def test_placement_groups_page(page, cluster, artifacts):
    text = _open(page, cluster["url"], "/placement-groups", "dash-pg", artifacts, "placement_groups")
    assert "CREATED" in page.locator("tr", has_text="dash-pg").first.inner_text()
    assert "PACK" in text


def test_jobs_page_with_live_log(page, cluster, artifacts):
    _open(page, cluster["url"], "/jobs", cluster["job_id"], artifacts, "jobs")
    page.click(f"text={cluster['job_id']}")
    page.wait_for_function("() => (document.getElementById('job-log') || {}).innerText?.includes('hello-from-job')",
                           timeout=120_000)
    page.screenshot(path=str(artifacts / "jobs_log.png"), full_page=True)
    assert "SUCCEEDED" in page.inner_text("#main")
    assert not page.errors, page.errors


def test_log_viewer(page, cluster, artifacts):
    _open(page, cluster["url"], "/logs", "job_server.err", artifacts, "logs_list")
    page.click("text=job_server.err")
    page.wait_for_function("() => (document.getElementById('log-text') || {}).innerText?.length > 0",
                           timeout=120_000)
    page.screenshot(path=str(artifacts / "logs.png"), full_page=True)
    assert not page.errors, page.errors


def test_refused_without_the_cookie_or_token(browser, cluster):
    url, token = cluster["url"], cluster["token"]
    context = browser.new_context()
    context.set_default_timeout(120_000)
    try:
        pg = context.new_page()
        for path in ("/", "/nodes", "/actors", "/tasks", "/placement-groups", "/jobs", "/logs"):
            pg.goto(url + path)
            assert pg.url.startswith(url + "/login"), (path, pg.url)
        for path in ("/api/dashboard/overview", "/api/dashboard/actors", "/api/dashboard/logs/file?name=job_server.err",
                     "/static/app.js", "/api/jobs/"):
            assert context.request.get(url + path).status == 401, path
        pg.fill("#token", "not-the-token")
        pg.click("button[type=submit]")
        assert "Wrong token" in pg.inner_text("body")
        assert not context.cookies()
    finally:
        context.close()
    # The jobs API's bearer header still works, with no cookie.
    assert http(url, "GET", "/api/dashboard/actors", token=token)[0] == 200
    assert http(url, "GET", "/api/version", token=token)[0] == 200
    assert http(url, "GET", "/api/dashboard/actors", token="wrong")[0] == 401
    # A forged cookie is refused too.
    status, _ = http(url, "GET", "/api/dashboard/overview", headers={"Cookie": f"{_cookie_name(token)}=forged"})
    assert status == 401


def test_log_viewer_reads_only_names_in_the_logs_directory(cluster):
    url, token = cluster["url"], cluster["token"]
    for name in ("../token", "..%2Ftoken", "%2Fetc%2Fpasswd", ".hidden"):
        status, body = http(url, "GET", f"/api/dashboard/logs/file?name={name}", token=token)
        assert status in (400, 404), (name, status, body)


def test_cross_origin_change_with_the_cookie_is_refused(page, cluster):
    cookie = next(c for c in page.context.cookies() if c["name"].startswith("ember_session_"))
    status, body = http(cluster["url"], "POST", f"/api/jobs/{cluster['job_id']}/stop",
                        headers={"Cookie": f"{cookie['name']}={cookie['value']}", "Origin": "http://evil.example"})
    assert status == 403, body


def test_logout_ends_the_session(page, cluster):
    """Last: it ends the module's session."""
    cookie = next(c for c in page.context.cookies() if c["name"].startswith("ember_session_"))
    page.goto(cluster["url"] + "/")
    page.click("text=Log out")
    page.wait_for_url(re.compile(r"/login$"))
    assert not [c for c in page.context.cookies() if c["name"].startswith("ember_session_")]
    status, _ = http(cluster["url"], "GET", "/api/dashboard/overview",
                     headers={"Cookie": f"{cookie['name']}={cookie['value']}"})
    assert status == 401  # the old cookie is dead on the server too
    assert not page.errors, page.errors
