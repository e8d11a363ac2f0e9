"""Checking a runtime_env dict (Ray's fields), wherever it enters: init(), .options(), a job.

Pure: it checks shapes only; whether a path exists or a package installs is found out by the
process that sets the environment up.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

SUPPORTED = ("working_dir", "py_modules", "pip", "uv", "env_vars", "excludes", "config")
UNSUPPORTED = ("conda", "container", "image_uri", "java_jars", "nsight", "mpi")
SETUP_TIMEOUT_S_DEFAULT = 600.0


def _check_str_list(name: str, value: Any) -> None:
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise TypeError(f"runtime_env['{name}'] must be a list of strings, got {value!r}")


def validate(env: Any) -> dict[str, Any]:
    """A copy of ``env`` with its fields checked; TypeError/ValueError name the bad field."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(env).__name__}")
    out: dict[str, Any] = {}
    for key, value in env.items():
        if key in UNSUPPORTED:
            raise ValueError(f"runtime_env['{key}'] is not supported by ember (supported: {', '.join(SUPPORTED)})")
        if key not in SUPPORTED:
            raise ValueError(f"unknown runtime_env field {key!r} (supported: {', '.join(SUPPORTED)})")
        if value is None:
            continue
        if key == "env_vars":
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in value.items()):
                raise TypeError("runtime_env['env_vars'] must be a dict of str to str, "
                                f"got {value!r}")
        elif key == "working_dir":
            if not isinstance(value, str) or not value:
                raise TypeError(f"runtime_env['working_dir'] must be a path or URI string, got {value!r}")
        elif key in ("py_modules", "excludes"):
            _check_str_list(key, value)
        elif key in ("pip", "uv"):
            if isinstance(value, dict):
                _check_str_list(f"{key}']['packages", value.get("packages", []))
            elif not isinstance(value, str):
                _check_str_list(key, value)
        elif key == "config":
            value = _check_config(value)
        out[key] = value
    if "pip" in out and "uv" in out:
        raise ValueError("runtime_env may hold 'pip' or 'uv', not both")
    if "uv" in out:
        out["pip"] = out.pop("uv")
    return out


def _check_config(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"runtime_env['config'] must be a dict, got {value!r}")
    unknown = set(value) - {"setup_timeout_seconds", "eager_install"}
    if unknown:
        raise ValueError(f"unknown runtime_env['config'] field(s): {sorted(unknown)}")
    timeout = value.get("setup_timeout_seconds", SETUP_TIMEOUT_S_DEFAULT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or (timeout <= 0 and timeout != -1):
        raise ValueError(f"setup_timeout_seconds must be a positive number or -1, got {timeout!r}")
    return dict(value)


def setup_timeout_s(env: dict[str, Any]) -> float:
    timeout = float((env.get("config") or {}).get("setup_timeout_seconds", SETUP_TIMEOUT_S_DEFAULT))
    return 1e9 if timeout == -1 else timeout


def merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A task's env over its job's: fields of the child win; env_vars merge key by key (as Ray)."""
    if not parent:
        return dict(child)
    out = {**parent, **child}
    if "env_vars" in parent and "env_vars" in child:
        out["env_vars"] = {**parent["env_vars"], **child["env_vars"]}
    return out


def env_key(env: dict[str, Any]) -> str:
    """The name of a distinct environment: workers are pooled by it ("" for no env)."""
    if not env:
        return ""
    return hashlib.sha256(json.dumps(env, sort_keys=True, default=str).encode()).hexdigest()[:16]
