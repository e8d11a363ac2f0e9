"""``RuntimeEnv``: Ray's runtime environment value (a checked dict of env_vars, working_dir, ...)."""
from __future__ import annotations

from typing import Any, Optional

from ember.logic import runtime_env as _rt

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict):
    """``config`` of a runtime env: ``setup_timeout_seconds`` (default 600; -1: no limit)."""

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True) -> None:
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install)
        _rt.validate({"config": dict(self)})


class RuntimeEnv(dict):
    """A runtime environment for a job, a task or an actor (Ray's fields; checked on creation)."""

    def __init__(self, *, py_modules: Optional[list] = None, working_dir: Optional[str] = None,
                 pip: Any = None, uv: Any = None, conda: Any = None, container: Any = None,
                 env_vars: Optional[dict] = None, config: Optional[dict] = None, **kwargs: Any) -> None:
        fields = {"py_modules": py_modules, "working_dir": working_dir, "pip": pip, "uv": uv, "conda": conda,
                  "container": container, "env_vars": env_vars, "config": config, **kwargs}
        super().__init__({k: v for k, v in fields.items() if v is not None})
        _rt.validate(dict(self))

    def to_dict(self) -> dict:
        return dict(self)

    def env_vars(self) -> dict:
        return dict(self.get("env_vars") or {})

    def working_dir(self) -> str:
        return str(self.get("working_dir") or "")


# --- from a driver's options to what travels with tasks ---------------------------------------------
# A local working_dir / py_modules path is packed and uploaded once per driver process (by
# path and excludes); the env that travels holds only package URIs.
JOB_ENV_VAR = "EMBER_JOB_RUNTIME_ENV"
_uploaded: dict[tuple, str] = {}
_job_env: Optional[dict] = None


def _upload(cw: Any, path: str, excludes: Optional[list]) -> str:
    from ember.protocol import messages as m
    from ember.shells.shared.runtime_env import packaging
    if packaging.is_package_uri(path):
        return path
    key = (path, tuple(excludes or ()))
    uri = _uploaded.get(key)
    if uri is None:
        uri, data = packaging.pack_local(path, excludes)
        cw.run_sync(cw.gcs.request(m.KvPut(packaging.KV_NAMESPACE, uri.encode(), data, False)), 120)
        _uploaded[key] = uri
    return uri


def upload(env: Optional[dict], cw: Any) -> dict:
    """``env`` checked, with its local paths replaced by uploaded package URIs."""
    out = _rt.validate(dict(env) if env else None)
    excludes = out.pop("excludes", None)
    if out.get("working_dir"):
        out["working_dir"] = _upload(cw, out["working_dir"], excludes)
    if out.get("py_modules"):
        out["py_modules"] = [_upload(cw, p, excludes) for p in out["py_modules"]]
    return out


def set_job_env(env: Optional[dict]) -> None:
    """The env every task and actor of this driver starts from (``init(runtime_env=...)``);
    None: back to the environment variable (a job's driver, a worker with an env)."""
    global _job_env
    _job_env = dict(env) if env is not None else None


def job_env() -> dict:
    if _job_env is not None:
        return _job_env
    import json
    import os
    raw = os.environ.get(JOB_ENV_VAR)  # set for a job's driver and for workers with an env
    try:
        return dict(json.loads(raw)) if raw else {}
    except ValueError:
        return {}


def for_submission(env: Optional[dict], cw: Any) -> Optional[dict]:
    """The env a task or actor runs in: the job's, overridden by its own options (or None)."""
    merged = _rt.merge(job_env(), upload(env, cw) if env else {})
    return merged or None
