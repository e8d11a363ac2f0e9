"""Worker output reaches the driver also after the worker was quiet for a while: idle workers'
log files are polled less often (up to ``log_poll_idle_max_s``), never forgotten."""
import time

import pytest

import ember
from ember.shells.node.log_monitor import LogMonitor

pytestmark = pytest.mark.timeout(60)


@ember.remote(num_cpus=0)
class Talker:
    def say(self, text):
        print(text, flush=True)
        return True


def _wait_for(capfd, text, timeout_s=15):
    deadline = time.time() + timeout_s
    out = ""
    while time.time() < deadline:
        out += capfd.readouterr().out
        if text in out:
            return out
        time.sleep(0.1)
    return out


def test_a_quiet_actor_is_still_heard(cluster, capfd):
    t = Talker.remote()
    assert ember.get(t.say.remote("first-words"))
    assert "first-words" in _wait_for(capfd, "first-words")
    time.sleep(3)                                  # long enough for its polls to back off
    assert ember.get(t.say.remote("after-a-silence"))
    assert "after-a-silence" in _wait_for(capfd, "after-a-silence")


def test_idle_files_back_off_and_growth_resets_the_interval(tmp_path):
    class _Daemon:
        gcs = None
        node_id = b"n" * 16

    mon = LogMonitor(_Daemon())
    base = str(tmp_path / "w")
    mon.add(b"w1", b"j", base)
    t = mon.tails[b"w1"]
    polls = 0
    for tick in range(1, 101):                      # ten seconds of 100 ms ticks
        before = t.next_poll_s
        mon.poll(tick / 10)
        polls += t.next_poll_s != before
    assert t.interval_s == 1.0                     # doubled from 0.1 up to the cap
    assert polls <= 16                             # not 100
    with open(base + ".out", "w") as f:
        f.write("line\n")
    mon.poll(t.next_poll_s)
    assert t.interval_s == 0.1
    mon.worker_exited(b"w1")
    mon.poll(t.next_poll_s)
    assert b"w1" not in mon.tails
