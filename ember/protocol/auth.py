"""HMAC challenge/response over the cluster token (the token never crosses the wire).

Both sides prove they hold the token: the server sends a nonce, the client answers
with HMAC(token, "client" + server_nonce) and its own nonce, the server answers with
HMAC(token, "server" + client_nonce).
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
