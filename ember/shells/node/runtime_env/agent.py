"""Setting up runtime envs for the workers of this node (Ray's runtime env agent, in the daemon).

Rule 1: one setup per distinct env (``env_key``) at a time; every worker of that env waits on
the same future, and a finished setup is reused by every later worker (warm pool).
Rule 2: a failed setup is forgotten, so a later request tries again; the failure reaches the
requests that were waiting as a ``RuntimeEnvSetupError`` naming the step and the cause.
The slow parts (unpacking, building a venv) run in a thread; packages come from the control
store's KV table.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Optional

from ember.exceptions import RuntimeEnvSetupError
from ember.logic import runtime_env as rt
from ember.protocol import messages as m
from ember.shells.shared.runtime_env import packaging, setup

log = logging.getLogger("ember.runtime_env")


class RuntimeEnvAgent:
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.envs: dict[str, dict] = {}
        self.ready: dict[str, asyncio.Future] = {}
        self._tasks: set[asyncio.Task] = set()

    def remember(self, env: Optional[dict]) -> str:
        """The key of ``env`` (its workers' pool); the env is kept for setting it up later."""
        if not env:
            return ""
        key = rt.env_key(env)
        self.envs.setdefault(key, env)
        return key

    async def worker_spec(self, key: str) -> dict:
        """The spec a forked worker applies (setting the env up first if needed)."""
        fut = self.ready.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._setup(key))
            self.ready[key] = fut
        try:
            return await asyncio.shield(fut)
        except BaseException:
            if self.ready.get(key) is fut:
                del self.ready[key]
            raise

    async def _setup(self, key: str) -> dict:
        env = self.envs[key]
        t0 = time.monotonic()
        packages: dict[str, bytes] = {}
        uris = ([env["working_dir"]] if env.get("working_dir") else []) + list(env.get("py_modules") or [])
        for uri in uris:
            if packaging.is_package_uri(uri) and not _is_unpacked(uri):
                data = await self._fetch(uri)
                if data is not None:
                    packages[uri] = data
        loop = asyncio.get_running_loop()
        try:
            prepared = await asyncio.wait_for(loop.run_in_executor(None, setup.prepare, env, packages.get),
                                              rt.setup_timeout_s(env) + 5)
        except asyncio.TimeoutError:
            raise RuntimeEnvSetupError("setup timed out (setup_timeout_seconds)") from None
        log.info("runtime env %s ready in %.2f s", key, time.monotonic() - t0)
        return setup.worker_spec(prepared, env)

    async def _fetch(self, uri: str) -> Optional[bytes]:
        gcs = self.daemon.gcs
        reply = await gcs.request(m.KvGet(packaging.KV_NAMESPACE, uri.encode()), timeout_s=60)
        return bytes(reply.value) if reply.value is not None else None

    # --- starting workers of an env ------------------------------------------------------------
    def start_worker(self, worker_id: bytes, job_id: bytes, key: str) -> None:
        """Fork the worker once its env is ready, or fail the requests waiting for that env."""
        task = asyncio.ensure_future(self._start_worker(worker_id, job_id, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_worker(self, worker_id: bytes, job_id: bytes, key: str) -> None:
        try:
            spec = await self.worker_spec(key)
        except Exception as exc:
            why = exc.error_message if isinstance(exc, RuntimeEnvSetupError) else f"{type(exc).__name__}: {exc}"
            log.warning("runtime env %s failed: %s", key, why)
            self.daemon.run_effects(self.daemon.leases.on_worker_start_failed(
                worker_id, "RuntimeEnvSetupError", str(why)))
            return
        if worker_id in self.daemon.leases.workers:  # not given up meanwhile (job finished)
            self.daemon.fork_worker_process(worker_id, job_id, spec)


def _is_unpacked(uri: str) -> bool:
    return os.path.isdir(packaging.unpacked_path(uri))
