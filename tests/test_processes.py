"""Daemon start-up failures are reported quickly with the daemon's log, never a hang."""
import pytest

from ember.shells.shared import processes

pytestmark = pytest.mark.timeout(60)


def test_daemon_that_exits_is_reported(tmp_path):
    log = tmp_path / "d.err"
    proc = processes.launch_daemon("ember.no_such_module", [], log_path=str(log), tied_to_parent=True)
    with pytest.raises(RuntimeError, match="failed to start.*exited") as info:
        processes.wait_ready(proc, "ember.no_such_module", str(log), timeout_s=20)
    assert "No module named" in str(info.value)


def test_daemon_that_says_something_else_is_killed(tmp_path):
    log = tmp_path / "d.err"
    proc = processes.launch_daemon("http.server", ["0", "--bind", "127.0.0.1"], log_path=str(log),
                                   tied_to_parent=True)
    with pytest.raises(RuntimeError, match="unexpected output|no READY"):
        processes.wait_ready(proc, "http.server", str(log), timeout_s=5)
    assert proc.poll() is not None
