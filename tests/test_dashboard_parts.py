"""The dashboard's parts that need no cluster: the charts' history, the login's sessions and redirects,
and the log reader's name rules."""
from __future__ import annotations

import os

import pytest

from ember.dashboard.auth import Sessions, cookie_name
from ember.dashboard.history import SERIES, History, sample_figures
from ember.dashboard.pages import safe_next
from ember.dashboard.source import LOG_READ_MAX_BYTES, ClusterSource


def _node(state="ALIVE", cpu=(4, 1), store=(10, 100), host_cpu=50.0, cpus=4):
    return {"state": state, "resources_total": {"CPU": cpu[0], "memory": 8.0},
            "resources_available": {"CPU": cpu[1], "memory": 2.0},
            "object_store_used_bytes": store[0], "object_store_capacity_bytes": store[1],
            "host": {"cpu_percent": host_cpu, "cpu_count": cpus}}


def test_history_keeps_one_window_of_samples():
    h = History(period_s=10, window_s=60)
    for i in range(20):
        h.add(1000.0 + 10 * i, {"cpu_used": i})
    data = h.to_json()
    assert data["t"][0] == 1130.0 and data["t"][-1] == 1190.0  # the last 60 s, both ends kept
    assert data["cpu_used"][-1] == 19.0 and len(data["cpu_used"]) == len(data["t"]) == 7
    assert set(SERIES) <= set(data)


def test_history_refuses_going_back_in_time_and_bad_periods():
    h = History(period_s=1, window_s=10)
    h.add(5.0, {})
    with pytest.raises(ValueError, match="forward"):
        h.add(4.0, {})
    with pytest.raises(ValueError):
        History(period_s=0)
    with pytest.raises(ValueError):
        History(period_s=20, window_s=10)


def test_sample_figures_sums_live_nodes_only():
    figures = sample_figures([_node(), _node(cpu=(2, 2), host_cpu=10.0, cpus=2), _node(state="DEAD")])
    assert figures["alive_nodes"] == 2
    assert figures["cpu_used"] == 3 and figures["cpu_total"] == 6
    assert figures["memory_used_bytes"] == 12.0
    assert figures["object_store_used_bytes"] == 20 and figures["object_store_capacity_bytes"] == 200
    assert figures["host_cpu_percent"] == pytest.approx((50 * 4 + 10 * 2) / 6)


def test_sessions_are_random_and_expire():
    s = Sessions(ttl_s=3600)
    a, b = s.create(), s.create()
    assert a != b and len(a) >= 40
    assert s.valid(a) and not s.valid("forged") and not s.valid(None)
    s.drop(a)
    assert not s.valid(a) and s.valid(b)
    expired = Sessions(ttl_s=-1)
    sid = expired.create()
    assert not expired.valid(sid)


@pytest.mark.parametrize("target, expected", [
    ("/actors", "/actors"), ("/tasks?x=1", "/tasks?x=1"), ("//evil.example/", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("", "/"), ("actors", "/")])
def test_login_redirects_only_to_this_server(target, expected):
    assert safe_next(target) == expected


def test_log_reader_takes_names_in_the_logs_directory_only(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "worker-1.out").write_bytes(b"x" * (LOG_READ_MAX_BYTES + 10))
    (tmp_path / "token").write_text("secret")
    os.symlink(tmp_path / "token", logs / "link.out")
    src = ClusterSource("127.0.0.1:1", b"t", str(tmp_path))
    assert [f["name"] for f in src.log_files()] == ["worker-1.out"]  # the link is not listed
    tail = src.read_log("worker-1.out", -1)
    assert tail["offset"] == 10 and tail["next_offset"] == LOG_READ_MAX_BYTES + 10
    assert src.read_log("worker-1.out", tail["next_offset"])["text"] == ""
    for bad in ("../token", "/etc/passwd", ".hidden", "", "a\\b"):
        with pytest.raises(ValueError):
            src.read_log(bad, 0)
    with pytest.raises(OSError):  # O_NOFOLLOW: a link inside logs/ is not followed
        src.read_log("link.out", 0)


def test_cookie_names_differ_per_cluster_and_hide_the_token():
    a, b = cookie_name(b"token-a"), cookie_name(b"token-b")
    assert a != b and a.startswith("ember_session_") and a == cookie_name(b"token-a")
    suffix = a[len("ember_session_"):]
    assert len(suffix) == 8 and int(suffix, 16) >= 0  # a digest's first 8 hex digits, not the token
