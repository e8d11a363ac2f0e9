"""Finding the processes a runtime started, and their memory (PSS).

A cluster's processes are: the descendants of the driver, plus processes whose command
line mentions the runtime's session name (daemons that detached from the driver), plus
processes that inherited ``TAG_ENV`` from the driver's environment (a marker the
``idle_footprint`` row sets before ``init``, so that detached processes are found even
when the runtime exposes no session name). The driver itself is not counted.

PSS (proportional set size) divides each shared page among the processes that map it,
so summing it over processes does not count shared libraries or shared memory twice.
"""

from __future__ import annotations

from typing import Any, Iterable

TAG_ENV = "EMBER_BENCH_FOOTPRINT_TAG"
MIB = 1024 * 1024


def session_markers(rt: Any) -> list[str]:
    """Strings that appear in the command lines of the runtime's daemons, if known."""
    markers: list[str] = []
    # Ray keeps its node object here; its daemons get --session-name / session dirs.
    private = getattr(rt, "_private", None)
    node = getattr(getattr(private, "worker", None), "_global_node", None)
    for attr in ("session_name",):
        value = getattr(node, attr, None)
        if isinstance(value, str) and value:
            markers.append(value)
    # ember: the runtime context may expose the session name (optional).
    try:
        context = rt.get_runtime_context()
    except Exception:
        context = None
    getter = getattr(context, "get_session_name", None)
    if callable(getter):
        try:
            value = getter()
        except Exception:
            value = None
        if isinstance(value, str) and value and value not in markers:
            markers.append(value)
    return markers


def cluster_processes(driver_pid: int, markers: Iterable[str], tag: str | None) -> list[Any]:
    """psutil.Process objects for every process the cluster started, driver excluded."""
    import psutil

    found: dict[int, Any] = {}
    try:
        for child in psutil.Process(driver_pid).children(recursive=True):
            found[child.pid] = child
    except psutil.NoSuchProcess:
        pass
    marker_list = [m for m in markers if m]
    for proc in psutil.process_iter():
        if proc.pid == driver_pid or proc.pid in found:
            continue
        if _mentions(proc, marker_list) or (tag is not None and _has_tag(proc, tag)):
            found[proc.pid] = proc
    found.pop(driver_pid, None)
    return [found[pid] for pid in sorted(found)]


def _mentions(proc: Any, markers: list[str]) -> bool:
    if not markers:
        return False
    import psutil

    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(m in cmdline for m in markers)


def _has_tag(proc: Any, tag: str) -> bool:
    import psutil

    try:
        return bool(proc.environ().get(TAG_ENV) == tag)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False


def pss_bytes(processes: Iterable[Any]) -> int:
    """Summed PSS of the processes that still exist."""
    import psutil

    total = 0
    for proc in processes:
        try:
            total += int(proc.memory_full_info().pss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


def rss_bytes(processes: Iterable[Any]) -> int:
    """Summed RSS (cheap to read; used to see when start-up has settled)."""
    import psutil

    total = 0
    for proc in processes:
        try:
            total += int(proc.memory_info().rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


def pids_pss_bytes(pids: Iterable[int]) -> int:
    """Summed PSS of the given process ids."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    return pss_bytes(procs)


def kill_tree(pid: int, wait_s: float = 10.0) -> None:
    """Kill process ``pid`` and every process it started (a timed-out benchmark child
    and its runtime's daemons), then wait for them to go."""
    import psutil

    try:
        parent = psutil.Process(pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(tree, timeout=wait_s)
