"""Turning a checked runtime_env (packages already uploaded) into a process environment.

``prepare`` does the slow, cached work (unpack packages, build the pip venv) and returns what a
process needs; ``child_environ`` makes the environment variables of a child from it.
Every failure is a ``RuntimeEnvSetupError`` naming the step and the cause.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Optional

from ember.exceptions import RuntimeEnvSetupError
from ember.logic import runtime_env as rt
from ember.shells.shared.runtime_env import packaging, pip_env


@dataclasses.dataclass
class PreparedEnv:
    env_vars: dict[str, str]
    cwd: Optional[str]
    python_path: list[str]
    venv: Optional[str]
    setup_s: float


def prepare(env: dict[str, Any], fetch: Callable[[str], Optional[bytes]],
            root: Optional[str] = None) -> PreparedEnv:
    """Unpack working_dir / py_modules (``fetch(uri)`` gives a package's bytes) and build pip."""
    t0 = time.monotonic()
    cwd = None
    python_path: list[str] = []
    wd = env.get("working_dir")
    if wd:
        cwd = _package_dir("working_dir", wd, fetch, root)
        python_path.append(cwd)
    for uri in env.get("py_modules") or []:
        python_path.append(_package_dir("py_modules", uri, fetch, root))
    venv = None
    if env.get("pip"):
        venv = pip_env.ensure_venv(env["pip"], rt.setup_timeout_s(env), root=root)
    return PreparedEnv(dict(env.get("env_vars") or {}), cwd, python_path, venv, time.monotonic() - t0)


def _package_dir(step: str, uri: str, fetch: Callable[[str], Optional[bytes]], root: Optional[str]) -> str:
    if not packaging.is_package_uri(uri):
        raise RuntimeEnvSetupError(f"{step}: {uri!r} was not uploaded (pass a local path through the job "
                                   "client or init(), which upload it)")
    dest = packaging.unpacked_path(uri, root)
    if os.path.isdir(dest):
        return dest
    data = fetch(uri)
    if data is None:
        raise RuntimeEnvSetupError(f"{step}: package {uri} is not in the cluster's package store")
    try:
        return packaging.unpack(uri, data, root)
    except (OSError, ValueError) as exc:
        raise RuntimeEnvSetupError(f"{step}: unpacking {uri} failed: {exc}") from None


def child_environ(prepared: PreparedEnv, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update(prepared.env_vars)
    if prepared.python_path:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join(prepared.python_path + ([old] if old else []))
    if prepared.venv:
        env["VIRTUAL_ENV"] = prepared.venv
        env["PATH"] = os.path.join(prepared.venv, "bin") + os.pathsep + env.get("PATH", "")
        env.pop("PYTHONHOME", None)
    return env


JOB_ENV_VAR = "EMBER_JOB_RUNTIME_ENV"  # the env itself, as JSON: tasks submitted from inside inherit it


def worker_spec(prepared: PreparedEnv, env: dict[str, Any]) -> dict[str, Any]:
    """What a forked worker applies to itself (JSON for the zygote's pipe)."""
    site_dirs = [pip_env.site_packages(prepared.venv)] if prepared.venv else []
    return {"env_vars": {**prepared.env_vars, JOB_ENV_VAR: json.dumps(env, sort_keys=True)},
            "cwd": prepared.cwd, "python_path": prepared.python_path, "site_dirs": site_dirs, "venv": prepared.venv}


def apply_in_child(spec: dict[str, Any]) -> None:
    """In a freshly forked worker: take on the env (variables, cwd, import path, venv packages).

    The venv's site-packages go first on ``sys.path`` (its ``.pth`` files processed), so its
    packages win over the cluster's; modules the zygote pre-imported stay as they are.
    """
    import site
    import sys
    os.environ.update(spec.get("env_vars") or {})
    if spec.get("venv"):
        os.environ["VIRTUAL_ENV"] = spec["venv"]
        os.environ["PATH"] = os.path.join(spec["venv"], "bin") + os.pathsep + os.environ.get("PATH", "")
    before = list(sys.path)
    for d in spec.get("site_dirs") or []:
        site.addsitedir(d)
    added = [p for p in sys.path if p not in before]
    sys.path[:] = list(spec.get("python_path") or []) + added + before
    if spec.get("python_path"):
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(spec["python_path"] + ([old] if old else []))
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
