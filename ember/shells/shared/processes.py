"""Process helpers: start daemons, make children die with their parent, stop trees."""
from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from typing import Optional

import psutil

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except OSError:
        pass


def _die_with_parent_by_sigterm() -> None:
    die_with_parent(signal.SIGTERM)


def free_port(host: str) -> int:
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def launch_daemon(module: str, args: list[str], *, log_path: str, tied_to_parent: bool,
                  env: Optional[dict[str, str]] = None) -> subprocess.Popen:
    """Start ``python -m module args`` with stdout piped for its ``READY <port>`` line."""
    err = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
        # SIGTERM, not SIGKILL: a daemon whose parent died runs its own shutdown (the node
        # daemon removes its /dev/shm directory, stops its zygote and workers).
        preexec_fn=_die_with_parent_by_sigterm if tied_to_parent else os.setsid,
        env=env, close_fds=True,
    )
    err.close()
    return proc


def wait_ready(proc: subprocess.Popen, module: str, log_path: str, timeout_s: float = 30.0) -> int:
    """Wait for the ``READY <port>`` line of a daemon started by ``launch_daemon``; a daemon
    that exits, or says nothing within ``timeout_s``, is killed and reported with its log."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
        if not ready:
            return _failed(proc, module, log_path, f"no READY line within {timeout_s:.0f} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            return _failed(proc, module, log_path, "it exited")
        buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
    if not line.startswith("READY "):
        return _failed(proc, module, log_path, f"unexpected output {line[:200]!r}")
    return int(line.split()[1])


def _failed(proc: subprocess.Popen, module: str, log_path: str, why: str) -> int:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        with open(log_path, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
    except OSError:
        tail = "(no log)"
    raise RuntimeError(f"{module} failed to start ({why}; exit {proc.returncode}); log {log_path}:\n{tail}")


def wait_gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            return True
        time.sleep(0.02)
    return False
