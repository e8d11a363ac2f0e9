"""``ember stop``: stop the daemons ``ember start`` started on this machine, and only those.

The pids come from the ``pids`` files of the session directories. A pid is stopped only if
the process still has the recorded start time and its command line runs an ``ember.shells``
module (so a reused pid is never killed). Node daemons get SIGTERM first (they close their
zygote, which kills the workers), then control stores; whatever is left after the grace
period, descendants included, gets SIGKILL.
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Iterable

import click
import psutil

from ember.shells.wire import session

_CREATE_TIME_SLACK_S = 0.5
_KILL_WAIT_S = 3.0
_POLL_S = 0.02


@dataclass(frozen=True)
class StartedProcess:
    proc: psutil.Process
    role: str
    session_dir: str


def looks_like_ember(proc: psutil.Process) -> bool:
    """Whether the process runs one of ember's daemons, zygotes or workers."""
    try:
        return any("ember.shells" in part or part == "ember.job_server" for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def find_started(session_dirs: Iterable[str]) -> list[StartedProcess]:
    """The recorded daemons that are still running (same pid, same start time, ember cmdline)."""
    found: list[StartedProcess] = []
    for session_dir in session_dirs:
        for entry in session.read_pids(session_dir):
            try:
                proc = psutil.Process(entry["pid"])
                recorded = float(entry.get("create_time", 0.0))
                if abs(proc.create_time() - recorded) > _CREATE_TIME_SLACK_S:
                    continue
            except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError, ValueError):
                continue
            if looks_like_ember(proc) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(StartedProcess(proc, str(entry.get("role", "")), session_dir))
    return found


def _descendants(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out: list[psutil.Process] = []
    for proc in procs:
        try:
            out += [c for c in proc.children(recursive=True) if looks_like_ember(c)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process has exited; return those still alive at the deadline.

    A zombie counts as gone: the processes ``ember start`` left behind are reparented to
    init, which may reap them late.
    """
    deadline = time.monotonic() + timeout_s
    alive = _alive(procs)
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        alive = _alive(alive)
    return alive


def stop_started(started: list[StartedProcess], *, force: bool, grace_period_s: float) -> tuple[int, list[psutil.Process]]:
    """Stop ``started`` and their ember descendants; return (how many stopped, survivors)."""
    daemons = [s.proc for s in started]
    everyone = {p.pid: p for p in daemons + _descendants(daemons)}
    if force:
        _signal_all(everyone.values(), signal.SIGKILL)
    else:
        nodes = [s.proc for s in started if s.role != "control_store"]
        stores = [s.proc for s in started if s.role == "control_store"]
        for group in (nodes, stores):
            if not group:
                continue
            _signal_all(group, signal.SIGTERM)
            watched = group + _descendants(group)
            everyone.update({p.pid: p for p in watched})
            wait_gone(watched, grace_period_s)
    leftovers = _alive(everyone.values())
    leftovers += [p for p in _descendants(leftovers) if p.pid not in everyone]
    _signal_all(leftovers, signal.SIGKILL)
    survivors = wait_gone(leftovers, _KILL_WAIT_S)
    stopped = len(everyone) + len({p.pid for p in leftovers} - set(everyone)) - len(survivors)
    return stopped, survivors


@click.command("stop")
@click.option("--force", is_flag=True, help="Send SIGKILL at once instead of SIGTERM first.")
@click.option("--grace-period", "grace_period_s", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds to wait after SIGTERM before sending SIGKILL.")
def stop(force: bool, grace_period_s: float) -> None:
    """Stop the ember processes that `ember start` started on this machine."""
    dirs = session.session_dirs()
    started = find_started(dirs)
    stopped, survivors = stop_started(started, force=force, grace_period_s=grace_period_s)
    for session_dir in dirs:
        if session.read_pids(session_dir) and not find_started([session_dir]):
            session.remove_pids(session_dir)
            session.remove_cluster_record(session_dir)  # no longer advertised to address="auto"
    session.clear_current_cluster()
    if not started:
        click.echo("Did not find any active ember processes.")
    else:
        click.echo(f"Stopped {stopped} ember process{'es' if stopped != 1 else ''}.")
    if survivors:
        pids = ", ".join(str(p.pid) for p in survivors)
        raise click.ClickException(f"{len(survivors)} process(es) could not be stopped: {pids}")
