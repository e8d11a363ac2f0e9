"""Who may hold a connection that has not proved the token yet, and how loudly to say no.

Rule 1: a listener keeps at most ``pending_max`` connections in the handshake.  When one
more arrives, the oldest pending one is closed (not the new one): a flood of idle sockets
then cannot lock real clients out, whose handshakes take milliseconds.
Rule 2: refused connections are logged at most once per ``interval_s``; the next line says
how many were refused in between.

Both are plain objects: the shell passes connection ids and ``now``, and acts on the answer.
"""
from __future__ import annotations

from typing import Optional


class HandshakeAdmission:
    __slots__ = ("pending_max", "_pending")

    def __init__(self, pending_max: int) -> None:
        if pending_max < 1:
            raise ValueError("pending_max must be at least 1")
        self.pending_max = pending_max
        self._pending: dict[int, None] = {}  # insertion-ordered: oldest first

    def opened(self, conn_id: int) -> list[int]:
        """A connection arrived; returns the ids of pending connections to close now."""
        self._pending[conn_id] = None
        evict: list[int] = []
        while len(self._pending) > self.pending_max:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            evict.append(oldest)
        return evict

    def finished(self, conn_id: int) -> None:
        """The connection proved the token, or closed."""
        self._pending.pop(conn_id, None)

    def pending_count(self) -> int:
        return len(self._pending)

    def check_invariants(self) -> None:
        assert len(self._pending) <= self.pending_max


class RefusalLog:
    """Rate limit for 'connection refused' log lines."""

    __slots__ = ("interval_s", "_last_s", "_suppressed")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last_s: Optional[float] = None
        self._suppressed = 0

    def refused(self, reason: str, now: float) -> Optional[str]:
        """The line to log for this refusal, or None to stay quiet."""
        if self._last_s is not None and now - self._last_s < self.interval_s:
            self._suppressed += 1
            return None
        self._last_s = now
        line = reason
        if self._suppressed:
            line += f" ({self._suppressed} more refused connections not logged in the last {self.interval_s:g}s)"
        self._suppressed = 0
        return line
