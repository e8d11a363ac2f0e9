"""TLS for ember's listeners and clients: SSL contexts from EMBER_TLS_CERT / _KEY / _CA.

- EMBER_TLS_CERT and EMBER_TLS_KEY (PEM files): this process's certificate chain and key.
  Every ember listener presents them; with a CA, every client presents them too.
- EMBER_TLS_CA (PEM file, optional): the CA that signs every ember process's certificate.
  Given: mutual TLS, each side refuses a peer whose certificate that CA did not sign.
  Not given: the wire is encrypted but certificates are not checked (the token handshake
  and the record MAC still authenticate the peer).

Host names are not checked: ember addresses peers by IP, and a certificate from the
cluster's own CA is the identity.  ``ember start --tls-cert/--tls-key/--tls-ca`` sets the
variables, so every process it starts (and they start) inherits them; a driver joining a
TLS cluster needs the same variables.  Used by ``rpc`` and importable by any other server
of ember (the HTTP job server reads the same variables).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import ssl
from typing import Mapping, Optional

ENV_CERT = "EMBER_TLS_CERT"
ENV_KEY = "EMBER_TLS_KEY"
ENV_CA = "EMBER_TLS_CA"


class TlsConfigError(ValueError):
    """The TLS settings are incomplete or name files that cannot be used."""


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: Optional[str] = None

    @property
    def is_mutual(self) -> bool:
        return self.ca is not None

    def as_env(self) -> dict[str, str]:
        env = {ENV_CERT: self.cert, ENV_KEY: self.key}
        if self.ca:
            env[ENV_CA] = self.ca
        return env


def tls_files(cert: Optional[str], key: Optional[str], ca: Optional[str] = None) -> Optional[TlsFiles]:
    """Checked TLS settings, or None when TLS is off (no cert, no key, no CA)."""
    if not (cert or key or ca):
        return None
    if not cert or not key:
        raise TlsConfigError(f"TLS needs both a certificate and a key ({ENV_CERT}/--tls-cert and "
                             f"{ENV_KEY}/--tls-key); got only the "
                             f"{'certificate' if cert else 'key' if key else 'CA'}")
    for what, path in (("certificate", cert), ("key", key), ("CA", ca)):
        if path and not os.path.isfile(path):
            raise TlsConfigError(f"TLS {what} file {path!r} does not exist")
    files = TlsFiles(os.path.abspath(cert), os.path.abspath(key), os.path.abspath(ca) if ca else None)
    try:
        server_context(files)
        client_context(files)
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"TLS files cannot be used ({cert}, {key}, {ca}): {exc}") from None
    return files


def files_from_env(environ: Mapping[str, str] = os.environ) -> Optional[TlsFiles]:
    return tls_files(environ.get(ENV_CERT) or None, environ.get(ENV_KEY) or None, environ.get(ENV_CA) or None)


@functools.lru_cache(maxsize=8)
def server_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.cert, files.key)
    if files.ca:
        ctx.load_verify_locations(files.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@functools.lru_cache(maxsize=8)
def client_context(files: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    if files.ca:
        ctx.load_verify_locations(files.ca)
        ctx.load_cert_chain(files.cert, files.key)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def env_server_context() -> Optional[ssl.SSLContext]:
    """The listeners' context from this process's environment (None: plain TCP)."""
    files = files_from_env()
    return server_context(files) if files is not None else None


def env_client_context() -> Optional[ssl.SSLContext]:
    """The clients' context from this process's environment (None: plain TCP)."""
    files = files_from_env()
    return client_context(files) if files is not None else None
