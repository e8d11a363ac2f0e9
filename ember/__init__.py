"""ember: Ray Core's API on a light, fast runtime.  ``import ember as ray`` works.

The public names are re-exported lazily (PEP 562): ``import ember`` costs almost nothing,
and the daemons, which import ``ember.shells.*``, never load the user-facing layer.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ObjectRef": "ember.object_ref",
    "available_resources": "ember.api", "cancel": "ember.api", "cluster_resources": "ember.api",
    "get": "ember.api", "get_actor": "ember.api", "get_gpu_ids": "ember.api", "init": "ember.api",
    "is_initialized": "ember.api", "kill": "ember.api", "method": "ember.api", "nodes": "ember.api",
    "put": "ember.api", "remote": "ember.api", "shutdown": "ember.api", "wait": "ember.api",
    "get_runtime_context": "ember.runtime_context",
    "timeline": "ember.util.state.timeline",
    "ObjectRefGenerator": "ember.shells.worker.generators",
    "DynamicObjectRefGenerator": "ember.shells.worker.generators",
    **{name: "ember.ids" for name in ("ActorClassID", "ActorID", "FunctionID", "JobID", "NodeID", "ObjectID",
                                       "PlacementGroupID", "TaskID", "UniqueID", "WorkerID")},
}
# Ray's worker modes (ray.SCRIPT_MODE ...): plain constants.
SCRIPT_MODE, WORKER_MODE, LOCAL_MODE = 0, 1, 2
_SUBMODULES = {"actor", "exceptions", "experimental", "util"}

__all__ = sorted([*_EXPORTS, *_SUBMODULES, "LOCAL_MODE", "SCRIPT_MODE", "WORKER_MODE"])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"ember.{name}")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'ember' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *_SUBMODULES])


if TYPE_CHECKING:  # pragma: no cover
    from ember import actor, exceptions, util  # noqa: F401
    from ember.ids import (ActorClassID, ActorID, FunctionID, JobID, NodeID, ObjectID,  # noqa: F401
                           PlacementGroupID, TaskID, UniqueID, WorkerID)
    from ember.api import (available_resources, cancel, cluster_resources, get, get_actor,  # noqa: F401
                           get_gpu_ids, init, is_initialized, kill, method, nodes, put, remote, shutdown, wait)
    from ember.object_ref import ObjectRef  # noqa: F401
    from ember.runtime_context import get_runtime_context  # noqa: F401
