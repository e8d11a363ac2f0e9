"""Which address a process listens on and which one it tells others.

A node's processes (node daemon, workers, drivers; the control store on the head) all
listen on the node's address.  ``0.0.0.0`` (or ``::``) means every interface: the process
listens there but advertises the machine's primary address (the source address of the
default route), since a wildcard cannot be dialled.  Listening beyond loopback without TLS
is allowed (the token handshake and the record MAC still guard every connection) but
earns a warning: the traffic itself is readable on the network.
"""
from __future__ import annotations

import socket

from ember.shells.wire import tls

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_PROBE_ADDRESS = ("192.0.2.123", 9)  # TEST-NET-1: only a route lookup, no packet is sent


def is_wildcard(host: str) -> bool:
    return host in WILDCARD_HOSTS


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def primary_ip() -> str:
    """This machine's address on its default route, else its host name's, else loopback."""
    for target in (("8.8.8.8", 53), _PROBE_ADDRESS):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect(target)
                ip = str(sock.getsockname()[0])
                if not is_wildcard(ip):
                    return ip
        except OSError:
            continue
    try:
        ip = socket.gethostbyname(socket.gethostname())
        if not is_loopback(ip):
            return ip
    except OSError:
        pass
    return "127.0.0.1"


def local_ip_towards(host: str) -> str:
    """The address of this machine on the route to ``host`` (no packet is sent)."""
    if is_loopback(host):
        return "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def advertised_host(listen_host: str) -> str:
    """The address others dial to reach a socket listening on ``listen_host``."""
    return primary_ip() if is_wildcard(listen_host) else listen_host


def check_listen_host(host: str) -> None:
    """Raise ValueError when ``host`` is neither a wildcard nor an address of this machine."""
    if is_wildcard(host):
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
    except (OSError, OverflowError) as exc:
        raise ValueError(f"{host!r} is not an address of this machine ({exc}); pass one of its IP "
                         "addresses, or 0.0.0.0 to listen on every interface") from None


def exposure_warning(host: str) -> str | None:
    """A warning when listening on ``host`` reaches beyond loopback without TLS, else None."""
    if is_loopback(host) or tls.files_from_env() is not None:
        return None
    where = "every interface" if is_wildcard(host) else host
    return (f"ember listens on {where} without TLS: the cluster token guards every connection, but "
            "traffic (task arguments, results) is readable on the network. Pass --tls-cert/--tls-key "
            "(and --tls-ca) or set EMBER_TLS_CERT/EMBER_TLS_KEY/EMBER_TLS_CA to encrypt it.")
