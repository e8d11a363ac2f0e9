"""``ember job submit/status/logs/stop/list/delete``: the jobs API from the command line.

``submit`` follows the job's logs by default and exits with its outcome (0 when it SUCCEEDED,
1 otherwise); ``--no-wait`` returns once the job is accepted.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from typing import Any, Optional

import click

_address_option = click.option("--address", default=None, envvar="EMBER_JOB_SERVER_ADDRESS",
                                help="Job server URL (default: the local head's, else http://127.0.0.1:8265).")


def _client(address: Optional[str]) -> Any:
    from ember.job_submission import JobSubmissionClient
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


def _json_option(value: Optional[str], what: str) -> Optional[dict]:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"{what} must be a JSON object")
    return parsed


def _yaml_file(path: Optional[str]) -> Optional[dict]:
    if path is None:
        return None
    import yaml
    try:
        with open(path) as f:
            parsed = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"--runtime-env {path}: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"--runtime-env {path} must hold a mapping")
    return parsed


def _follow(client: Any, job_id: str) -> None:
    async def run() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        click.echo(f"\nStopped following; job '{job_id}' goes on (ember job stop {job_id} stops it).", err=True)
        raise click.exceptions.Exit(130) from None


def _finish(client: Any, job_id: str) -> None:
    """Print the job's final state and exit with it (waits briefly for the status to settle)."""
    for _ in range(100):
        info = client.get_job_info(job_id)
        if info.status.is_terminal():
            break
        time.sleep(0.1)
    click.echo(f"------------------------------------------\nJob '{job_id}' {info.status.value.lower()}")
    if info.status.value != "SUCCEEDED":
        if info.message and info.status.value == "FAILED" and "Last available logs" not in info.message:
            click.echo(info.message, err=True)
        raise click.exceptions.Exit(1)


@click.group("job")
def job() -> None:
    """Submit, inspect and stop jobs on a cluster's job server."""


@job.command("submit", context_settings={"ignore_unknown_options": True})
@_address_option
@click.option("--working-dir", default=None, help="Local directory (or .zip) uploaded as the job's working dir.")
@click.option("--runtime-env", "runtime_env_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="runtime_env from a YAML (or JSON) file.")
@click.option("--runtime-env-json", default=None, help="runtime_env as a JSON object (wins over --runtime-env).")
@click.option("--submission-id", "--job-id", "submission_id", default=None, help="Id for the job (default: generated).")
@click.option("--metadata-json", default=None, help="Metadata (string to string) as a JSON object.")
@click.option("--entrypoint-num-cpus", type=float, default=None)
@click.option("--entrypoint-num-gpus", type=float, default=None)
@click.option("--entrypoint-memory", type=int, default=None)
@click.option("--entrypoint-resources", default=None, help="Custom resources for the entrypoint, JSON.")
@click.option("--no-wait", is_flag=True, help="Return once the job is submitted; do not follow its logs.")
@click.argument("entrypoint", nargs=-1, required=True, type=click.UNPROCESSED)
def submit(address: Optional[str], working_dir: Optional[str], runtime_env_file: Optional[str],
           runtime_env_json: Optional[str],
           submission_id: Optional[str], metadata_json: Optional[str], entrypoint_num_cpus: Optional[float],
           entrypoint_num_gpus: Optional[float], entrypoint_memory: Optional[int],
           entrypoint_resources: Optional[str], no_wait: bool, entrypoint: tuple[str, ...]) -> None:
    """Submit ENTRYPOINT (after --) as a job: ember job submit -- python script.py"""
    runtime_env = _json_option(runtime_env_json, "--runtime-env-json") or _yaml_file(runtime_env_file) or {}
    if working_dir:
        runtime_env["working_dir"] = working_dir
    client = _client(address)
    command = entrypoint[0] if len(entrypoint) == 1 else shlex.join(entrypoint)
    try:
        job_id = client.submit_job(entrypoint=command, runtime_env=runtime_env, submission_id=submission_id,
                                   metadata=_json_option(metadata_json, "--metadata-json"),
                                   entrypoint_num_cpus=entrypoint_num_cpus, entrypoint_num_gpus=entrypoint_num_gpus,
                                   entrypoint_memory=entrypoint_memory,
                                   entrypoint_resources=_json_option(entrypoint_resources, "--entrypoint-resources"))
    except (RuntimeError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Job '{job_id}' submitted successfully")
    if no_wait:
        click.echo(f"Query the logs of the job:\n  ember job logs {job_id}\n"
                   f"Query the status of the job:\n  ember job status {job_id}\n"
                   f"Request the job to be stopped:\n  ember job stop {job_id}")
        return
    click.echo("Tailing logs until the job exits (disable with --no-wait):")
    _follow(client, job_id)
    _finish(client, job_id)


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


@job.command("status")
@_address_option
@click.argument("job_id")
def status(address: Optional[str], job_id: str) -> None:
    """Print a job's status (and its message)."""
    info = _call(_client(address).get_job_info, job_id)
    click.echo(f"Status for job '{job_id}': {info.status.value}")
    if info.message:
        click.echo(f"Status message: {info.message}")


@job.command("logs")
@_address_option
@click.option("-f", "--follow", is_flag=True, help="Follow the logs until the job ends.")
@click.argument("job_id")
def logs(address: Optional[str], follow: bool, job_id: str) -> None:
    """Print a job's output so far (or follow it)."""
    client = _client(address)
    if follow:
        _call(client.get_job_info, job_id)
        _follow(client, job_id)
    else:
        click.echo(_call(client.get_job_logs, job_id), nl=False)


@job.command("stop")
@_address_option
@click.option("--no-wait", is_flag=True, help="Do not wait for the job to be stopped.")
@click.argument("job_id")
def stop(address: Optional[str], no_wait: bool, job_id: str) -> None:
    """Stop a job (SIGTERM to its process tree, SIGKILL after a grace period)."""
    client = _client(address)
    stopped = _call(client.stop_job, job_id)
    if not stopped:
        click.echo(f"Job '{job_id}' was not running ({_call(client.get_job_status, job_id).value})")
        return
    click.echo(f"Attempting to stop job '{job_id}'")
    if no_wait:
        return
    for _ in range(300):
        if _call(client.get_job_status, job_id).is_terminal():
            break
        time.sleep(0.1)
    click.echo(f"Job '{job_id}' was stopped")


@job.command("list")
@_address_option
def list_(address: Optional[str]) -> None:
    """List every job the server knows."""
    for info in _call(_client(address).list_jobs):
        click.echo(f"{info.submission_id}  {info.status.value:<9}  {info.entrypoint}")


@job.command("delete")
@_address_option
@click.argument("job_id")
def delete(address: Optional[str], job_id: str) -> None:
    """Delete a finished job's record and logs."""
    _call(_client(address).delete_job, job_id)
    click.echo(f"Job '{job_id}' deleted successfully")
