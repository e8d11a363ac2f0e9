"""The jobs REST API (Ray's paths and JSON shapes) as an aiohttp application.

Rule 1: nothing runs before the token is checked: the auth middleware answers 401 before any
handler reads the body.  Rule 2: bad input is a 4xx with a one-line JSON message (400 for bad
JSON or fields, 404 for an unknown job, 413 for a body over its limit); an unexpected error is
logged here and answered 500 without a stack trace.
"""
from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from ember.logic.control.jobs import JobRequestError
from ember.shells.control.jobs.manager import JobManager, JobNotFound
from ember.shells.shared.runtime_env import packaging

log = logging.getLogger("ember.jobs.http")

API_VERSION = "3"
JSON_BODY_MAX_BYTES = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MANAGER = web.AppKey("manager", JobManager)
TOKEN = web.AppKey("token", bytes)
INFO = web.AppKey("info", dict)
AUTH_DONE = "ember.auth_done"  # request key set by an outer middleware that checked the request (the dashboard's)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _is_authorized(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), request.app[TOKEN])


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not (request.get(AUTH_DONE) or _is_authorized(request)):
        log.warning("refused an unauthenticated %s %s from %s", request.method, request.path, request.remote)
        resp = _error(401, "missing or wrong cluster token: send 'Authorization: Bearer <token>' (the token is "
                           "in the head's session directory, file 'token', or EMBER_CLUSTER_TOKEN)")
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JobRequestError as exc:
        return _error(400, str(exc))
    except JobNotFound as exc:
        return _error(404, str(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(413, f"request body too large: {exc.text}")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error in the job server (see its log)")


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or at most ``limit + 1`` bytes of it (StreamReader.read(n) may return less)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > JSON_BODY_MAX_BYTES:
        return _TooLarge(request.content_length)
    body = await _read_body(request, JSON_BODY_MAX_BYTES)
    if len(body) > JSON_BODY_MAX_BYTES:
        return _TooLarge(len(body))
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise JobRequestError(f"the request body is not valid JSON: {exc}") from None


class _TooLarge:
    def __init__(self, size: int) -> None:
        self.size = size

    def response(self) -> web.Response:
        return _error(413, f"request body of {self.size} bytes is over the limit of {JSON_BODY_MAX_BYTES} bytes")


async def version(request: web.Request) -> web.Response:
    info = request.app[INFO]
    return web.json_response({"version": API_VERSION, "ray_version": info.get("ember_version", ""),
                              "ember_version": info.get("ember_version", ""), "ray_commit": "",
                              "session_name": info.get("session_name", "")})


async def submit(request: web.Request) -> web.Response:
    body = await _read_json(request)
    if isinstance(body, _TooLarge):
        return body.response()
    rec = await request.app[MANAGER].submit(body)
    return web.json_response({"submission_id": rec.submission_id, "job_id": rec.submission_id})


async def list_jobs(request: web.Request) -> web.Response:
    return web.json_response([r.to_json() for r in request.app[MANAGER].table.jobs.values()])


async def get_job(request: web.Request) -> web.Response:
    return web.json_response(request.app[MANAGER].get(request.match_info["job_id"]).to_json())


async def get_logs(request: web.Request) -> web.Response:
    return web.json_response({"logs": await request.app[MANAGER].logs(request.match_info["job_id"])})


async def tail_logs(request: web.Request) -> web.WebSocketResponse:
    manager = request.app[MANAGER]
    sid = request.match_info["job_id"]
    manager.get(sid)  # 404 before the upgrade
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    async for chunk in manager.tail(sid):
        if ws.closed:
            break
        await ws.send_str(chunk)
    await ws.close()
    return ws


async def stop_job(request: web.Request) -> web.Response:
    return web.json_response({"stopped": await request.app[MANAGER].stop(request.match_info["job_id"])})


async def delete_job(request: web.Request) -> web.Response:
    return web.json_response({"deleted": await request.app[MANAGER].delete(request.match_info["job_id"])})


async def put_package(request: web.Request) -> web.Response:
    uri = f"{request.match_info['protocol']}://{request.match_info['name']}"
    if not packaging.is_package_uri(uri):
        raise JobRequestError(f"package URI {uri!r} is not of the form {packaging.URI_PREFIX}<sha256>.zip")
    limit = packaging.PACKAGE_MAX_BYTES
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"package of {request.content_length} bytes is over the limit of {limit} bytes")
    data = await _read_body(request, limit)
    if len(data) > limit:
        return _error(413, f"package is over the limit of {limit} bytes")
    if packaging.package_uri(data) != uri:
        raise JobRequestError(f"the uploaded bytes do not hash to {uri}")
    await request.app[MANAGER].store.put_package(uri, data)
    return web.json_response({"uri": uri})


async def head_package(request: web.Request) -> web.Response:
    uri = f"{request.match_info['protocol']}://{request.match_info['name']}"
    if await request.app[MANAGER].store.has_package(uri):
        return web.json_response({"uri": uri})
    return _error(404, f"package {uri} is not in the cluster")


def make_app(manager: JobManager, token: bytes, info: dict) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware],
                          client_max_size=packaging.PACKAGE_MAX_BYTES + 1)
    app[MANAGER] = manager
    app[TOKEN] = token
    app[INFO] = info
    app.router.add_get("/api/version", version)
    app.router.add_post("/api/jobs/", submit)
    app.router.add_post("/api/jobs", submit)
    app.router.add_get("/api/jobs/", list_jobs)
    app.router.add_get("/api/jobs", list_jobs)
    app.router.add_get("/api/jobs/{job_id}", get_job)
    app.router.add_get("/api/jobs/{job_id}/logs", get_logs)
    app.router.add_get("/api/jobs/{job_id}/logs/tail", tail_logs)
    app.router.add_post("/api/jobs/{job_id}/stop", stop_job)
    app.router.add_delete("/api/jobs/{job_id}", delete_job)
    app.router.add_put("/api/packages/{protocol}/{name}", put_package)
    app.router.add_get("/api/packages/{protocol}/{name}", head_package)
    return app
