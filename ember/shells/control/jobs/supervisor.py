"""The job supervisor: one detached async actor per job, running the entrypoint as a subprocess.

It is created by the job server with the entrypoint's resources (num_cpus defaults to 0, as in
Ray), so the node that hosts it is a node where the entrypoint fits.  The entrypoint runs in a
new session (its own process group) with stdout and stderr appended to one log file; stopping
sends SIGTERM to the group and every descendant found, then SIGKILL after a grace period.
This class runs inside a worker process; it imports nothing from other process packages.
"""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Optional

import psutil

from ember.exceptions import RuntimeEnvSetupError
from ember.shells.shared import processes
from ember.shells.shared.runtime_env import setup
from ember.shells.wire import session

TAIL_BYTES = 20_000
_POLL_S = 0.1


def job_log_dir() -> str:
    path = os.path.join(session.ensure_root(), "job_logs")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


class JobSupervisor:
    def __init__(self, submission_id: str) -> None:
        self.submission_id = submission_id
        self.log_path = os.path.join(job_log_dir(), f"job-driver-{submission_id}.log")
        self.proc: Optional[subprocess.Popen] = None
        self.is_stopping = False
        self._stop_task: Optional[asyncio.Future] = None

    async def start(self, entrypoint: str, runtime_env: dict, packages: dict, extra_env: dict) -> dict:
        """Set up the runtime env and start the entrypoint; returns {"pid", "setup_s", "node_ip"}."""
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(None, setup.prepare, runtime_env, packages.get)
        except RuntimeEnvSetupError:
            raise
        except Exception as exc:  # anything else in setup is still a setup failure, named
            raise RuntimeEnvSetupError(f"runtime_env setup failed: {type(exc).__name__}: {exc}") from None
        base = dict(os.environ)  # `python` in the entrypoint is the cluster's Python, as in Ray
        base["PATH"] = os.path.dirname(sys.executable) + os.pathsep + base.get("PATH", "")
        env = setup.child_environ(prepared, base)
        env.update(extra_env)
        env.update(prepared.env_vars)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", entrypoint], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=prepared.cwd or os.getcwd(), env=env, start_new_session=True,
                preexec_fn=lambda: processes.die_with_parent(signal.SIGKILL))
        finally:
            log.close()
        return {"pid": self.proc.pid, "setup_s": prepared.setup_s, "node_ip": os.environ.get("EMBER_NODE_IP_ADDRESS", "")}

    async def wait(self) -> list:
        """[exit code, the last TAIL_BYTES of output] once the entrypoint has exited."""
        assert self.proc is not None, "start() was not called"
        while self.proc.poll() is None:
            await asyncio.sleep(_POLL_S)
        if self._stop_task is not None:  # the rest of the tree may still need its SIGKILL
            await asyncio.shield(self._stop_task)
        else:  # the entrypoint ended: what it left running in its process group ends with it
            _signal_all(self.proc.pid, [], signal.SIGTERM)
        return [self.proc.returncode, self._tail()]

    def _tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - TAIL_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    async def read_logs(self, offset: int, max_bytes: int) -> list:
        """[bytes from ``offset`` (at most max_bytes), the next offset]."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                data = f.read(max_bytes)
        except OSError:
            data = b""
        return [data, offset + len(data)]

    async def stop(self, grace_s: float) -> bool:
        """SIGTERM the entrypoint's whole tree, SIGKILL what is left after ``grace_s``."""
        self.is_stopping = True
        if self.proc is None or self.proc.poll() is not None:
            return False
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop_tree(grace_s))
        return await asyncio.shield(self._stop_task)

    async def _stop_tree(self, grace_s: float) -> bool:
        assert self.proc is not None
        tree = _tree(self.proc.pid)
        _signal_all(self.proc.pid, tree, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + grace_s
        while asyncio.get_running_loop().time() < deadline:
            if self.proc.poll() is not None and not any(_alive(p) for p in tree):
                return True
            await asyncio.sleep(_POLL_S)
        _signal_all(self.proc.pid, tree + _tree(self.proc.pid), signal.SIGKILL)
        return True

    def ping(self) -> str:
        return self.submission_id


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_all(pgid: int, tree: list[psutil.Process], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for proc in tree:  # descendants that left the process group
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


