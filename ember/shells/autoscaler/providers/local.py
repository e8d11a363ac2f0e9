"""The `local` provider: each node is a node daemon process group on this machine with its own resources.

Its nodes are listed in <session>/autoscaler_nodes.json (pid, tags, address), so `ember down` and a
restarted autoscaler find them again.  Network namespaces per node are not used (yet).
"""
from __future__ import annotations

import os
import signal

import psutil

from ember.shells.shared import local_cluster, processes
from ember.shells.wire import session

from .base import NodeProvider, ProviderNode, StateFile


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie child counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class LocalNodeProvider(NodeProvider):
    def __init__(self, provider_config: dict, *, gcs_address: str, session_dir: str, host: str = "127.0.0.1",
                 **_: object) -> None:
        super().__init__(provider_config)
        self.gcs_address, self.session_dir, self.host = gcs_address, session_dir, host
        self.state = StateFile(os.path.join(session_dir, "autoscaler_nodes.json"))


    def create_node(self, node_type: str, resources: dict, node_config: dict, tags: dict) -> ProviderNode:
        res = dict(resources)
        args = local_cluster.node_args(num_cpus=res.pop("CPU", 0), num_gpus=res.pop("GPU", 0) or None,
                                       resources=res or None, object_store_memory=node_config.get("object_store_memory"))
        proc, log_path = local_cluster.launch_node(self.gcs_address, self.session_dir,
                                                   session.token_path(self.session_dir), host=self.host,
                                                   is_head=False, tied_to_parent=False, extra=args)
        with self.state.lock:
            nodes = self.state.read()
            nodes[str(proc.pid)] = {"tags": dict(tags), "address": ""}
            self.state.write(nodes)
        try:    # recorded like `ember start`'s daemons, so `ember stop` / `ember down` stop it too
            session.record_pid(self.session_dir, pid=proc.pid, create_time=psutil.Process(proc.pid).create_time(),
                               role="autoscaled_node", address="")
        except psutil.NoSuchProcess:
            pass
        port = processes.wait_ready(proc, "ember.shells.node.node_daemon", log_path)
        if proc.stdout is not None:
            proc.stdout.close()
        address = f"{self.host}:{port}"
        with self.state.lock:
            nodes = self.state.read()
            nodes[str(proc.pid)] = {"tags": dict(tags), "address": address}
            self.state.write(nodes)
        return ProviderNode(str(proc.pid), dict(tags), address)

    def terminate_node(self, provider_id: str) -> None:
        pid = int(provider_id)
        try:
            os.killpg(pid, signal.SIGTERM)     # launched with setsid: the node daemon leads its group
        except ProcessLookupError:
            pass
        with self.state.lock:
            nodes = self.state.read()
            nodes.pop(provider_id, None)
            self.state.write(nodes)

    def non_terminated_nodes(self, tag_filters: dict) -> list[ProviderNode]:
        with self.state.lock:
            nodes = self.state.read()
            gone = [pid for pid in nodes if not _alive(int(pid))]
            for pid in gone:
                nodes.pop(pid)
            if gone:
                self.state.write(nodes)
        return [ProviderNode(pid, n["tags"], n["address"]) for pid, n in sorted(nodes.items())
                if all(n["tags"].get(k) == v for k, v in tag_filters.items())]
