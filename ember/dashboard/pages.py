"""The dashboard's pages and static files, read once from the package (``ember/dashboard/static``).

Every page path serves the same small ``index.html``; ``app.js`` draws the page named by the
path from the JSON API.  Static files are served by name from a fixed list (nothing else on
disk is reachable) and, like the pages, only with a session or the token.
"""
from __future__ import annotations

import html
import pathlib

from aiohttp import web

STATIC_DIR = pathlib.Path(__file__).with_name("static")
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".png": "image/png", ".ico": "image/x-icon"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
LOGIN_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'; "
             "frame-ancestors 'none'")
FILES = web.AppKey("dashboard_files", dict)


def load_files() -> dict[str, tuple[bytes, str]]:
    return {p.name: (p.read_bytes(), _TYPES.get(p.suffix, "application/octet-stream"))
            for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _TYPES}


def _headers(csp: str) -> dict[str, str]:
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


def safe_next(target: str) -> str:
    """Only a path of this server: no scheme, no host, no '//' (an open redirect otherwise)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(next_path: str, error: str = "", status: int = 200) -> web.Response:
    template = (STATIC_DIR / "login.html").read_text()
    body = (template.replace("{{next}}", html.escape(next_path, quote=True))
            .replace("{{error}}", html.escape(error)))
    return web.Response(text=body, content_type="text/html", status=status, headers=_headers(LOGIN_CSP))


async def login_get(request: web.Request) -> web.Response:
    return login_page(safe_next(request.query.get("next", "/")))


async def page(request: web.Request) -> web.Response:
    data, ctype = request.app[FILES]["index.html"]
    return web.Response(body=data, content_type=ctype, headers=_headers(CSP))


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def static(request: web.Request) -> web.Response:
    entry = request.app[FILES].get(request.match_info["name"])
    if entry is None:
        raise web.HTTPNotFound()
    data, ctype = entry
    headers = _headers(CSP)
    headers["Cache-Control"] = "private, max-age=300"
    return web.Response(body=data, content_type=ctype, headers=headers)
