"""A small supervisor for the control store (issue #11): restarts it when it dies.

``python -m ember.shells.control.supervisor <control store arguments>`` runs
``ember.shells.control.control_store`` with those arguments, relays its first ``READY``
line, and starts it again (same port, same storage) whenever it exits without being asked
to, with backoff (0.5 s doubling to 5 s).  SIGTERM/SIGINT stop the control store and then
the supervisor.  ``ember start --head --supervise`` uses it; a control store that fails its
first start (bad storage, port taken) is not retried.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any, Optional

from ember.shells.shared import processes

_MODULE = "ember.shells.control.control_store"


def _die_with_supervisor() -> None:
    processes.die_with_parent(signal.SIGTERM)  # ember stop --force kills only the supervisor


def main() -> int:
    args = sys.argv[1:]
    state: dict[str, Any] = {"stopping": False, "child": None}

    def on_signal(signum: int, frame: Any) -> None:
        state["stopping"] = True
        child: Optional[subprocess.Popen] = state["child"]
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    first, delay = True, 0.5
    while not state["stopping"]:
        child = state["child"] = subprocess.Popen([sys.executable, "-m", _MODULE, *args], stdout=subprocess.PIPE,
                                                  preexec_fn=_die_with_supervisor)
        line = child.stdout.readline() if child.stdout is not None else b""
        if first:
            if not line.startswith(b"READY"):
                return child.wait() or 1
            sys.stdout.write(line.decode())
            sys.stdout.flush()
        rc = child.wait()
        if state["stopping"]:
            return 0
        sys.stderr.write(f"ember supervisor: the control store exited ({rc}); restarting it in {delay:.1f} s\n")
        sys.stderr.flush()
        time.sleep(delay)
        first, delay = False, min(delay * 2, 5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
