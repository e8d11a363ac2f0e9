"""A Prometheus endpoint served on a daemon's own event loop (node daemon, control store).

``GET /metrics`` answers ``prometheus_client.generate_latest(registry)``: the registry's
collectors run on the daemon's loop thread at scrape time, so they may read the daemon's
tables without locks and the daemon pays nothing between scrapes (no thread, no timer).
A hand-written HTTP/1.0 responder keeps the daemons free of an HTTP framework's import cost.

The endpoint demands the cluster token as ``Authorization: Bearer <token>`` (Prometheus:
``authorization: {credentials_file: <session>/token}``) unless ``metrics_require_token`` is 0.
Where it listens is written to ``<session>/metrics/<name>.json`` so tools and tests find it.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from typing import Any, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ember.config import CONFIG

log = logging.getLogger(__name__)
_HEAD_MAX_BYTES = 16 * 1024
_READ_TIMEOUT_S = 10.0


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, token: bytes) -> None:
        self.registry = registry
        self.token = token
        self.server: Optional[asyncio.AbstractServer] = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._serve, host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def _authorized(self, headers: dict[str, str]) -> bool:
        if not CONFIG.metrics_require_token:
            return True
        kind, _, value = headers.get("authorization", "").partition(" ")
        return kind.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, ctype, body = self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        except Exception:   # a collector failed: say so, never take the daemon down
            log.exception("metrics scrape failed")
            status, ctype, body = "500 Internal Server Error", "text/plain", b"metrics collection failed\n"
        writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        if len(head) > _HEAD_MAX_BYTES:
            return "431 Request Header Fields Too Large", "text/plain", b"headers too large\n"
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET /metrics\n"
        headers = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        if not self._authorized(headers):
            return "401 Unauthorized", "text/plain", b"the cluster token is needed: Authorization: Bearer <token>\n"
        if parts[1].split("?", 1)[0] not in ("/metrics", "/"):
            return "404 Not Found", "text/plain", b"see /metrics\n"
        body = generate_latest(self.registry)
        return "200 OK", CONTENT_TYPE_LATEST, b"" if parts[0] == "HEAD" else body


def metrics_dir(session_dir: str) -> str:
    return os.path.join(session_dir, "metrics")


def write_endpoint_file(session_dir: str, name: str, record: dict[str, Any]) -> str:
    """``<session>/metrics/<name>.json``: where one endpoint listens (written atomically)."""
    directory = metrics_dir(session_dir)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, name + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
    return path

