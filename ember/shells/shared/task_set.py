"""The background asyncio tasks one component owns: kept until done (so none is collected while it
runs), and a failure is logged with what the task was for instead of vanishing."""
from __future__ import annotations

import asyncio
import logging
from typing import Any


class TaskSet:
    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s task failed", self._what, exc_info=task.exception())
