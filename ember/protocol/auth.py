"""HMAC challenge/response over the cluster token (the token never crosses the wire).

Both sides prove they hold the token: the server sends a nonce, the client answers
with HMAC(token, "client" + server_nonce) and its own nonce, the server answers with
HMAC(token, "server" + client_nonce).

Every record after the handshake is bound to it: ``record_keys`` derives one key per
direction from the token and both nonces (see ``records.py``), so a relay that passed the
handshake through cannot add, change, drop, replay or reorder anything.
"""
from __future__ import annotations

import hashlib
import hmac

NONCE_BYTES = 32


def client_proof(token: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(token, b"client" + server_nonce, hashlib.sha256).digest()


def server_proof(token: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(token, b"server" + client_nonce, hashlib.sha256).digest()


def verify(expected: bytes, given: bytes) -> bool:
    return hmac.compare_digest(expected, given)


def record_keys(token: bytes, server_nonce: bytes, client_nonce: bytes) -> tuple[bytes, bytes]:
    """(client-to-server key, server-to-client key) of one connection."""
    master = hmac.new(token, b"ember records" + server_nonce + client_nonce, hashlib.sha256).digest()
    return (hmac.new(master, b"client to server", hashlib.sha256).digest(),
            hmac.new(master, b"server to client", hashlib.sha256).digest())
