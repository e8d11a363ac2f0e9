"""TLS for the job server's HTTP listener, from ``EMBER_TLS_CERT`` / ``EMBER_TLS_KEY`` / ``EMBER_TLS_CA``.

With a certificate and key the server speaks HTTPS; with a CA as well it demands a client
certificate signed by that CA (mutual TLS).  The same variables give the client its CA to trust
and its own certificate.  (The RPC wire has its own helper; the two read the same variables.)
"""
from __future__ import annotations

import os
import ssl
from typing import Optional

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value or None


def server_context() -> Optional[ssl.SSLContext]:
    cert, key, ca = _env("EMBER_TLS_CERT"), _env("EMBER_TLS_KEY"), _env("EMBER_TLS_CA")
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("set both EMBER_TLS_CERT and EMBER_TLS_KEY to serve HTTPS")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


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
