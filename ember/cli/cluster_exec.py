"""`ember exec`, `ember attach`, `ember submit`: run something on a cluster's head, given its cluster config.

As Ray's: with the `ssh` provider they go to the head machine over SSH (cluster_ssh.py); with `local` the
head is this machine, so the command runs here with EMBER_ADDRESS pointing at that cluster's head.
"""
from __future__ import annotations

import os
import subprocess
import sys

import click

from ember.cli.up import load, local_session_dirs
from ember.shells.wire import session


def _local_address(config) -> str:
    for d in reversed(local_session_dirs(config.cluster_name)):
        for entry in session.read_pids(d):
            if entry.get("role") == "control_store" and entry.get("address"):
                return str(entry["address"])
    raise click.ClickException(f"cluster {config.cluster_name!r} is not running here (start it with `ember up`)")


def _local_env(config) -> dict:
    return {**os.environ, "EMBER_ADDRESS": _local_address(config)}


@click.command("exec")
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.argument("command")
def exec_cmd(config_file: str, command: str) -> None:
    """Run COMMAND (a shell command line) on the cluster's head; exits with its status."""
    config = load(config_file)
    if config.provider["type"] == "ssh":
        from ember.cli.cluster_ssh import exec_ssh
        sys.exit(exec_ssh(config, command))
    sys.exit(subprocess.call(command, shell=True, env=_local_env(config)))


@click.command("attach")
@click.argument("config_file", type=click.Path(dir_okay=False))
def attach(config_file: str) -> None:
    """Open an interactive shell on the cluster's head."""
    config = load(config_file)
    if config.provider["type"] == "ssh":
        from ember.cli.cluster_ssh import attach_ssh
        attach_ssh(config)
        return
    shell = os.environ.get("SHELL", "/bin/sh")
    os.execvpe(shell, [shell], _local_env(config))


@click.command("submit", context_settings={"ignore_unknown_options": True})
@click.argument("config_file", type=click.Path(dir_okay=False))
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def submit(config_file: str, script: str, script_args: tuple) -> None:
    """Copy SCRIPT to the cluster's head and run it there with python (EMBER_ADDRESS=auto)."""
    config = load(config_file)
    if config.provider["type"] == "ssh":
        from ember.cli.cluster_ssh import submit_ssh
        sys.exit(submit_ssh(config, script, script_args))
    sys.exit(subprocess.call([sys.executable, script, *script_args], env=_local_env(config)))
