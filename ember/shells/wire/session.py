"""Where a cluster keeps its files: session directory, token, address of the current head.

The session root is per user: ``$EMBER_TMPDIR`` if set, else ``<tmp>/ember-<uid>``. It is
created 0700 and refused (``UnsafeSessionRoot``) when it is
owned by another user, writable by group or others, or (the default root) a symbolic link:
another local user must not be able to plant files there. Files are written without
following symbolic links (``O_NOFOLLOW``/``O_EXCL``, temp file + atomic rename) and read
with ``O_NOFOLLOW``.

The root holds ``current_cluster`` (the address of the head started by ``ember start
--head`` on this machine, and its session directory), ``session_latest`` (a link to the
newest session) and one ``session_*`` directory per cluster with ``token`` (mode 0600),
``cluster.json`` (how to find the cluster and tell whether it still runs), ``logs/`` and
the ``pids`` file of ``ember start``.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from typing import Any, Optional

CURRENT_CLUSTER_NAME = "current_cluster"
LATEST_LINK_NAME = "session_latest"
CLUSTER_RECORD_NAME = "cluster.json"
TOKEN_ENV = "EMBER_CLUSTER_TOKEN"


class UnsafeSessionRoot(PermissionError):
    """The session root (or a file in it) could be controlled by another local user."""


def root() -> str:
    """The session root of this user (not checked; see ``ensure_root``/``checked_root``).

    Not ``$XDG_RUNTIME_DIR``: it is absent under cron, ``sudo -u`` and some services (so a driver
    there would not find the cluster started from a login shell), and it is a small RAM-backed
    tmpfs, while a session holds logs and spilled objects.
    """
    explicit = os.environ.get("EMBER_TMPDIR")
    if explicit:
        return explicit
    return os.path.join(tempfile.gettempdir(), f"ember-{os.geteuid()}")


def __getattr__(name: str) -> Any:
    # ROOT and CURRENT_CLUSTER follow EMBER_TMPDIR at the time of use (tests change it).
    if name == "ROOT":
        return root()
    if name == "CURRENT_CLUSTER":
        return os.path.join(root(), CURRENT_CLUSTER_NAME)
    raise AttributeError(name)


def _refuse(path: str, why: str) -> UnsafeSessionRoot:
    return UnsafeSessionRoot(
        f"ember refuses to use the session directory {path}: {why}. Another local user could plant "
        f"files there (a fake cluster address, links that make ember overwrite your files). Remove it, "
        f"or set EMBER_TMPDIR to a directory of your own with mode 0700.")


def check_dir(path: str, *, allow_link: bool) -> None:
    """Raise ``UnsafeSessionRoot`` unless ``path`` is a directory of this user that only it can write."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        if not allow_link:
            raise _refuse(path, "it is a symbolic link")
        st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "it is not a directory")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"it is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(path, f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def checked_root(*, create: bool) -> Optional[str]:
    """The session root after the safety checks; None when it does not exist and ``create`` is off."""
    path = root()
    explicit = bool(os.environ.get("EMBER_TMPDIR"))
    try:
        check_dir(path, allow_link=explicit)
    except FileNotFoundError:
        if not create:
            return None
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # created by a concurrent process: check it below
        check_dir(path, allow_link=explicit)
    return path


def ensure_root() -> str:
    path = checked_root(create=True)
    assert path is not None
    return path


# --- writing and reading without following links -----------------------------------------------
def _open_nofollow(path: str, flags: int, mode: int = 0o600) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(path, "it is a symbolic link") from None
        raise


def write_new(path: str, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` (it must not exist, not even as a link) holding ``data``."""
    fd = _open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def replace_file(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically: a new temp file (O_EXCL), then rename over ``path``.

    A symbolic link at ``path`` is refused, not replaced and never followed.
    """
    if os.path.islink(path):
        raise _refuse(path, "it is a symbolic link")
    tmp = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    write_new(tmp, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def read_file(path: str) -> bytes:
    fd = _open_nofollow(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- session directories ----------------------------------------------------------------------
def new_session_dir() -> str:
    base = ensure_root()
    name = time.strftime("session_%Y-%m-%d_%H-%M-%S") + f"_{os.getpid()}_{secrets.token_hex(3)}"
    path = os.path.join(base, name)
    os.mkdir(path, 0o700)
    os.mkdir(os.path.join(path, "logs"), 0o700)
    _point_latest(base, name)
    return path


def _point_latest(base: str, name: Optional[str]) -> None:
    """Make ``session_latest`` point at ``name`` (atomically), or remove it when ``name`` is None."""
    link = os.path.join(base, LATEST_LINK_NAME)
    if name is None:
        if os.path.islink(link):
            _unlink(link)
        return
    tmp = f"{link}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    os.symlink(name, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        _unlink(tmp)


def remove_session_dir(session_dir: str) -> None:
    """Delete a session directory; ``session_latest`` then points at the newest one left."""
    base = os.path.dirname(session_dir)
    shutil.rmtree(session_dir, ignore_errors=True)
    link = os.path.join(base, LATEST_LINK_NAME)
    try:
        target = os.readlink(link)
    except OSError:
        return
    if target == os.path.basename(session_dir):
        left = session_dirs()
        _point_latest(base, os.path.basename(left[-1]) if left else None)


def session_dirs() -> list[str]:
    """Every ``session_*`` directory under the root, oldest name first."""
    base = root()
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("session_") and n != LATEST_LINK_NAME)
    except OSError:
        return []
    out = []
    for n in names:
        path = os.path.join(base, n)
        if os.path.isdir(path) and not os.path.islink(path):
            out.append(path)
    return out


# --- the token ------------------------------------------------------------------------------
def create_token(session_dir: str) -> bytes:
    token = secrets.token_hex(32).encode()
    write_new(token_path(session_dir), token)
    return token


def token_path(session_dir: str) -> str:
    return os.path.join(session_dir, "token")


def read_token(path: str) -> bytes:
    """A token file inside a session directory (never read through a link)."""
    return read_file(path).strip()


def read_token_file(path: str) -> bytes:
    """A token file the user named (``--token-file``): links are allowed, emptiness is not."""
    with open(os.path.expanduser(path), "rb") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


def write_token(session_dir: str, token: bytes) -> str:
    """Store a cluster's token (from another machine's head) in a local session directory."""
    path = token_path(session_dir)
    write_new(path, token)
    return path


def find_token_and_source(address: str, token: Optional[str] = None, *, token_file: Optional[str] = None,
                          session_dir: Optional[str] = None) -> tuple[bytes, str]:
    """The token for a head and where it came from (for error messages).

    Order: ``token`` (a value given by the program); ``token_file``; ``EMBER_CLUSTER_TOKEN``; the token of ``session_dir`` (a cluster
    found on this machine); a local session whose cluster record has this address; the
    current head's token file.
    """
    if token:
        return token.encode(), "the token passed by the program"
    if token_file:
        return read_token_file(token_file), f"the file {token_file}"
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.encode(), f"the environment variable {TOKEN_ENV}"
    candidates = [session_dir] if session_dir else []
    candidates += [d for d in session_dirs() if (read_cluster_record(d) or {}).get("address") == address]
    cur = read_current_cluster()
    if cur is not None:
        candidates.append(str(cur["session_dir"]))
    for directory in candidates:
        path = token_path(directory)
        if os.path.lexists(path):
            return read_token(path), f"the file {path}"
    raise ConnectionError(
        f"no cluster token for {address}: set {TOKEN_ENV} or pass --token-file "
        f"(the token is in the head's session directory, file 'token')")


def find_token(address: str, token: Optional[str] = None, *, token_file: Optional[str] = None,
               session_dir: Optional[str] = None) -> bytes:
    return find_token_and_source(address, token, token_file=token_file, session_dir=session_dir)[0]


# --- the current cluster (``ember start --head``) and cluster records ----------------------------
def write_current_cluster(address: str, session_dir: str) -> None:
    base = ensure_root()
    data = json.dumps({"address": address, "session_dir": session_dir}).encode()
    replace_file(os.path.join(base, CURRENT_CLUSTER_NAME), data)


def read_current_cluster() -> Optional[dict]:
    base = checked_root(create=False)
    if base is None:
        return None
    try:
        data = json.loads(read_file(os.path.join(base, CURRENT_CLUSTER_NAME)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if isinstance(exc, UnsafeSessionRoot):
            raise
        return None
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        return None
    return data


def clear_current_cluster() -> None:
    base = checked_root(create=False)
    if base is not None:
        _unlink(os.path.join(base, CURRENT_CLUSTER_NAME))


def write_cluster_record(session_dir: str, record: dict) -> None:
    """``cluster.json``: address, who started it (``init``/``start``), control-store pid and start time."""
    replace_file(os.path.join(session_dir, CLUSTER_RECORD_NAME), json.dumps(record).encode())


def read_cluster_record(session_dir: str) -> Optional[dict]:
    try:
        data = json.loads(read_file(os.path.join(session_dir, CLUSTER_RECORD_NAME)))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("address"), str) else None


def remove_cluster_record(session_dir: str) -> None:
    _unlink(os.path.join(session_dir, CLUSTER_RECORD_NAME))


# --- files written by ``ember start`` ------------------------------------------------------------
PIDS_FILE = "pids"


def pids_path(session_dir: str) -> str:
    return os.path.join(session_dir, PIDS_FILE)


def record_pid(session_dir: str, *, pid: int, create_time: float, role: str, address: str) -> None:
    """Append one daemon started by ``ember start`` to the session's pid file (one JSON a line).

    ``create_time`` (psutil's) lets ``ember stop`` tell the daemon from a later process that
    reused its pid.
    """
    line = json.dumps({"pid": pid, "create_time": create_time, "role": role, "address": address}) + "\n"
    fd = _open_nofollow(pids_path(session_dir), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_pids(session_dir: str) -> list[dict]:
    try:
        lines = read_file(pids_path(session_dir)).decode().splitlines()
    except (OSError, UnicodeDecodeError):
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
    _unlink(pids_path(session_dir))


# --- the job server's address (written by the job server once it listens) -----------------------
JOB_SERVER_FILE = "job_server"


def write_job_server_url(session_dir: str, url: str) -> None:
    replace_file(os.path.join(session_dir, JOB_SERVER_FILE), url.encode())


def read_job_server_url(session_dir: str) -> Optional[str]:
    try:
        return read_file(os.path.join(session_dir, JOB_SERVER_FILE)).decode().strip() or None
    except (OSError, ValueError):
        return None
