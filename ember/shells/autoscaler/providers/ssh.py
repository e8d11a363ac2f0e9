"""The `ssh` provider: a fixed list of machines reached over SSH (Ray's on-premises provider).

``provider: {type: ssh, head_ip: H, worker_ips: [A, B, ...], ssh_port: 22}`` with
``auth: {ssh_user: U, ssh_private_key: KEY}``. Launching a node takes a free address from ``worker_ips``
and runs the config's ``setup_commands``, ``worker_setup_commands`` and ``worker_start_ember_commands``
there in one shell, with EMBER_HEAD_ADDRESS, EMBER_HEAD_IP, EMBER_NODE_IP, EMBER_NODE_TYPE and
EMBER_OVERRIDE_RESOURCES (the node type's resources as JSON, which ``ember start`` obeys) exported and
EMBER_CLUSTER_TOKEN passed on stdin. Terminating runs ``ember stop`` there (``worker_stop_ember_commands``
to change it). Which address runs which node is kept in <session>/autoscaler_nodes.json.
"""
from __future__ import annotations

import json
import logging
import os

from ember.shells.autoscaler.command_runner import RemoteCommandError, SSHCommandRunner
from ember.shells.wire import session

from .base import NodeProvider, ProviderNode, StateFile

log = logging.getLogger("ember.autoscaler")
DEFAULT_WORKER_START = ["ember stop", "ember start --address=$EMBER_HEAD_ADDRESS --node-ip-address=$EMBER_NODE_IP"]
DEFAULT_STOP = ["ember stop"]


class SSHNodeProvider(NodeProvider):
    def __init__(self, provider_config: dict, *, gcs_address: str, session_dir: str, cluster_config=None,
                 **_: object) -> None:
        super().__init__(provider_config)
        self.gcs_address, self.session_dir = gcs_address, session_dir
        self.worker_ips = list(provider_config.get("worker_ips", []))
        auth = cluster_config.auth if cluster_config is not None else {}
        self.commands = cluster_config.commands if cluster_config is not None else {}
        self.runner = SSHCommandRunner.from_config(auth, provider_config)
        self.state = StateFile(os.path.join(session_dir, "autoscaler_nodes.json"))


    def _claim(self, tags: dict) -> str:
        with self.state.lock:
            nodes = self.state.read()
            free = [ip for ip in self.worker_ips if ip not in nodes]
            if not free:
                raise RuntimeError(f"every machine in provider.worker_ips is in use ({len(self.worker_ips)})")
            nodes[free[0]] = {"tags": dict(tags), "address": ""}
            self.state.write(nodes)
            return free[0]

    def create_node(self, node_type: str, resources: dict, node_config: dict, tags: dict) -> ProviderNode:
        ip = self._claim(tags)
        head_ip = self.gcs_address.rpartition(":")[0]
        env = {"EMBER_HEAD_ADDRESS": self.gcs_address, "EMBER_HEAD_IP": head_ip, "EMBER_NODE_IP": ip,
               "EMBER_NODE_TYPE": node_type, "EMBER_OVERRIDE_RESOURCES": json.dumps(resources)}
        commands = (self.commands.get("setup_commands", []) + self.commands.get("worker_setup_commands", [])
                    + (self.commands.get("worker_start_ember_commands") or DEFAULT_WORKER_START))
        token = session.read_token(session.token_path(self.session_dir)).decode()
        try:
            self.runner.run(ip, commands, env=env, secret_env={"EMBER_CLUSTER_TOKEN": token}, timeout_s=600)
        except RemoteCommandError:
            with self.state.lock:
                nodes = self.state.read()
                nodes.pop(ip, None)
                self.state.write(nodes)
            raise
        with self.state.lock:
            nodes = self.state.read()
            if ip in nodes:
                nodes[ip]["address"] = ip
                self.state.write(nodes)
        return ProviderNode(ip, dict(tags), ip)

    def terminate_node(self, provider_id: str) -> None:
        commands = self.commands.get("worker_stop_ember_commands") or DEFAULT_STOP
        try:
            self.runner.run(provider_id, commands, timeout_s=120)
        except RemoteCommandError as exc:
            log.warning("stopping the node on %s failed: %s", provider_id, exc)
        with self.state.lock:
            nodes = self.state.read()
            nodes.pop(provider_id, None)
            self.state.write(nodes)

    def non_terminated_nodes(self, tag_filters: dict) -> list[ProviderNode]:
        with self.state.lock:
            nodes = self.state.read()
        return [ProviderNode(ip, n["tags"], n["address"]) for ip, n in sorted(nodes.items())
                if all(n["tags"].get(k) == v for k, v in tag_filters.items())]
