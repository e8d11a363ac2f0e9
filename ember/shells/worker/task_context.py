"""What a worker knows about the task it is running (read by get_runtime_context and get_gpu_ids)."""
from __future__ import annotations

from ember.protocol import messages as m


class TaskContext:
    __slots__ = ("task_id", "name", "resources", "gpu_ids", "actor_id", "spec")

    def __init__(self, spec: m.TaskSpec, gpu_ids: list) -> None:
        self.task_id = spec.task_id
        self.name = spec.name
        self.resources = spec.resources
        self.gpu_ids = gpu_ids
        self.actor_id = spec.actor_id
        self.spec = spec
