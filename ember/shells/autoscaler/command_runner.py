"""Running a cluster config's commands on a machine over SSH (the OpenSSH client, as Ray's launcher does).

One `SSHCommandRunner` per cluster config: it knows the user, the key, the port and where the host keys
are kept. Secrets (the cluster token) travel on the command's stdin, never on a command line that `ps`
would show on either machine. Host keys: first contact records the key (`accept-new`) in a known-hosts
file of ember's own (`~/.ember/ssh_known_hosts` unless `auth.ssh_known_hosts_file` says otherwise); a key
that changes afterwards is refused by ssh, with its message passed on.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

DEFAULT_KNOWN_HOSTS = os.path.join("~", ".ember", "ssh_known_hosts")


class RemoteCommandError(RuntimeError):
    """A command run over SSH failed: names the host, the command and what it printed."""


@dataclass(frozen=True)
class SSHCommandRunner:
    user: str
    private_key: Optional[str] = None
    port: int = 22
    known_hosts_file: str = DEFAULT_KNOWN_HOSTS
    connect_timeout_s: int = 10

    @classmethod
    def from_config(cls, auth: Mapping, provider: Mapping) -> "SSHCommandRunner":
        user = auth.get("ssh_user") or os.environ.get("USER") or "root"
        key = auth.get("ssh_private_key")
        return cls(user=str(user), private_key=os.path.expanduser(key) if key else None,
                   port=int(provider.get("ssh_port", 22)),
                   known_hosts_file=str(auth.get("ssh_known_hosts_file", DEFAULT_KNOWN_HOSTS)))

    def ssh_argv(self, host: str, *, tty: bool = False) -> list[str]:
        known = os.path.expanduser(self.known_hosts_file)
        os.makedirs(os.path.dirname(known) or ".", exist_ok=True)
        argv = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={known}", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.private_key:
            argv += ["-i", self.private_key, "-o", "IdentitiesOnly=yes"]
        argv.append("-tt" if tty else "-T")
        return argv + [f"{self.user}@{host}"]

    def run(self, host: str, commands: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            secret_env: Optional[Mapping[str, str]] = None, stdin_data: Optional[bytes] = None,
            timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``commands`` in one shell on ``host``, stopping at the first that fails (``set -e``).

        ``env`` is exported in the script; ``secret_env`` values are read from stdin first (one line each)
        so they appear on no command line; ``stdin_data`` follows them for the commands to read."""
        script = remote_script(commands, env or {}, list((secret_env or {}).keys()))
        feed = b"".join(v.encode() + b"\n" for v in (secret_env or {}).values()) + (stdin_data or b"")
        argv = self.ssh_argv(host) + [script]
        try:
            done = subprocess.run(argv, input=feed, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise RemoteCommandError(f"{self.user}@{host}: the commands did not finish within {timeout_s:.0f} s: "
                                     f"{'; '.join(commands)}") from exc
        if check and done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace").strip()[-3000:]
            what = "ssh could not connect" if done.returncode == 255 else f"exit status {done.returncode}"
            raise RemoteCommandError(f"{self.user}@{host}: {what} running: {'; '.join(commands)}\n{out}")
        return done


def remote_script(commands: Sequence[str], env: Mapping[str, str], secret_names: Sequence[str]) -> str:
    """One POSIX shell script: read the secrets from stdin, export the environment, run the commands."""
    lines = ["set -e"]
    for name in secret_names:
        lines.append(f"IFS= read -r {name}; export {name}")
    for name, value in env.items():
        lines.append(f"export {name}={shlex.quote(str(value))}")
    lines += list(commands)
    return "\n".join(lines)


def write_remote_file(runner: SSHCommandRunner, host: str, path_expr: str, data: bytes, *, mode: str = "600") -> str:
    """Write ``data`` to ``path_expr`` (a shell expression, e.g. ``$HOME/x``) on ``host``; returns the path."""
    done = runner.run(host, [f'p="{path_expr}"', 'mkdir -p "$(dirname "$p")"', 'umask 077',
                             'cat > "$p"', f'chmod {mode} "$p"', 'echo "$p"'], stdin_data=data, timeout_s=60)
    return done.stdout.decode().strip().splitlines()[-1]
