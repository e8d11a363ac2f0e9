"""Records: what crosses a connection after the handshake, each one sealed by a MAC.

Rule 1: a record is a 4-byte little-endian length L, L bytes of frames laid end to end (each
its own 4-byte length + payload, as in ``framing.py``), then a 16-byte MAC.
Rule 2: the MAC is keyed BLAKE2b over an implicit 8-byte record counter and the L bytes.
Each direction has its own key (``auth.record_keys``) and its own counter, starting at 0, so
a record that was forged, altered, replayed, reordered or dropped fails the check of the
next record, and the connection is closed.
Rule 3: one record carries every frame a connection writes in one event-loop tick (the
writes are batched already), so the MAC costs once per write, not once per message.

Theory of operation: the writer calls ``Sealer.seal(pieces)`` with the tick's frame pieces
and writes the returned bytes; the reader's ``Framer`` (with ``trailer_bytes = MAC_BYTES``)
yields a record, ``Opener.open(record)`` checks it and returns its frames.
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

from ember.protocol.framing import HEADER_BYTES, ProtocolError, frame_header, split_frames

MAC_BYTES = 16
_COUNTER = struct.Struct("<Q")
_LEN = struct.Struct("<I")
_SMALL_RECORD_BYTES = 4096


class Sealer:
    """Seals the records of one direction of one connection."""

    __slots__ = ("_base", "_counter", "record_max_bytes")

    def __init__(self, key: bytes, record_max_bytes: int) -> None:
        self._base = hashlib.blake2b(key=key, digest_size=MAC_BYTES)
        self._counter = 0
        self.record_max_bytes = record_max_bytes

    def seal(self, pieces: list[bytes]) -> bytes:
        """The records holding ``pieces`` (frame headers and payloads, in order)."""
        total = 0
        for piece in pieces:
            total += len(piece)
        if total <= self.record_max_bytes:
            return self._seal_one(pieces, total)
        out: list[bytes] = []
        start = 0
        size = 0
        for i in range(0, len(pieces), 2):  # pieces come in (header, payload) pairs
            pair = len(pieces[i]) + len(pieces[i + 1])
            if size and size + pair > self.record_max_bytes:
                out.append(self._seal_one(pieces[start:i], size))
                start, size = i, 0
            size += pair
        out.append(self._seal_one(pieces[start:], size))
        return b"".join(out)

    def _seal_one(self, pieces: list[bytes], total: int) -> bytes:
        body = b"".join(pieces)
        h = self._base.copy()
        h.update(_COUNTER.pack(self._counter))
        h.update(body)
        self._counter += 1
        return b"".join((frame_header(total), body, h.digest()))


class Opener:
    """Checks the records of one direction of one connection."""

    __slots__ = ("_base", "_counter")

    def __init__(self, key: bytes) -> None:
        self._base = hashlib.blake2b(key=key, digest_size=MAC_BYTES)
        self._counter = 0

    def open(self, record: bytes) -> list[Any]:
        """The frames of ``record`` (as yielded by a Framer with ``trailer_bytes = MAC_BYTES``)."""
        n = len(record) - MAC_BYTES
        h = self._base.copy()
        h.update(_COUNTER.pack(self._counter))
        if n <= _SMALL_RECORD_BYTES:  # a copy is cheaper than views for the common small record
            body: Any = record[:n]
            h.update(body)
        else:
            body = memoryview(record)[:n]
            h.update(body)
        if not hmac.compare_digest(h.digest(), record[n:]):
            raise ProtocolError("record failed its MAC check (forged, altered, replayed or reordered)")
        self._counter += 1
        if n >= HEADER_BYTES and _LEN.unpack_from(body)[0] == n - HEADER_BYTES:
            return [body[HEADER_BYTES:]]  # one frame: the usual case of a request or a reply
        return split_frames(memoryview(body))


def record_max_bytes(frame_max_bytes: int) -> int:
    """The largest record a reader accepts: one frame of the largest size with its header."""
    return frame_max_bytes + HEADER_BYTES
