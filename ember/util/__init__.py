"""ember.util: helpers built on the public API (Ray's ``ray.util``)."""
from __future__ import annotations

from typing import Any, Union

from ember.util.actor_pool import ActorPool
from ember.util.debug import disable_log_once_globally, enable_periodic_logging, log_once
from ember.util.helpers import as_completed, map_unordered
from ember.util.placement_group import (
    PlacementGroup, get_current_placement_group, get_placement_group, placement_group, placement_group_table,
    remove_placement_group,
)
from ember.util.serialization import deregister_serializer, inspect_serializability, register_serializer


def get_node_ip_address() -> str:
    """The address this process's node is reached at."""
    import os
    return os.environ.get("EMBER_NODE_IP_ADDRESS", "127.0.0.1")


def list_named_actors(all_namespaces: bool = False) -> list[Union[str, dict[str, str]]]:
    """Names of the live named actors in this job's namespace, or, with
    ``all_namespaces=True``, ``{"name": ..., "namespace": ...}`` for every namespace."""
    from ember import api
    cw: Any = api.core_worker_or_init()
    found = cw.actor_submitter.list_named(cw.get_namespace(), bool(all_namespaces))
    if all_namespaces:
        return [{"name": name, "namespace": namespace} for namespace, name in found]
    return [name for _, name in found]


__all__ = ["ActorPool", "PlacementGroup", "as_completed", "deregister_serializer", "disable_log_once_globally",
           "enable_periodic_logging", "get_current_placement_group", "get_node_ip_address", "get_placement_group",
           "inspect_serializability", "list_named_actors", "log_once", "map_unordered", "placement_group",
           "placement_group_table", "register_serializer", "remove_placement_group"]
