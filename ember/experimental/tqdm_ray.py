"""Ray's ``ray.experimental.tqdm_ray``: progress bars updated in tasks and actors, drawn by the driver.

In a task or actor, a bar's state (count, total, description) is printed at most once per
``flush_interval_s`` (and at ``close``) as a magic-tagged JSON line on the worker's stdout; the
log stream carries it to the driver, which draws it below the log lines instead of printing it
(``shells/worker/progress_bars.py``).  In the driver itself the bar is drawn directly.
"""
from __future__ import annotations

import builtins
import json
import os
import time
import uuid
from typing import Any, Iterable, Iterator, Optional

from ember.shells.worker import progress_bars


def _in_driver() -> bool:
    from ember.shells.worker import core_worker
    cw = core_worker._core_worker
    return cw is None or cw.mode == "driver"


def safe_print(*args: Any, **kwargs: Any) -> None:
    """``print`` that does not clobber the driver's progress bars."""
    if not _in_driver():
        builtins.print(*args, **kwargs)
        return
    with progress_bars.MANAGER._lock:
        progress_bars.MANAGER.hide()
        builtins.print(*args, **kwargs)
        progress_bars.MANAGER.show()


class tqdm:
    """Ray's ``tqdm_ray.tqdm``: ``tqdm(iterable=None, desc=None, total=None, unit=None, position=None,
    flush_interval_s=1.0)`` with ``update``, ``set_description``, ``refresh``, ``close`` and iteration."""

    def __init__(self, iterable: Optional[Iterable] = None, desc: Optional[str] = None, total: Optional[int] = None,
                 unit: Optional[str] = None, position: Optional[int] = None, flush_interval_s: float = 1.0) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._pos = position or 0
        self._x = 0
        self._uuid = uuid.uuid4().hex
        self._closed = False
        self._flush_interval_s = flush_interval_s
        self._last_flush_s = 0.0
        self._dump_state(force=True)

    @property
    def total(self) -> Optional[int]:
        return self._total

    @total.setter
    def total(self, value: Optional[int]) -> None:
        self._total = value

    def set_description(self, desc: str) -> None:
        self._desc = desc
        self._dump_state()

    def update(self, n: int = 1) -> None:
        self._x += n
        self._dump_state()

    def refresh(self) -> None:
        self._dump_state(force=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dump_state(force=True)

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise ValueError("No iterable provided")
        for item in self._iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "tqdm":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _get_state(self) -> dict[str, Any]:
        return {"__magic_token__": progress_bars.MAGIC, "x": self._x, "pos": self._pos, "desc": self._desc,
                "total": self._total, "unit": self._unit, "ip": os.environ.get("EMBER_NODE_IP_ADDRESS", "127.0.0.1"),
                "pid": os.getpid(), "uuid": self._uuid, "closed": self._closed}

    def _dump_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush_s < self._flush_interval_s:
            return
        self._last_flush_s = now
        if _in_driver():
            progress_bars.MANAGER.update(self._get_state())
        else:
            builtins.print(json.dumps(self._get_state()), flush=True)


__all__ = ["tqdm", "safe_print"]
