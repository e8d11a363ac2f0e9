"""Ray's task states, and the small integers they travel as in task events."""
from __future__ import annotations

STATES = ("NIL", "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER", "RUNNING",
          "FINISHED", "FAILED")
NIL, PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, RUNNING, FINISHED, FAILED = range(7)
TERMINAL = frozenset({FINISHED, FAILED})
