"""`ember up/down/exec/attach/submit` for a cluster whose machines are reached over SSH (provider `ssh`).

`up` copies the config (and the SSH key the head needs to reach the workers) to the head machine, runs
``setup_commands``, ``head_setup_commands`` and ``head_start_ember_commands`` there; the default start
command is ``ember start --head --autoscaling-config=...``, so the autoscaler runs on the head and launches
the workers over SSH itself (providers/ssh.py). `down` runs ``ember stop`` (``*_stop_ember_commands``) on
every worker address and then on the head.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from typing import Callable, Sequence

import click
import yaml

from ember.shells.autoscaler.command_runner import RemoteCommandError, SSHCommandRunner, write_remote_file

BOOTSTRAP_DIR = "${EMBER_TMPDIR:-$HOME}/ember-bootstrap"
DEFAULT_HEAD_START = ["ember stop",
                      "ember start --head --port=6379 --node-ip-address=$EMBER_HEAD_IP "
                      "--autoscaling-config=$EMBER_BOOTSTRAP_CONFIG"]
DEFAULT_STOP = ["ember stop"]


def runner_for(config) -> SSHCommandRunner:
    return SSHCommandRunner.from_config(config.auth, config.provider)


def _env(config, extra: dict | None = None) -> dict:
    head_ip = config.provider["head_ip"]
    return {"EMBER_HEAD_IP": head_ip, "EMBER_HEAD_ADDRESS": f"{head_ip}:6379", **(extra or {})}


def _bootstrap_config(config, config_path: str, key_path_on_head: str | None) -> bytes:
    with open(config_path) as f:
        doc = yaml.safe_load(f)
    if key_path_on_head:
        doc.setdefault("auth", {})["ssh_private_key"] = key_path_on_head
    return yaml.safe_dump(doc, sort_keys=False).encode()


def up_ssh(config, config_path: str, echo: Callable[[str], None] = click.echo) -> None:
    runner, head = runner_for(config), config.provider["head_ip"]
    where = f"{BOOTSTRAP_DIR}/{config.cluster_name}"
    head_type = config.node_type(config.head_node_type)
    try:
        echo(f"[1/3] Copying the cluster config to the head {head}")
        key_on_head = None
        if runner.private_key:
            with open(runner.private_key, "rb") as f:
                key_on_head = write_remote_file(runner, head, f"{where}/ssh_key", f.read())
        path = write_remote_file(runner, head, f"{where}/cluster.yaml",
                                 _bootstrap_config(config, config_path, key_on_head))
        c = config.commands
        echo(f"[2/3] Running {len(c['setup_commands']) + len(c['head_setup_commands'])} setup command(s) on the head")
        runner.run(head, c["setup_commands"] + c["head_setup_commands"], env=_env(config), timeout_s=1800)
        echo("[3/3] Starting ember on the head (the autoscaler launches the workers)")
        done = runner.run(head, c["head_start_ember_commands"] or DEFAULT_HEAD_START,
                          env=_env(config, {"EMBER_BOOTSTRAP_CONFIG": path, "EMBER_NODE_IP": head,
                                            "EMBER_NODE_TYPE": config.head_node_type,
                                            "EMBER_OVERRIDE_RESOURCES": json.dumps(head_type.resources)}),
                          timeout_s=600)
    except (RemoteCommandError, OSError) as exc:
        raise click.ClickException(f"ember up {config.cluster_name!r} failed: {exc}") from None
    tail = done.stdout.decode(errors="replace").strip().splitlines()[-3:]
    for line in tail:
        echo(f"  (head) {line}")
    echo(f"Cluster {config.cluster_name!r} is up: head at {head}:6379.")
    echo(f"  Run a command there: ember exec {config_path} 'ember status'")


def down_ssh(config, echo: Callable[[str], None] = click.echo) -> None:
    runner, head = runner_for(config), config.provider["head_ip"]
    c, failures = config.commands, []
    # the head's autoscaler first, so that it launches nothing while the workers stop
    for host, commands in ([(head, ["ember stop"] if not c["head_stop_ember_commands"] else c["head_stop_ember_commands"])]
                           + [(ip, c["worker_stop_ember_commands"] or DEFAULT_STOP)
                              for ip in config.provider.get("worker_ips", [])]):
        try:
            runner.run(host, commands, env=_env(config), timeout_s=120)
            echo(f"  stopped ember on {host}")
        except RemoteCommandError as exc:
            failures.append(str(exc))
    if failures:
        raise click.ClickException("ember down left machines it could not reach:\n" + "\n".join(failures))
    echo(f"Cluster {config.cluster_name!r}: stopped on {1 + len(config.provider.get('worker_ips', []))} machine(s).")


def exec_ssh(config, command: str) -> int:
    runner, head = runner_for(config), config.provider["head_ip"]
    argv = runner.ssh_argv(head) + [
        "\n".join([f"export {k}={shlex.quote(v)}" for k, v in _env(config).items()] + [command])]
    return subprocess.call(argv)


def attach_ssh(config) -> None:
    runner = runner_for(config)
    argv = runner.ssh_argv(config.provider["head_ip"], tty=True)
    os.execvp(argv[0], argv)


def submit_ssh(config, script: str, args: Sequence[str]) -> int:
    runner, head = runner_for(config), config.provider["head_ip"]
    with open(script, "rb") as f:
        remote = write_remote_file(runner, head, f"{BOOTSTRAP_DIR}/{config.cluster_name}/{os.path.basename(script)}",
                                   f.read(), mode="644")
    # the head's `python`, or $EMBER_PYTHON there when its environment names another interpreter
    line = " ".join(['"${EMBER_PYTHON:-python}"', shlex.quote(remote), *map(shlex.quote, args)])
    return exec_ssh(config, f"export EMBER_ADDRESS=auto\n{line}")
