"""The web dashboard, served by the job server on the jobs API's port (8265): docs/dashboard.md.

``install(app, ...)`` adds the pages, the login, the static files and the ``/api/dashboard/``
JSON endpoints to the jobs API's aiohttp application, and puts the session middleware in
front of the jobs API's token check, so a page, a static file or an API call needs the
token or a session cookie obtained with it.
"""
from __future__ import annotations

from aiohttp import web

from ember.config import CONFIG
from ember.dashboard import api, auth, pages
from ember.dashboard.history import History
from ember.dashboard.source import ClusterSource


def install(app: web.Application, gcs_address: str, token: bytes, session_dir: str) -> None:
    app.middlewares.insert(1, auth.session_middleware)  # after the error mapping, before the token check
    app[auth.SESSIONS] = auth.Sessions()
    app[auth.TOKEN] = token
    app[auth.COOKIE] = auth.cookie_name(token)
    app[pages.FILES] = pages.load_files()
    app[api.SOURCE] = ClusterSource(gcs_address, token, session_dir)
    app[api.HISTORY] = History(period_s=CONFIG.dashboard_history_period_s)
    app.cleanup_ctx.append(api.sampler_ctx)
    router = app.router
    router.add_get("/login", pages.login_get)
    router.add_post("/login", auth.login_post)
    router.add_post("/logout", auth.logout_post)
    for path in auth.PAGES:
        router.add_get(path, pages.page)
    router.add_get("/static/{name}", pages.static)
    router.add_get("/favicon.ico", pages.favicon)
    api.add_routes(router)
