"""The JSON endpoints the pages call (``/api/dashboard/...``), and the sampler behind the charts.

Each handler asks the cluster (``ClusterSource``) when it is called: the pages poll every few
seconds while they are open, and nothing is gathered for a closed page except the overview's
history, sampled every ``History.period_s`` on the head.  A control store or node that does
not answer gives 503 with one line; an actor's ``pid`` is joined from its node's worker list.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, AsyncIterator

from aiohttp import web

from ember.dashboard.history import History, sample_figures
from ember.dashboard.source import ClusterSource
from ember.shells.control.jobs.http_app import MANAGER
from ember.shells.wire import rpc

log = logging.getLogger("ember.dashboard")
SOURCE = web.AppKey("dashboard_source", ClusterSource)
HISTORY = web.AppKey("dashboard_history", History)
TASKS_SHOWN = 200
_DOWN = (OSError, TimeoutError, rpc.ConnectionLost, rpc.RpcError)


def _unavailable(exc: BaseException) -> web.Response:
    return web.json_response({"error": f"the cluster did not answer: {exc or type(exc).__name__}"}, status=503)


def _state_counts(rows: list[dict], key: str = "state") -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[key]] = counts.get(row[key], 0) + 1
    return counts


def _jobs(request: web.Request) -> list[dict]:
    jobs = [rec.to_json() for rec in request.app[MANAGER].table.jobs.values()]
    jobs.sort(key=lambda j: j.get("start_time") or 0, reverse=True)
    return jobs


async def overview(request: web.Request) -> web.Response:
    src = request.app[SOURCE]
    try:
        nodes, actors, summary, drivers = await asyncio.gather(
            src.nodes(), src.actors(), src.task_summary(), src.drivers())
    except _DOWN as exc:
        return _unavailable(exc)
    task_counts: dict[str, int] = {}
    for entry in summary["summary"]:
        for state, n in entry["state_counts"].items():
            task_counts[state] = task_counts.get(state, 0) + n
    return web.json_response({
        "nodes": nodes, "now": sample_figures(nodes), "actor_states": _state_counts(actors["actors"]),
        "task_states": task_counts, "jobs": _jobs(request)[:10], "drivers": drivers,
        "history": request.app[HISTORY].to_json()})


def _pids(nodes: list[dict]) -> dict[str, int]:
    return {w["worker_id"]: w["pid"] for n in nodes if n.get("host") for w in n["host"]["workers"]}


async def nodes(request: web.Request) -> web.Response:
    src = request.app[SOURCE]
    try:
        rows, actors = await asyncio.gather(src.nodes_with_stats(), src.actors())
    except _DOWN as exc:
        return _unavailable(exc)
    by_worker = {a["worker_id"]: a for a in actors["actors"] if a["state"] == "ALIVE" and a.get("worker_id")}
    for node in rows:
        for w in (node.get("host") or {}).get("workers", []):
            actor = by_worker.get(w["worker_id"])
            w["actor_id"] = actor["actor_id"] if actor else None
            w["actor_class"] = actor["class_name"] if actor else None
    return web.json_response({"nodes": rows})


async def actors(request: web.Request) -> web.Response:
    src = request.app[SOURCE]
    try:
        result, rows = await asyncio.gather(src.actors(), src.nodes_with_stats())
    except _DOWN as exc:
        return _unavailable(exc)
    pids = _pids(rows)
    for actor in result["actors"]:
        actor["pid"] = pids.get(actor.get("worker_id")) if actor["state"] == "ALIVE" else None
    result["actors"].sort(key=lambda a: (a["state"] != "ALIVE", a["class_name"], a["actor_id"]))
    return web.json_response(result)


async def tasks(request: web.Request) -> web.Response:
    src = request.app[SOURCE]
    try:
        summary, running, failed = await asyncio.gather(
            src.task_summary(), src.tasks([["state", "=", "RUNNING"]], TASKS_SHOWN),
            src.tasks([["state", "=", "FAILED"]], 0))
    except _DOWN as exc:
        return _unavailable(exc)
    failed_rows = failed["tasks"][-TASKS_SHOWN:]
    failed_rows.reverse()  # newest first
    return web.json_response({"summary": summary["summary"], "dropped": summary["dropped"],
                              "running": running["tasks"], "running_total": running["total"],
                              "failed": failed_rows, "failed_total": failed["total"]})


async def placement_groups(request: web.Request) -> web.Response:
    try:
        groups = await request.app[SOURCE].placement_groups()
    except _DOWN as exc:
        return _unavailable(exc)
    return web.json_response({"placement_groups": groups})


async def drivers(request: web.Request) -> web.Response:
    try:
        rows = await request.app[SOURCE].drivers()
    except _DOWN as exc:
        return _unavailable(exc)
    return web.json_response({"drivers": rows, "jobs": _jobs(request)})


async def log_files(request: web.Request) -> web.Response:
    return web.json_response({"files": request.app[SOURCE].log_files()})


async def log_file(request: web.Request) -> web.Response:
    try:
        offset = int(request.query.get("offset", "-1"))
    except ValueError:
        return web.json_response({"error": "offset must be an integer"}, status=400)
    try:
        return web.json_response(request.app[SOURCE].read_log(request.query.get("name", ""), offset))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except FileNotFoundError:
        return web.json_response({"error": "no such log file"}, status=404)
    except OSError as exc:
        return web.json_response({"error": f"cannot read that file: {exc.strerror}"}, status=400)


async def _sample_forever(src: ClusterSource, history: History) -> None:
    while True:  # monotonic time: the charts use only differences, and it never goes back
        try:
            history.add(time.monotonic(), sample_figures(await src.nodes_with_stats(include_workers=False)))
        except _DOWN as exc:
            log.info("dashboard sample skipped: %s", exc)
        except Exception:  # the sampler must outlive any surprise; the pages still work without it
            log.exception("dashboard sample failed")
        await asyncio.sleep(history.period_s)


async def sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp's cleanup context: the sampler runs while the app does and is cancelled with it."""
    task = asyncio.get_running_loop().create_task(_sample_forever(app[SOURCE], app[HISTORY]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    app[SOURCE].close()


def add_routes(router: Any) -> None:
    router.add_get("/api/dashboard/overview", overview)
    router.add_get("/api/dashboard/nodes", nodes)
    router.add_get("/api/dashboard/actors", actors)
    router.add_get("/api/dashboard/tasks", tasks)
    router.add_get("/api/dashboard/placement_groups", placement_groups)
    router.add_get("/api/dashboard/drivers", drivers)
    router.add_get("/api/dashboard/logs", log_files)
    router.add_get("/api/dashboard/logs/file", log_file)
