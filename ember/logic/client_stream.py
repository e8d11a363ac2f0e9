"""Exactly-once delivery over a connection that may drop and be replaced (the ember:// tunnel).

Both ends of a client session (the client and the head's client server) keep one
``ReliableStream``.  What one end sends is numbered (``stamp``) and kept until the peer
acknowledges it (``acked``); what it receives is applied only if it is the next number
(``accept``), so a message resent after a reconnection is applied once.  On a new
connection each end says the last number it applied, and the other resends what
follows (``resend_after``).

``Liveness`` decides, from the time a peer was last heard from, when a connection is
silent (close it and reconnect) and when a session has expired (clean it up).

Pure: no clocks, sockets or threads; ``now`` is passed in (docs/client.md).
"""
from __future__ import annotations

from collections import deque
from typing import Any


class StreamGap(Exception):
    """A message arrived whose number is past the next one: something was lost (a bug)."""


class ReliableStream:
    def __init__(self) -> None:
        self.next_seq = 1               # number of the next message this end sends
        self.received_upto = 0          # last number applied from the peer
        self.acked_upto = 0             # last number of ours the peer said it applied
        self._unacked: deque[tuple[int, Any, int]] = deque()   # (seq, message, size in bytes)
        self.unacked_bytes = 0
        self.received_bytes_unacked = 0  # bytes applied since this end last acknowledged

    def stamp(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def sent(self, seq: int, msg: Any, size_bytes: int) -> None:
        """Keep ``msg`` (number ``seq``) until the peer acknowledges it."""
        self._unacked.append((seq, msg, size_bytes))
        self.unacked_bytes += size_bytes

    def acked(self, upto: int) -> None:
        """The peer applied everything up to ``upto``: forget it."""
        if upto <= self.acked_upto:
            return
        if upto >= self.next_seq:
            raise StreamGap(f"peer acknowledged {upto} but only {self.next_seq - 1} were sent")
        self.acked_upto = upto
        while self._unacked and self._unacked[0][0] <= upto:
            self.unacked_bytes -= self._unacked.popleft()[2]

    def accept(self, seq: int, size_bytes: int = 0) -> bool:
        """True when ``seq`` is the next message to apply; False for a duplicate (resent)."""
        if seq <= self.received_upto:
            return False
        if seq != self.received_upto + 1:
            raise StreamGap(f"received {seq} after {self.received_upto}")
        self.received_upto = seq
        self.received_bytes_unacked += size_bytes
        return True

    def ack_sent(self) -> int:
        """This end is acknowledging now: the number to send."""
        self.received_bytes_unacked = 0
        return self.received_upto

    def resend_after(self, peer_received_upto: int) -> list[Any]:
        """The messages to send again on a new connection, in order."""
        self.acked(peer_received_upto)
        return [msg for _, msg, _ in self._unacked]

    def check_invariants(self) -> None:
        seqs = [s for s, _, _ in self._unacked]
        assert seqs == sorted(seqs) and all(b - a == 1 for a, b in zip(seqs, seqs[1:])), seqs
        assert not seqs or (seqs[0] == self.acked_upto + 1 and seqs[-1] == self.next_seq - 1)
        assert self.unacked_bytes == sum(n for _, _, n in self._unacked)


class Liveness:
    """When a peer was last heard from, and what that means."""

    def __init__(self, now: float) -> None:
        self.last_heard = now

    def heard(self, now: float) -> None:
        self.last_heard = now

    def is_silent(self, now: float, idle_timeout_s: float) -> bool:
        """Nothing for ``idle_timeout_s``: the connection is presumed dead (a cut link
        does not close a TCP connection)."""
        return now - self.last_heard > idle_timeout_s

    def is_expired(self, now: float, grace_s: float) -> bool:
        """Nothing for the whole grace period: the session ends."""
        return now - self.last_heard > grace_s
