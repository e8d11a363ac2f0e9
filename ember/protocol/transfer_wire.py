"""The raw-bytes wire of object transfer: fixed binary headers, payloads never framed.

Rule 1: a transfer connection is a TCP connection (TLS when the cluster has TLS) to a node
daemon's transfer port.  It starts with the cluster's HMAC challenge (``auth.py``): the
server sends ``HELLO_MAGIC`` + its nonce, the client its proof + its nonce, the server its
proof.  A wrong proof closes the connection at once.
Rule 2: after that the client sends requests of ``REQUEST_BYTES``: object id (padded to
``OBJECT_ID_MAX_BYTES``, its length in one byte), offset, length, then a 16-byte keyed
BLAKE2b MAC over a per-direction counter and those bytes (keys: ``auth.record_keys``).
Rule 3: the server answers each request, in order, with a header of ``RESPONSE_BYTES``
(status, total bytes of the object, offset, length, MAC as above) followed by exactly
``length`` payload bytes, sent straight from the object's file (``sendfile``) and received
straight into the destination's allocation (``recv_into``): no frame, no copy in Python.
Rule 4: headers are authenticated; payload bytes are not MAC'd (a keyed hash over every
byte runs at a few hundred MB/s here, below the wire): integrity of payloads on a hostile
network needs TLS, which covers every byte.  Requests with ``length`` 0 ask for the size.

Theory of operation: both ends are blocking sockets in threads (``shells/node/transfer_*``);
this module only packs, unpacks and checks headers, so it is tested without sockets.
"""
from __future__ import annotations

import hashlib
import hmac
import struct

from ember.protocol.framing import ProtocolError

__all__ = ["HELLO_MAGIC", "HELLO_BYTES", "AUTH_BYTES", "AUTH_OK_BYTES", "REQUEST_BYTES", "RESPONSE_BYTES",
           "OBJECT_ID_MAX_BYTES", "STATUS_OK", "STATUS_NOT_FOUND", "STATUS_BAD_RANGE", "STATUS_ERROR",
           "HeaderSealer", "ProtocolError", "pack_request", "unpack_request", "pack_response",
           "unpack_response"]

HELLO_MAGIC = b"EMTX1"
NONCE_BYTES = 32
PROOF_BYTES = 32
HELLO_BYTES = len(HELLO_MAGIC) + NONCE_BYTES
AUTH_BYTES = PROOF_BYTES + NONCE_BYTES
AUTH_OK_BYTES = PROOF_BYTES
MAC_BYTES = 16
OBJECT_ID_MAX_BYTES = 32

STATUS_OK = 0
STATUS_NOT_FOUND = 1     # not in this node's store nor in its spill directory
STATUS_BAD_RANGE = 2     # offset/length outside the object
STATUS_ERROR = 3         # the server could not read it

_REQUEST = struct.Struct(f"<B{OBJECT_ID_MAX_BYTES}sQQ")
_RESPONSE = struct.Struct("<BQQQ")
_COUNTER = struct.Struct("<Q")
REQUEST_BYTES = _REQUEST.size + MAC_BYTES
RESPONSE_BYTES = _RESPONSE.size + MAC_BYTES


class HeaderSealer:
    """MACs the headers of one direction of one connection, counting them."""

    __slots__ = ("_base", "_counter")

    def __init__(self, key: bytes) -> None:
        self._base = hashlib.blake2b(key=key, digest_size=MAC_BYTES)
        self._counter = 0

    def mac(self, body: bytes) -> bytes:
        h = self._base.copy()
        h.update(_COUNTER.pack(self._counter))
        h.update(body)
        self._counter += 1
        return h.digest()

    def check(self, header: bytes) -> bytes:
        """The body of ``header`` if its MAC is right; else ProtocolError."""
        body, given = header[:-MAC_BYTES], header[-MAC_BYTES:]
        if not hmac.compare_digest(self.mac(body), given):
            raise ProtocolError("transfer header failed its MAC check")
        return body


def pack_request(sealer: HeaderSealer, object_id: bytes, offset: int, length: int) -> bytes:
    if not 0 < len(object_id) <= OBJECT_ID_MAX_BYTES:
        raise ProtocolError(f"object id of {len(object_id)} bytes")
    body = _REQUEST.pack(len(object_id), object_id, offset, length)
    return body + sealer.mac(body)


def unpack_request(sealer: HeaderSealer, header: bytes) -> tuple[bytes, int, int]:
    """(object id, offset, length) of a request header."""
    if len(header) != REQUEST_BYTES:
        raise ProtocolError(f"transfer request of {len(header)} bytes")
    id_len, padded, offset, length = _REQUEST.unpack(sealer.check(header))
    if not 0 < id_len <= OBJECT_ID_MAX_BYTES:
        raise ProtocolError(f"object id length {id_len}")
    return padded[:id_len], offset, length


def pack_response(sealer: HeaderSealer, status: int, total_bytes: int, offset: int, length: int) -> bytes:
    body = _RESPONSE.pack(status, total_bytes, offset, length)
    return body + sealer.mac(body)


def unpack_response(sealer: HeaderSealer, header: bytes) -> tuple[int, int, int, int]:
    """(status, total bytes, offset, length) of a response header."""
    if len(header) != RESPONSE_BYTES:
        raise ProtocolError(f"transfer response of {len(header)} bytes")
    status, total, offset, length = _RESPONSE.unpack(sealer.check(header))
    if status not in (STATUS_OK, STATUS_NOT_FOUND, STATUS_BAD_RANGE, STATUS_ERROR):
        raise ProtocolError(f"transfer status {status}")
    if status != STATUS_OK and length:
        raise ProtocolError("an error response carries a payload")
    return status, total, offset, length
