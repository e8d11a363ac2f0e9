"""ember: Ray Core's API on a light, fast runtime.  ``import ember as ray`` works."""
from ember import actor, exceptions, util
from ember.api import (available_resources, cancel, cluster_resources, get, get_actor, get_gpu_ids, init, is_initialized,
                       kill, method, nodes, put, remote, shutdown, wait)
from ember.object_ref import ObjectRef
from ember.runtime_context import get_runtime_context

__version__ = "0.1.0"

__all__ = [
    "ObjectRef", "actor", "available_resources", "cancel", "cluster_resources", "exceptions", "get", "get_actor",
    "get_gpu_ids", "get_runtime_context", "init", "is_initialized", "kill", "method", "nodes", "put", "remote",
    "shutdown", "util", "wait",
]
