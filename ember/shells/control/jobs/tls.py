"""TLS for the job server's HTTP listener, from ``EMBER_TLS_CERT`` / ``EMBER_TLS_KEY`` / ``EMBER_TLS_CA``.

With a certificate and key the server speaks HTTPS; with a CA as well it demands a client
certificate signed by that CA (mutual TLS).  The same variables give the client its CA to trust
and its own certificate.  The server side is the RPC wire's (``shells/wire/tls.py``); the HTTP
client differs on purpose: it verifies the server's certificate and host name against the CA
(or the system's CAs), as HTTP clients do.
"""
from __future__ import annotations

import os
import ssl
from typing import Optional

from ember.shells.wire import tls as wire_tls

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value or None


def server_context() -> Optional[ssl.SSLContext]:
    """The HTTPS listener's context: the same files and rules as ember's RPC listeners
    (``shells/wire/tls.py``: a certificate and key, and mutual TLS with a CA)."""
    return wire_tls.env_server_context()


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_env("EMBER_TLS_CA"))
    cert, key = _env("EMBER_TLS_CERT"), _env("EMBER_TLS_KEY")
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK or host.startswith("127.")


def exposure_warning(host: str, has_tls: bool) -> Optional[str]:
    if is_loopback(host) or has_tls:
        return None
    return (f"WARNING: the ember job server listens on {host} without TLS: the cluster token and job "
            "logs cross the network in clear text. Set EMBER_TLS_CERT and EMBER_TLS_KEY (and EMBER_TLS_CA "
            "for mutual TLS), or bind to 127.0.0.1.")
