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
