"""Regenerate the dashboard screenshots of docs/img/ (docs/dashboard.md).

    EMBER_TMPDIR=/tmp/ember-shots .venv/bin/python scripts/dashboard_screenshots.py [--out docs/img] [--busy-s 90]

Starts a local cluster with the dashboard, samples its history every 2 s, keeps it busy for
``--busy-s`` seconds (tasks, actors, one of them killed, a placement group, a job, a failing
task), then logs in with Debian's Chromium (Playwright) and saves one PNG per page.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import time

os.environ.setdefault("EMBER_DASHBOARD_HISTORY_PERIOD_S", "2")

import ember  # noqa: E402
from ember.job_submission import JobSubmissionClient  # noqa: E402
from ember.util.placement_group import placement_group  # noqa: E402

PAGES = [("overview", "/", "nodes alive"), ("nodes", "/nodes", "Workers on"), ("actors", "/actors", "Counter"),
         ("tasks", "/tasks", "Failures"), ("placement_groups", "/placement-groups", "CREATED"),
         ("jobs", "/jobs", "SUCCEEDED"), ("logs", "/logs", "job_server.err")]


@ember.remote
def work(seconds: float) -> float:
    end = time.time() + seconds
    while time.time() < end:
        sum(i * i for i in range(10_000))
    return seconds


@ember.remote
def load_data(n: int) -> bytes:
    return b"x" * n


@ember.remote
def parse_record(text: str) -> int:
    return int(text)


@ember.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def busy(seconds: float) -> list:
    counters = [Counter.options(name=f"counter-{i}").remote() for i in range(3)]
    doomed = Counter.options(name="doomed").remote()
    ember.get(doomed.add.remote(1))
    ember.kill(doomed)
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="PACK", name="training-pg")
    ember.get(pg.ready())
    held = [ember.put(b"y" * (8 << 20)) for _ in range(4)]
    end = time.time() + seconds
    rng = random.Random(0)
    while time.time() < end:
        refs = [work.remote(rng.uniform(0.2, 1.0)) for _ in range(rng.randint(0, 3))]
        refs += [load_data.remote(1 << 20) for _ in range(2)]
        ember.get(refs + [c.add.remote(1) for c in counters])
        time.sleep(rng.uniform(0.5, 3.0))
    try:
        ember.get(parse_record.remote("not-a-number"))
    except ember.exceptions.RayTaskError:
        pass
    work.remote(30)  # still running when the pages are shot
    time.sleep(2)
    return counters + [pg, held]


def shoot(url: str, token: str, out: str, job_id: str) -> None:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 1200, "height": 720}).new_page()
        page.goto(url + "/login?next=/")
        page.screenshot(path=os.path.join(out, "dashboard-login.png"))
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        for name, path, expect in PAGES:
            page.goto(url + path)
            page.wait_for_function("t => document.getElementById('main').innerText.includes(t)", arg=expect,
                                   timeout=60_000)
            if name == "jobs":
                page.click(f"text={job_id}")
                page.wait_for_function("() => (document.getElementById('job-log') || {}).innerText?.includes('epoch')")
            if name == "logs":
                page.click("text=job_server.err")
                page.wait_for_function("() => (document.getElementById('log-text') || {}).innerText?.length > 0")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=os.path.join(out, f"dashboard-{name}.png"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "img"))
    parser.add_argument("--busy-s", type=float, default=90.0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ctx = ember.init(num_cpus=2, include_dashboard=True, dashboard_port=0)
    try:
        with open(os.path.join(ctx["session_dir"], "token")) as f:
            token = f.read().strip()
        client = JobSubmissionClient(ctx["dashboard_url"], headers={"Authorization": f"Bearer {token}"})
        job_id = client.submit_job(entrypoint="for i in 1 2 3; do echo epoch $i loss 0.$((9 - i)); sleep 1; done")
        keep = busy(args.busy_s)
        shoot(ctx["dashboard_url"], token, args.out, job_id)
        del keep
    finally:
        ember.shutdown()


if __name__ == "__main__":
    main()
