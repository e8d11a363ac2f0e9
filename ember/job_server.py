"""The job server process: an ember driver that serves the jobs REST API (Ray's port 8265).

Run as ``python -m ember.job_server --gcs-address A --token-file F --host H --port P
--session-dir D``; prints ``READY <port>`` once it listens.  Started by ``ember start --head``
and by ``ember.init(include_dashboard=True)``.  It is a process of its own, not part of the
control store, because it needs a core worker (it creates the supervisor actors) and because
an HTTP front door that parses untrusted input should be able to fail or restart without
taking the cluster's metadata with it; every job's state is in the control store's KV, so a
restarted job server adopts the running jobs again (docs/jobs.md).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any, Optional

from aiohttp import web

from ember.actor import ActorClass, ActorHandle
from ember.api import get_actor, kill
from ember.lifecycle import init, shutdown
from ember.logic.control.jobs import JobRecord
from ember.shells.control.jobs import tls
from ember.shells.control.jobs.http_app import make_app
from ember.shells.control.jobs.manager import JobManager
from ember.shells.control.jobs.store import NS_JOBS, JobStore
from ember.shells.control.jobs.supervisor import JobSupervisor
from ember.shells.wire import session

log = logging.getLogger("ember.jobs")
SUPERVISOR_PREFIX = "_ember_job_supervisor_"


class ActorSupervisors:
    """The manager's ``Supervisors``: one detached JobSupervisor actor per job."""

    def __init__(self) -> None:
        from ember.api import remote
        self._cls: ActorClass = remote(JobSupervisor)

    async def create(self, rec: JobRecord) -> ActorHandle:
        opts: dict[str, Any] = {"num_cpus": rec.entrypoint_num_cpus, "num_gpus": rec.entrypoint_num_gpus,
                                "lifetime": "detached", "name": SUPERVISOR_PREFIX + rec.submission_id,
                                "namespace": NS_JOBS, "max_restarts": 0, "max_concurrency": 64}
        if rec.entrypoint_memory:
            opts["memory"] = rec.entrypoint_memory
        if rec.entrypoint_resources:
            opts["resources"] = dict(rec.entrypoint_resources)
        return self._cls.options(**opts).remote(rec.submission_id)

    async def call(self, handle: ActorHandle, method: str, *args: Any) -> Any:
        return await getattr(handle, method).remote(*args)

    def kill(self, handle: ActorHandle) -> None:
        try:
            kill(handle)
        except Exception as exc:
            log.warning("killing a job supervisor: %s", exc)

    async def find(self, submission_id: str) -> Optional[ActorHandle]:
        try:
            handle = get_actor(SUPERVISOR_PREFIX + submission_id, namespace=NS_JOBS)
            await handle.ping.remote()
            return handle
        except Exception:
            return None


async def _serve(args: argparse.Namespace, token: bytes) -> None:
    store = JobStore(args.gcs_address, token)
    job_env = {"EMBER_ADDRESS": args.gcs_address, "RAY_ADDRESS": args.gcs_address,
               "EMBER_CLUSTER_TOKEN": token.decode()}
    manager = JobManager(store, ActorSupervisors(), job_env)
    await manager.load()
    from ember import __version__
    app = make_app(manager, token, {"ember_version": __version__,
                                    "session_name": os.path.basename(args.session_dir)})
    from ember import dashboard
    dashboard.install(app, args.gcs_address, token, args.session_dir)  # the web pages: docs/dashboard.md
    ssl_ctx = tls.server_context()
    warning = tls.exposure_warning(args.host, ssl_ctx is not None)
    if warning:
        log.warning(warning)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=ssl_ctx)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_ctx else "http"
    host = f"[{args.host}]" if ":" in args.host else args.host
    session.write_job_server_url(args.session_dir, f"{scheme}://{host}:{port}")
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    try:
        await stop
    finally:
        await manager.close()
        await runner.cleanup()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8265)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    token = session.read_token(args.token_file)
    os.environ["EMBER_CLUSTER_TOKEN"] = token.decode()
    init(address=args.gcs_address, namespace=NS_JOBS, log_to_driver=False, configure_logging=False)
    try:
        asyncio.run(_serve(args, token))
    finally:
        shutdown()


if __name__ == "__main__":
    main()
