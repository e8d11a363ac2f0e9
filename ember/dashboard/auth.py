"""The dashboard's login: the cluster token, once, for a session cookie.

A browser cannot send ``Authorization: Bearer`` on page loads, so ``POST /login`` takes the
token from a form, checks it in constant time, and answers with a random session id in a cookie
(``HttpOnly``: no script reads it; ``SameSite=Strict``: no other site's page sends it; ``Secure``
under TLS; ``Path=/``).  The sessions live in the job server's memory (a restart logs everyone
out) and expire after ``SESSION_TTL_S``.

``session_middleware`` runs before the jobs API's token check.  A request with a live session
cookie is marked (``AUTH_DONE``), which the jobs API's middleware accepts as it accepts
the bearer token.  Without one: the login page itself passes; other pages redirect to
``/login?next=...``; everything else (``/api/...``, static files) goes on to the jobs API's check,
which answers 401 unless the bearer token is there.  A cookie-authorized request that changes
something (not GET/HEAD) or opens a websocket must come from the dashboard's own origin
(``Origin`` equal to the host): defence in depth behind SameSite.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from typing import Awaitable, Callable, Optional
from urllib.parse import parse_qs, quote

from aiohttp import web

from ember.dashboard.pages import login_page, safe_next
from ember.shells.control.jobs.http_app import AUTH_DONE

log = logging.getLogger("ember.dashboard")

COOKIE_PREFIX = "ember_session_"  # + a digest of the token: browsers share cookies across ports, clusters must not
SESSION_TTL_S = 12 * 3600.0
SESSIONS_MAX = 10_000
FORM_MAX_BYTES = 4096
PAGES = ("/", "/nodes", "/actors", "/tasks", "/placement-groups", "/jobs", "/logs")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Sessions:
    """Session id -> expiry (monotonic seconds)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._expiry: dict[str, float] = {}

    def create(self) -> str:
        now = time.monotonic()
        if len(self._expiry) >= SESSIONS_MAX:
            self._expiry = {k: v for k, v in self._expiry.items() if v > now}
            while len(self._expiry) >= SESSIONS_MAX:  # still full: the oldest go
                self._expiry.pop(min(self._expiry, key=self._expiry.__getitem__))
        sid = secrets.token_urlsafe(32)
        self._expiry[sid] = now + self.ttl_s
        return sid

    def valid(self, sid: Optional[str]) -> bool:
        if not sid:
            return False
        expiry = self._expiry.get(sid)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self._expiry[sid]
            return False
        return True

    def drop(self, sid: Optional[str]) -> None:
        if sid:
            self._expiry.pop(sid, None)


SESSIONS = web.AppKey("dashboard_sessions", Sessions)
TOKEN = web.AppKey("dashboard_token", bytes)
COOKIE = web.AppKey("dashboard_cookie", str)


def cookie_name(token: bytes) -> str:
    """Two clusters on one host (other ports) must not overwrite each other's session cookie; 8 hex
    digits of a digest of the 256-bit token tell them apart and say nothing about it."""
    return COOKIE_PREFIX + hashlib.sha256(b"ember-dashboard-cookie:" + token).hexdigest()[:8]


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin on POSTs and websockets (pages use Referrer-Policy same-origin: with
    no-referrer a form POST would carry ``Origin: null``)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.method in ("GET", "HEAD") and request.headers.get("Upgrade", "").lower() != "websocket"
    return origin.split("://", 1)[-1] == request.host


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/login":  # the form that takes the token: nothing else runs there
        request[AUTH_DONE] = True
        return await handler(request)
    if request.app[SESSIONS].valid(request.cookies.get(request.app[COOKIE])):
        if not _same_origin(request):
            log.warning("refused a cross-origin %s %s from %s", request.method, request.path, request.remote)
            return web.json_response({"error": "cross-origin request refused"}, status=403)
        request[AUTH_DONE] = True
        return await handler(request)
    if request.method == "GET" and request.path in PAGES and "Authorization" not in request.headers:
        raise web.HTTPFound("/login?next=" + quote(request.path_qs, safe="/"))
    return await handler(request)


async def login_post(request: web.Request) -> web.StreamResponse:
    if request.content_length is not None and request.content_length > FORM_MAX_BYTES:
        return web.json_response({"error": "login form too large"}, status=413)
    body = await request.content.read(FORM_MAX_BYTES + 1)
    if len(body) > FORM_MAX_BYTES:
        return web.json_response({"error": "login form too large"}, status=413)
    form = parse_qs(body.decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0].strip().encode()
    target = safe_next((form.get("next") or ["/"])[0])
    if not given or not hmac.compare_digest(given, request.app[TOKEN]):
        log.warning("refused a dashboard login from %s: wrong token", request.remote)
        return login_page(target, "Wrong token.", status=401)
    resp = web.HTTPSeeOther(target)
    resp.set_cookie(request.app[COOKIE], request.app[SESSIONS].create(), httponly=True, samesite="Strict", path="/",
                    secure=request.secure, max_age=int(SESSION_TTL_S))
    raise resp


async def logout_post(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].drop(request.cookies.get(request.app[COOKIE]))
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(request.app[COOKIE], path="/")
    raise resp
