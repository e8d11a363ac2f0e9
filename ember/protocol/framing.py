"""Sans-I/O length-prefixed framing.

Rule 1: a frame is a 4-byte little-endian length followed by that many payload bytes.
Rule 2: a length above ``max_frame_bytes`` is a protocol error; the connection that sent
it is closed, nothing else is affected.

Theory of operation: the shell calls ``feed(data)`` with whatever the socket produced and
then drains ``next_frame()`` until it returns None.  ``encode_frame`` is the inverse.
"""
from __future__ import annotations

import struct

_LEN = struct.Struct("<I")
HEADER_BYTES = _LEN.size
DEFAULT_MAX_FRAME_BYTES = 512 * 1024 * 1024


class ProtocolError(Exception):
    """Bytes from a peer that do not follow the protocol."""


def encode_frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def frame_header(payload_len: int) -> bytes:
    return _LEN.pack(payload_len)


class Framer:
    __slots__ = ("_buf", "_pos", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_frame_bytes = max_frame_bytes

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < HEADER_BYTES:
            return None
        (length,) = _LEN.unpack_from(buf, pos)
        if length > self.max_frame_bytes:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self.max_frame_bytes}")
        end = pos + HEADER_BYTES + length
        if len(buf) < end:
            return None
        frame = bytes(buf[pos + HEADER_BYTES : end])
        self._pos = end
        if end == len(buf):
            buf.clear()
            self._pos = 0
        return frame

    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos
