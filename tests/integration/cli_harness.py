"""Run the ``ember`` CLI in subprocesses against a private session root (EMBER_TMPDIR).

Each harness has its own root, so its ``ember stop`` and its process checks never see the
clusters of other tests running on the same machine.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Optional

import psutil

_CLEARED_ENV = ("EMBER_ADDRESS", "RAY_ADDRESS", "EMBER_CLUSTER_TOKEN")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CliHarness:
    def __init__(self, root: str, extra_env: Optional[dict[str, str]] = None) -> None:
        self.root = root
        env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
        env.update(extra_env or {})
        env["EMBER_TMPDIR"] = root
        self.env = env

    def ember(self, *args: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ember.cli.main", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout_s)

    def python(self, code: str, timeout_s: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s)

    def start_head(self, *args: str) -> int:
        port = free_port()
        done = self.ember("start", "--head", "--port", str(port), *args)
        assert done.returncode == 0, f"ember start --head failed:\n{done.stdout}\n{done.stderr}"
        return port

    def current_cluster(self) -> Optional[dict]:
        try:
            with open(os.path.join(self.root, "current_cluster")) as f:
                return json.load(f)
        except OSError:
            return None

    def token(self) -> str:
        current = self.current_cluster()
        assert current is not None, "no current-cluster file"
        with open(os.path.join(current["session_dir"], "token")) as f:
            return f.read().strip()

    def pid_entries(self) -> list[dict]:
        out = []
        for name in sorted(os.listdir(self.root)):
            if os.path.islink(os.path.join(self.root, name)):  # session_latest
                continue
            path = os.path.join(self.root, name, "pids")
            if os.path.exists(path):
                with open(path) as f:
                    out += [json.loads(line) for line in f if line.strip()]
        return out

    def processes(self) -> list[psutil.Process]:
        """Live (non-zombie) ember daemons, zygotes and workers started under this root."""
        out = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if not any("ember.shells" in part for part in proc.info["cmdline"] or []):
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get("EMBER_TMPDIR") == self.root:
                    out.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def kill_leftovers(self) -> list[int]:
        """Last resort for teardown: SIGKILL whatever is still running under this root."""
        left = self.processes()
        for proc in left:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        return [p.pid for p in left]
