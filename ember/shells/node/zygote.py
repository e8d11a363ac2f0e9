"""The zygote: a warm Python process that forks workers in milliseconds.

The node daemon starts it with pipes on stdin/stdout and speaks JSON lines:
  in:  {"op": "fork", "worker_id": hex, "log_base": path, "args": {...}, "env": {...}}
  out: {"op": "forked", "worker_id": hex, "pid": N}
       {"op": "exited", "pid": N, "status": N}
The zygote has no threads (fork safety).  When its stdin closes (the daemon died or
stopped) it kills every worker it forked and exits.  Workers die with the zygote too.
"""
from __future__ import annotations

import json
import os
import select
import signal
import sys


def _preload() -> None:
    """Import everything a worker may need, so that forked children start warm (an import
    after the fork costs every worker the same CPU again)."""
    import importlib
    import pkgutil

    import ember
    import ember.shells.shared
    import ember.shells.wire
    import ember.shells.worker
    import ember.shells.worker.worker_main  # noqa: F401
    # ember's own modules (the public layer) and, recursively, the shell packages a worker runs:
    # worker/, wire/, shared/ (not control/ or node/: daemon code).  The shells were moved into
    # packages by process; a scan of ember.shells alone then found only packages, and every
    # forked worker imported its modules itself: actor creation fell from ~115 to ~35 actors/s.
    names = [f"ember.{info.name}" for info in pkgutil.iter_modules(ember.__path__) if not info.ispkg]
    for pkg in (ember.shells.worker, ember.shells.wire, ember.shells.shared):
        names += [info.name for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
    for name in names:
        if name.endswith(("zygote", "node_daemon", "control_store", "__main__", "job_server")):
            continue
        try:
            importlib.import_module(name)
        except Exception:  # an optional part that fails to import must not stop workers
            pass
    # Heavy libraries the user's tasks import (e.g. EMBER_ZYGOTE_PRELOAD=numpy,pandas) are
    # imported once here and shared copy-on-write by every worker.
    for name in filter(None, os.environ.get("EMBER_ZYGOTE_PRELOAD", "").split(",")):
        try:
            importlib.import_module(name.strip())
        except Exception as exc:
            print(f"zygote: could not preload {name!r}: {exc}", file=sys.stderr)


def _child(cmd: dict, close_fds: list[int]) -> None:
    from ember.shells.shared import processes
    from ember.shells.worker import worker_main
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for fd in close_fds:
            os.close(fd)
        processes.die_with_parent(signal.SIGKILL)
        os.setpgid(0, 0)
        base = cmd["log_base"]
        out = os.open(base + ".out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        err = os.open(base + ".err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (null, out, err):
            os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.update(cmd.get("env") or {})
        if cmd.get("runtime_env"):
            from ember.shells.shared.runtime_env import setup
            setup.apply_in_child(cmd["runtime_env"])
        code = worker_main.run(cmd["args"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main() -> None:
    _preload()
    # Move everything imported so far out of the collector's sight: children never touch
    # (and so never copy) those pages when they collect garbage.
    import gc
    gc.collect()
    gc.freeze()
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    out = os.fdopen(os.dup(out_fd), "w", buffering=1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)  # the daemon ends us by closing stdin
    children: set[int] = set()
    buf = b""
    out.write(json.dumps({"op": "ready", "pid": os.getpid()}) + "\n")
    while True:
        try:
            ready, _, _ = select.select([in_fd, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            out.write(json.dumps({"op": "exited", "pid": pid, "status": os.waitstatus_to_exitcode(status)}) + "\n")
        if in_fd not in ready:
            continue
        data = os.read(in_fd, 65536)
        if not data:
            break
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            cmd = json.loads(line)
            if cmd.get("op") != "fork":
                continue
            pid = os.fork()
            if pid == 0:
                _child(cmd, [wake_r, wake_w, out.fileno()])
            children.add(pid)
            out.write(json.dumps({"op": "forked", "worker_id": cmd["worker_id"], "pid": pid}) + "\n")
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


if __name__ == "__main__":
    main()
