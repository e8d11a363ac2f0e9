"""``get_runtime_context()``: who and where the calling code runs."""
from __future__ import annotations

import os
from typing import Any, Optional
from ember import lifecycle


class RuntimeContext:
    def __init__(self, cw: Any) -> None:
        self._cw = cw

    def _task(self) -> Any:
        return getattr(self._cw.context, "task", None)

    def get_job_id(self) -> str:
        return self._cw.job_id.hex()

    def get_node_id(self) -> str:
        return self._cw.node_id.hex()

    def get_worker_id(self) -> str:
        return self._cw.worker_id.hex()

    def get_task_id(self) -> Optional[str]:
        task = self._task()
        return task.task_id.hex() if task is not None else None

    def get_task_name(self) -> Optional[str]:
        task = self._task()
        return task.name if task is not None else None

    def get_actor_id(self) -> Optional[str]:
        actor_id = getattr(self._cw, "actor_id", None)
        return actor_id.hex() if actor_id else None

    def get_actor_name(self) -> Optional[str]:
        return getattr(self._cw, "actor_name", None)

    def get_placement_group_id(self) -> Optional[str]:
        """The hex id of the placement group this task or actor runs in, or None."""
        from ember.util.placement_group import current_placement_group_id
        return current_placement_group_id(self._cw)

    @property
    def namespace(self) -> str:
        return self._cw.get_namespace()

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    @property
    def task_id(self) -> Optional[str]:
        return self.get_task_id()

    @property
    def actor_id(self) -> Optional[str]:
        return self.get_actor_id()

    @property
    def worker_pid(self) -> int:
        return os.getpid()

    @property
    def gcs_address(self) -> str:
        return self._cw.gcs_address

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return bool(getattr(self._cw, "actor_restarted", False))

    @property
    def current_actor(self) -> Any:
        meta = getattr(self._cw, "actor_handle_meta", None)
        if meta is None:
            raise RuntimeError("This method is only available in an actor.")
        from ember.actor import ActorHandle
        return ActorHandle(self._cw.actor_id, meta)

    def get_assigned_resources(self) -> dict[str, float]:
        task = self._task()
        if task is not None:
            return dict(task.resources)
        return dict(getattr(self._cw, "actor_resources", {}) or {})

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        task = self._task()
        gpus = task.gpu_ids if task is not None else getattr(self._cw, "actor_gpu_ids", [])
        return {"GPU": [str(g) for g in gpus or []]}

    def get_runtime_env_string(self) -> str:
        return "{}"

    def get(self) -> dict[str, Any]:
        out = {"job_id": self.get_job_id(), "node_id": self.get_node_id(), "namespace": self.namespace}
        if self._cw.mode == "worker":
            out["task_id"] = self.get_task_id()
            out["actor_id"] = self.get_actor_id()
        return out


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(lifecycle.core_worker_or_init())
