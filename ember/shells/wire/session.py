"""Where a cluster keeps its files: session directory, token, address of the current head.

/tmp/ember_sessions (mode 0700) holds ``current_cluster`` (the address of the head started by
``ember start --head`` on this machine, and its session directory) and one
``session_*`` directory per cluster with ``token`` (mode 0600), ``logs/`` and pid files.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from typing import Optional

ROOT = os.environ.get("EMBER_TMPDIR", "/tmp/ember_sessions")
CURRENT_CLUSTER = os.path.join(ROOT, "current_cluster")


def ensure_root() -> str:
    os.makedirs(ROOT, mode=0o700, exist_ok=True)
    return ROOT


def new_session_dir() -> str:
    ensure_root()
    name = time.strftime("session_%Y-%m-%d_%H-%M-%S") + f"_{os.getpid()}_{secrets.token_hex(2)}"
    path = os.path.join(ROOT, name)
    os.makedirs(os.path.join(path, "logs"), mode=0o700)
    return path


def create_token(session_dir: str) -> bytes:
    token = secrets.token_hex(32).encode()
    path = token_path(session_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(token)
    return token


def token_path(session_dir: str) -> str:
    return os.path.join(session_dir, "token")


def read_token(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read().strip()


def write_current_cluster(address: str, session_dir: str) -> None:
    ensure_root()
    tmp = CURRENT_CLUSTER + f".{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"address": address, "session_dir": session_dir}, f)
    os.replace(tmp, CURRENT_CLUSTER)


def read_current_cluster() -> Optional[dict]:
    try:
        with open(CURRENT_CLUSTER) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def clear_current_cluster() -> None:
    try:
        os.unlink(CURRENT_CLUSTER)
    except OSError:
        pass


def find_token(address: str, token: Optional[str] = None) -> bytes:
    """The token for a head: explicit, EMBER_CLUSTER_TOKEN, or the local head's token file."""
    if token:
        return token.encode()
    env = os.environ.get("EMBER_CLUSTER_TOKEN")
    if env:
        return env.encode()
    cur = read_current_cluster()
    if cur is not None:
        path = token_path(cur["session_dir"])
        if os.path.exists(path):
            return read_token(path)
    raise ConnectionError(
        f"no cluster token for {address}: set EMBER_CLUSTER_TOKEN or pass the token "
        f"(it is in the head's session directory, file 'token')")


# --- files written by ``ember start`` ------------------------------------------------------------
PIDS_FILE = "pids"


def session_dirs() -> list[str]:
    """Every ``session_*`` directory under the root, oldest name first."""
    try:
        names = sorted(n for n in os.listdir(ROOT) if n.startswith("session_"))
    except OSError:
        return []
    return [os.path.join(ROOT, n) for n in names if os.path.isdir(os.path.join(ROOT, n))]


def pids_path(session_dir: str) -> str:
    return os.path.join(session_dir, PIDS_FILE)


def record_pid(session_dir: str, *, pid: int, create_time: float, role: str, address: str) -> None:
    """Append one daemon started by ``ember start`` to the session's pid file (one JSON a line).

    ``create_time`` (psutil's) lets ``ember stop`` tell the daemon from a later process that
    reused its pid.
    """
    line = json.dumps({"pid": pid, "create_time": create_time, "role": role, "address": address}) + "\n"
    fd = os.open(pids_path(session_dir), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_pids(session_dir: str) -> list[dict]:
    try:
        with open(pids_path(session_dir)) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("pid"), int):
            out.append(entry)
    return out


def remove_pids(session_dir: str) -> None:
    try:
        os.unlink(pids_path(session_dir))
    except OSError:
        pass


def write_token(session_dir: str, token: bytes) -> str:
    """Store a cluster's token (from another machine's head) in a local session directory."""
    path = token_path(session_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(token)
    return path


# --- the job server's address (written by the job server once it listens) -----------------------
JOB_SERVER_FILE = "job_server"


def write_job_server_url(session_dir: str, url: str) -> None:
    tmp = os.path.join(session_dir, JOB_SERVER_FILE + f".{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(url)
    os.replace(tmp, os.path.join(session_dir, JOB_SERVER_FILE))


def read_job_server_url(session_dir: str) -> Optional[str]:
    try:
        with open(os.path.join(session_dir, JOB_SERVER_FILE)) as f:
            return f.read().strip() or None
    except OSError:
        return None
