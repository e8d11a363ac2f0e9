"""The one interface between the autoscaler and whatever makes machines."""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

TAG_NODE_TYPE = "ember-node-type"
TAG_CLUSTER = "ember-cluster-name"


@dataclass
class ProviderNode:
    provider_id: str                 # the provider's name for the node (pid, instance id, host)
    tags: dict = field(default_factory=dict)
    address: str = ""                # the node daemon's rpc address once it is up ("" while starting)


class NodeProvider:
    """create_node blocks until the node's daemon has started (run it in a thread); the rest are quick."""

    def __init__(self, provider_config: dict, **kwargs) -> None:
        self.provider_config = provider_config

    def create_node(self, node_type: str, resources: dict, node_config: dict, tags: dict) -> ProviderNode:
        raise NotImplementedError

    def terminate_node(self, provider_id: str) -> None:
        raise NotImplementedError

    def non_terminated_nodes(self, tag_filters: dict) -> list[ProviderNode]:
        raise NotImplementedError


class StateFile:
    """A provider's nodes in a JSON file (<session>/autoscaler_nodes.json), so that `ember down` and a
    restarted autoscaler find them again; ``lock`` guards read-modify-write from the launch threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def read(self) -> dict:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def write(self, nodes: dict) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(nodes, f)
        os.replace(tmp, self.path)
