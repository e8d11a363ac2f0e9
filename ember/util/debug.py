"""``log_once`` and friends (Ray's ``ray.util.debug``): say a thing once per process.

    if log_once("slow_path"):
        logger.warning("taking the slow path")

``disable_log_once_globally()`` makes ``log_once`` always answer False in this process;
``enable_periodic_logging()`` makes it answer True again for a key once a minute;
``reset_log_once(key)`` forgets one key (or all of them).
"""
from __future__ import annotations

import threading
import time
from typing import Optional

__all__ = ["log_once", "disable_log_once_globally", "enable_periodic_logging", "reset_log_once"]

_PERIOD_S = 60.0
_lock = threading.Lock()
_logged: set[str] = set()
_disabled = False
_periodic = False
_last_reset = time.monotonic()


def log_once(key: str) -> bool:
    """True the first time ``key`` is seen in this process (and once a minute with periodic logging)."""
    global _last_reset
    with _lock:
        if _disabled:
            return False
        if _periodic and time.monotonic() - _last_reset >= _PERIOD_S:
            _logged.clear()
            _last_reset = time.monotonic()
        if key in _logged:
            return False
        _logged.add(key)
        return True


def disable_log_once_globally() -> None:
    """Make ``log_once`` return False in this process from now on."""
    global _disabled
    _disabled = True


def enable_periodic_logging() -> None:
    """Make ``log_once`` return True again for each key once every 60 seconds."""
    global _periodic
    _periodic = True


def reset_log_once(key: Optional[str] = None) -> None:
    """Forget ``key`` (every key when None), so that ``log_once`` answers True for it again."""
    with _lock:
        if key is None:
            _logged.clear()
        else:
            _logged.discard(key)
