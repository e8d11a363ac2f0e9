"""The driver's side of ``ember.experimental.tqdm_ray``: worker log lines and progress bars together.

Bars updated in tasks and actors travel as magic-tagged JSON lines on the worker's stdout, so
through the same log stream as its prints (node daemon -> control store -> driver).  The driver
takes those lines out of the stream here and draws the bars on its stderr; the other lines are
printed with their ``(pid=..., node=...)`` prefix as before.

On a terminal the bars stay below the log lines: before log lines are printed the bars are
erased (cursor up, clear to the end of the screen), after them they are drawn again, so a log
line never lands in the middle of a bar.  Elsewhere (a pipe, a file, a test) each bar update
is one plain line (workers send at most one per ``flush_interval_s``), and a closed bar prints
its last state.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Optional, TextIO

MAGIC = "__ember_tqdm_magic_token__"


def format_bar(state: dict[str, Any], now_s: float) -> str:
    """One bar's text: tqdm's format when tqdm is installed, else a plain one."""
    desc = str(state.get("desc") or "")
    where = f"(pid={state.get('pid')}, ip={state.get('ip')})"
    prefix = f"{desc} {where}" if desc else where
    x, total = state.get("x", 0), state.get("total")
    elapsed = max(0.0, now_s - float(state.get("started_s") or now_s))
    try:
        from tqdm import tqdm as real_tqdm
        return real_tqdm.format_meter(x, total, elapsed, ncols=100, prefix=prefix, unit=state.get("unit") or "it")
    except ImportError:
        pass
    unit = state.get("unit") or "it"
    if total:
        frac = min(1.0, x / total)
        return f"{prefix}: {frac * 100:3.0f}%|{'#' * int(frac * 20):<20}| {x}/{total} [{elapsed:.0f}s]"
    return f"{prefix}: {x}{unit} [{elapsed:.0f}s]"


class BarManager:
    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream
        self.bars: dict[str, dict[str, Any]] = {}    # uuid -> last state
        self._drawn = 0                               # bar lines on the screen (terminals only)
        self._lock = threading.RLock()

    def _out(self) -> TextIO:
        return self.stream or sys.stderr

    def _is_tty(self) -> bool:
        try:
            return self._out().isatty()
        except (AttributeError, ValueError):
            return False

    def update(self, state: dict[str, Any]) -> None:
        with self._lock:
            key = str(state.get("uuid"))
            old = self.bars.get(key)
            state["started_s"] = old["started_s"] if old else time.time()
            now = time.time()
            if not self._is_tty():
                self._out().write(format_bar(state, now) + ("  (done)" if state.get("closed") else "") + "\n")
                self._out().flush()
                if state.get("closed"):
                    self.bars.pop(key, None)
                else:
                    self.bars[key] = state
                return
            self.hide()
            if state.get("closed"):
                self.bars.pop(key, None)
                self._out().write(format_bar(state, now) + "\n")   # its last state stays above the bars
            else:
                self.bars[key] = state
            self.show()

    def hide(self) -> None:
        with self._lock:
            if self._drawn:
                self._out().write(f"\x1b[{self._drawn}A\x1b[J")
                self._out().flush()
                self._drawn = 0

    def show(self) -> None:
        with self._lock:
            if not self._is_tty() or not self.bars:
                return
            now = time.time()
            ordered = sorted(self.bars.values(), key=lambda s: (s.get("pos") or 0, s.get("pid") or 0))
            self._out().write("".join(format_bar(s, now)[:200] + "\n" for s in ordered))
            self._out().flush()
            self._drawn = len(ordered)


MANAGER = BarManager()


def parse_bar_line(line: str) -> Optional[dict[str, Any]]:
    if not line.startswith("{") or MAGIC not in line:
        return None
    try:
        state = json.loads(line)
    except ValueError:
        return None
    return state if isinstance(state, dict) and state.get("__magic_token__") == MAGIC else None


def print_log_lines(data: Any) -> None:
    """A ``LogLines`` batch on the driver: bar updates to the bars, the rest printed with its prefix."""
    prefix = f"(pid={data.pid}, node={data.node_id.hex()[:8]}) "
    text = []
    for line in data.lines:
        state = parse_bar_line(line) if line.startswith("{") else None
        if state is not None:
            MANAGER.update(state)
        else:
            text.append(prefix + line + "\n")
    if not text:
        return
    stream = sys.stderr if data.is_err else sys.stdout
    with MANAGER._lock:
        MANAGER.hide()
        stream.write("".join(text))
        stream.flush()
        MANAGER.show()
