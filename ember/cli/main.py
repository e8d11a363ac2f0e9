"""The ``ember`` command: ``ember start / stop / status`` and the commands other modules add.

Every command lives in its own module and is imported only when it is run (or listed by
``--help``), so a missing or broken module costs its own command and nothing else.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Optional

import click

# command name -> (module, attribute of the click command in it)
COMMANDS: dict[str, tuple[str, str]] = {
    "start": ("ember.cli.start", "start"),
    "stop": ("ember.cli.stop", "stop"),
    "status": ("ember.cli.status", "status"),
    "microbenchmark": ("ember.cli.microbenchmark", "microbenchmark"),
    "memory": ("ember.cli.memory", "memory"),
    "list": ("ember.cli.state", "list_cmd"),
    "get": ("ember.cli.state", "get_cmd"),
    "summary": ("ember.cli.state", "summary_cmd"),
    "timeline": ("ember.cli.timeline", "timeline"),
    "logs": ("ember.cli.logs", "logs"),
    "job": ("ember.cli.job", "job"),
    "up": ("ember.cli.up", "up"),
    "down": ("ember.cli.up", "down"),
    "exec": ("ember.cli.cluster_exec", "exec_cmd"),
    "attach": ("ember.cli.cluster_exec", "attach"),
    "submit": ("ember.cli.cluster_exec", "submit"),
}
_REQUIRED = {"start", "stop", "status"}


class LazyGroup(click.Group):
    """A click group that imports each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx)) | set(COMMANDS)
        return sorted(n for n in names if n in _REQUIRED or self.get_command(ctx, n) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in COMMANDS:
            return command
        module_name, attr = COMMANDS[cmd_name]
        try:
            command = getattr(importlib.import_module(module_name), attr)
        except Exception as exc:  # a broken optional command must not break the CLI
            if cmd_name in _REQUIRED:
                raise
            if not isinstance(exc, ModuleNotFoundError) or exc.name != module_name:
                warnings.warn(f"ember: command {cmd_name!r} is unavailable: {exc!r}", stacklevel=1)
            return None
        if not isinstance(command, click.Command):
            return None
        self.add_command(command, cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> object:
        from ember.shells.wire.session import UnsafeSessionRoot
        try:
            return super().invoke(ctx)
        except UnsafeSessionRoot as exc:  # a session root another user could control: say so, no traceback
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """ember: start, inspect and stop ember clusters (Ray Core's architecture and API)."""


def main() -> None:
    cli(prog_name="ember")


if __name__ == "__main__":
    main()
