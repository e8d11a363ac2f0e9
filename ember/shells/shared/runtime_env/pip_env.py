"""Virtual environments for ``runtime_env["pip"]``: one per distinct requirement set per node.

Rule 1: an environment is named by the hash of its sorted requirement lines and built once per
node (a file lock serialises builders); ``.ready`` marks a finished build, so a crash mid-build
leaves a directory that the next builder removes and redoes.
Rule 2: ember stays importable inside: a ``.pth`` file puts ember's own ``sys.path`` entries
*after* the environment's site-packages, so the requested packages win over the cluster's.
Built with ``uv`` when it is on PATH or next to this Python, else ``python -m venv`` + pip.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from typing import Optional

from ember.exceptions import RuntimeEnvSetupError
from ember.shells.shared.runtime_env.packaging import resources_root

_OUTPUT_TAIL_CHARS = 3000


def requirements_list(pip: object) -> list[str]:
    """Ray's forms: a list of lines, a requirements file path, or {"packages": [...]}."""
    if isinstance(pip, dict):
        pip = pip.get("packages", [])
    if isinstance(pip, str):
        try:
            with open(os.path.expanduser(pip)) as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise RuntimeEnvSetupError(f"pip: cannot read requirements file {pip!r}: {exc}") from None
        pip = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not isinstance(pip, (list, tuple)) or not all(isinstance(x, str) for x in pip):
        raise RuntimeEnvSetupError(f"pip must be a list of requirement strings, got {pip!r}")
    return [str(x) for x in pip]


def env_hash(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:24]


def _uv() -> Optional[str]:
    local = os.path.join(os.path.dirname(sys.executable), "uv")
    return local if os.access(local, os.X_OK) else shutil.which("uv")


def _run(cmd: list[str], step: str, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RuntimeEnvSetupError(f"pip: {step} did not start: setup_timeout_seconds ran out")
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=left,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeEnvSetupError(f"pip: {step} timed out (setup_timeout_seconds)") from None
    if out.returncode != 0:
        tail = out.stdout.decode(errors="replace")[-_OUTPUT_TAIL_CHARS:]
        raise RuntimeEnvSetupError(f"pip: {step} failed (exit code {out.returncode}):\n{tail}")


def site_packages(venv: str) -> str:
    return sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})


def _build(venv: str, requirements: list[str], deadline: float) -> None:
    uv = _uv()
    python = os.path.join(venv, "bin", "python")
    if uv:
        _run([uv, "venv", "--quiet", "--python", sys.executable, venv], "creating the venv (uv)", deadline)
        if requirements:
            _run([uv, "pip", "install", "--quiet", "--python", python, *requirements],
                 "installing " + " ".join(requirements) + " (uv)", deadline)
    else:
        _run([sys.executable, "-m", "venv", venv], "creating the venv (python -m venv)", deadline)
        if requirements:
            _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
                 "installing " + " ".join(requirements) + " (pip)", deadline)
    ours = [p for p in sys.path if p and os.path.isdir(p)]
    with open(os.path.join(site_packages(venv), "_ember_parent.pth"), "w") as f:
        f.write("\n".join(ours) + "\n")


def ensure_venv(pip: object, timeout_s: float, root: Optional[str] = None) -> str:
    """The directory of a ready virtual environment holding ``pip``'s requirements."""
    requirements = requirements_list(pip)
    base = os.path.join(root or resources_root(), "pip")
    os.makedirs(base, mode=0o700, exist_ok=True)
    venv = os.path.join(base, env_hash(requirements))
    ready = os.path.join(venv, ".ready")
    if os.path.exists(ready):
        return venv
    deadline = time.monotonic() + timeout_s
    with open(venv + ".lock", "w") as lock:
        while True:  # wait for another builder without outliving the timeout
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeEnvSetupError("pip: timed out waiting for another process building the "
                                               "same environment") from None
                time.sleep(0.1)
        if os.path.exists(ready):
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        try:
            _build(venv, requirements, deadline)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        open(ready, "w").close()
    return venv
