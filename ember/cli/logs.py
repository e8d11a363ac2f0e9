"""``ember logs``: list and print the log files of a cluster's nodes (Ray's ``ray logs``).

``ember logs [GLOB]`` (= ``ember logs cluster [GLOB]``) lists the files of a node (the head by
default) whose names match, or prints the file when exactly one matches; ``ember logs actor
--id``, ``ember logs task --id`` and ``ember logs worker --pid`` print a worker's output
(``--err``: its stderr).  ``--follow`` keeps printing what is appended until interrupted.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import click

from ember.util.state import get_log, list_logs


class _DefaultCluster(click.Group):
    """``ember logs X`` means ``ember logs cluster X`` unless X is a subcommand (Ray's behaviour)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["cluster", *args]
        return super().parse_args(ctx, args)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
            click.option("--address", default=None, help="HOST:PORT of the control store (default: the local cluster)."),
            click.option("-f", "--follow", is_flag=True, help="Keep printing lines as they are appended."),
            click.option("-t", "--tail", default=1000, show_default=True, help="Print the last N lines (-1: all)."),
            click.option("--interval", default=0.5, show_default=True, help="Seconds between reads with --follow."),
            click.option("--timeout", default=30, show_default=True, help="Seconds to wait for an answer.")]):
        fn = option(fn)
    return fn


def _print(lines: Any) -> None:
    try:
        for line in lines:
            click.echo(line)
    except KeyboardInterrupt:
        pass
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise click.ClickException(f"could not reach the ember cluster: {exc}") from None
    except Exception as exc:   # an error the node daemon sent back (rpc.RpcError): its message says it
        raise click.ClickException(str(getattr(exc, "message", exc))) from None


@click.group("logs", cls=_DefaultCluster)
def logs() -> None:
    """Print or list log files of the cluster (Ray's `ray logs`)."""


@logs.command("cluster")
@click.argument("glob_filter", required=False, default="*")
@click.option("--node-id", default=None, help="The node (default: the head node).")
@click.option("--node-ip", default=None, help="The node, by its IP address.")
@_common
def cluster(glob_filter: str, node_id: Optional[str], node_ip: Optional[str], address: Optional[str], follow: bool,
            tail: int, interval: float, timeout: int) -> None:
    """List the files matching GLOB_FILTER, or print the one file that matches."""
    try:
        found = list_logs(address=address, node_id=node_id, node_ip=node_ip, glob_filter=glob_filter, timeout=timeout)
    except (ValueError, ConnectionError, OSError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from None
    names = [n for files in found.values() for n in files]
    if len(names) == 1 and glob_filter != "*":
        _print(get_log(address=address, node_id=node_id, node_ip=node_ip, filename=names[0], follow=follow,
                       tail=tail, timeout=timeout, _interval=interval))
        return
    if not names:
        raise click.ClickException(f"no log file matches {glob_filter!r}")
    for category in sorted(found):
        click.echo(f"{category}:")
        for name in found[category]:
            click.echo(f"  {name}")


def _worker_command(name: str, id_help: str, kwarg: str) -> None:
    @logs.command(name, help=f"Print the output of the worker of {'an actor' if name == 'actor' else 'a ' + name} (stdout; --err: stderr).")
    @click.option("--id", "ident", required=name != "worker", default=None, help=id_help)
    @click.option("--pid", default=None, type=int, help="A worker's process id (with --node-id/--node-ip).")
    @click.option("--node-id", default=None)
    @click.option("--node-ip", default=None)
    @click.option("--err", is_flag=True, help="Print the worker's stderr instead of its stdout.")
    @_common
    def command(ident: Optional[str], pid: Optional[int], node_id: Optional[str], node_ip: Optional[str], err: bool,
                address: Optional[str], follow: bool, tail: int, interval: float, timeout: int) -> None:
        target = {"pid": pid} if name == "worker" else {kwarg: ident}
        if name == "worker" and pid is None:
            raise click.UsageError("ember logs worker needs --pid")
        _print(get_log(address=address, node_id=node_id, node_ip=node_ip, follow=follow, tail=tail, timeout=timeout,
                       suffix="err" if err else "out", _interval=interval, **target))


_worker_command("actor", "The actor's id (hex).", "actor_id")
_worker_command("task", "The task's id (hex).", "task_id")
_worker_command("worker", "unused", "pid")
