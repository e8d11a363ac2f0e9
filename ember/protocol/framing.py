"""Sans-I/O length-prefixed framing.

Rule 1: a frame is a 4-byte little-endian length followed by that many payload bytes.
Rule 2: a length above ``max_frame_bytes`` is a protocol error; the connection that sent
it is closed, nothing else is affected.

Rule 3: after the handshake a frame may carry a fixed-size trailer (the record MAC of
``records.py``): ``trailer_bytes`` more bytes follow the payload and are returned with it;
the length prefix counts the payload only.

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
    __slots__ = ("_buf", "_pos", "max_frame_bytes", "trailer_bytes")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_frame_bytes = max_frame_bytes
        self.trailer_bytes = 0

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
        end = pos + HEADER_BYTES + length + self.trailer_bytes
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


def split_frames(body: memoryview) -> list[memoryview]:
    """The payloads of the frames laid end to end in ``body`` (a record's content)."""
    frames: list[memoryview] = []
    pos = 0
    size = len(body)
    while pos < size:
        if size - pos < HEADER_BYTES:
            raise ProtocolError("truncated frame header inside a record")
        (length,) = _LEN.unpack_from(body, pos)
        start = pos + HEADER_BYTES
        pos = start + length
        if pos > size:
            raise ProtocolError("frame runs past the end of its record")
        frames.append(body[start:pos])
    return frames
