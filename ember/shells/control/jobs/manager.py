"""The job manager: carries submitted jobs through their lives, one asyncio task per job.

The decisions (which moves are legal, what a request may hold) are in
``ember.logic.control.jobs``; this shell creates supervisors, waits on them and writes every
change to the control store's KV (``store.JobStore``) before answering.  Supervisors are
reached through a small interface (``Supervisors``) that the job server process provides from
ember's public API, so this package does not import the public layer.
"""
from __future__ import annotations

import asyncio
import codecs
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator, Optional, Protocol

from ember.exceptions import RuntimeEnvSetupError
from ember.logic import runtime_env as rt
from ember.logic.control.jobs import JobRecord, JobRequestError, JobStatus, JobTable, failure_message, parse_submit
from ember.shells.control.jobs.store import JobStore
from ember.shells.shared.runtime_env import packaging, setup

log = logging.getLogger("ember.jobs")

LOGS_KEPT_MAX_BYTES = 16 * 1024 * 1024
STOP_GRACE_S = 3.0
_TAIL_POLL_S = 0.25
_TAIL_CHUNK_BYTES = 1024 * 1024


class Supervisors(Protocol):
    async def create(self, rec: JobRecord) -> Any: ...
    async def call(self, handle: Any, method: str, *args: Any) -> Any: ...
    def kill(self, handle: Any) -> None: ...
    async def find(self, submission_id: str) -> Any: ...


class JobNotFound(LookupError):
    pass


class JobManager:
    def __init__(self, store: JobStore, supervisors: Supervisors, job_env: dict[str, str]) -> None:
        self.store = store
        self.supervisors = supervisors
        self.job_env = job_env
        self.table = JobTable()
        self.handles: dict[str, Any] = {}
        self.stop_requested: set[str] = set()
        self._tasks: set[asyncio.Task] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def get(self, submission_id: str) -> JobRecord:
        rec = self.table.jobs.get(submission_id)
        if rec is None:
            raise JobNotFound(f"Job {submission_id} does not exist.")
        return rec

    # --- restart -----------------------------------------------------------------------------------
    async def load(self) -> None:
        """Adopt the jobs in the store; live ones are watched again through their supervisors."""
        for rec in await self.store.load_jobs():
            self.table.load(rec)
            if rec.status.is_terminal():
                continue
            handle = await self.supervisors.find(rec.submission_id)
            if handle is None:
                await self._finish(rec.submission_id, JobStatus.FAILED, "the job server restarted and the job's "
                                   "supervisor is gone", "JOB_SUPERVISOR_ACTOR_DIED")
            else:
                self.handles[rec.submission_id] = handle
                self._spawn(self._watch(rec, handle))

    # --- submit -------------------------------------------------------------------------------------
    async def submit(self, body: Any) -> JobRecord:
        rec = parse_submit(body, f"emberjob_{uuid.uuid4().hex[:16]}")
        try:
            rec.runtime_env = rt.validate(rec.runtime_env)
        except (TypeError, ValueError) as exc:
            raise JobRequestError(f"runtime_env: {exc}") from None
        for uri in self._package_uris(rec):
            if not packaging.is_package_uri(uri):
                raise JobRequestError(f"runtime_env path {uri!r} is not an uploaded package: upload it first "
                                      "(PUT /api/packages/gcs/<name>), as JobSubmissionClient does")
            if not await self.store.has_package(uri):
                raise JobRequestError(f"package {uri} was not uploaded")
        self.table.add(rec, time.time(), cause_id="submit")
        await self.store.save_job(rec)
        self._spawn(self._run(rec))
        return rec

    @staticmethod
    def _package_uris(rec: JobRecord) -> list[str]:
        env = rec.runtime_env
        return ([env["working_dir"]] if env.get("working_dir") else []) + list(env.get("py_modules") or [])

    async def _run(self, rec: JobRecord) -> None:
        sid = rec.submission_id
        try:
            handle = await self.supervisors.create(rec)
            self.handles[sid] = handle
            packages = {uri: await self.store.get_package(uri) for uri in self._package_uris(rec)}
            env = {**self.job_env, "EMBER_JOB_SUBMISSION_ID": sid, "RAY_JOB_SUBMISSION_ID": sid,
                   setup.JOB_ENV_VAR: json.dumps(rec.runtime_env, sort_keys=True)}  # its tasks inherit it
            info = await self.supervisors.call(handle, "start", rec.entrypoint, rec.runtime_env, packages, env)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if sid in self.stop_requested:
                await self._finish(sid, JobStatus.STOPPED, "Job was intentionally stopped.", None)
            else:
                err = _cause(exc)
                kind = "RUNTIME_ENV_SETUP_FAILURE" if isinstance(err, RuntimeEnvSetupError) else "JOB_SUPERVISOR_ACTOR_START_FAILURE"
                await self._finish(sid, JobStatus.FAILED, f"{type(err).__name__}: {err}", kind)
            return
        rec.driver_info = {"id": sid, "node_ip_address": str(info.get("node_ip") or ""), "pid": str(info.get("pid"))}
        if self.table.move(sid, JobStatus.RUNNING, time.time(), "started", message="Job is currently running."):
            await self.store.save_job(rec)
        await self._watch(rec, handle)

    async def _watch(self, rec: JobRecord, handle: Any) -> None:
        sid = rec.submission_id
        try:
            exit_code, tail = await self.supervisors.call(handle, "wait")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._finish(sid, JobStatus.STOPPED if sid in self.stop_requested else JobStatus.FAILED,
                               f"the job supervisor died: {_cause(exc)}", "JOB_SUPERVISOR_ACTOR_DIED")
            return
        await self._keep_logs(sid, handle)
        if sid in self.stop_requested:
            await self._finish(sid, JobStatus.STOPPED, "Job was intentionally stopped.", None, exit_code)
        elif exit_code == 0:
            await self._finish(sid, JobStatus.SUCCEEDED, "Job finished successfully.", None, 0)
        else:
            await self._finish(sid, JobStatus.FAILED, failure_message(exit_code, tail), "JOB_ENTRYPOINT_COMMAND_ERROR",
                               exit_code)

    async def _keep_logs(self, sid: str, handle: Any) -> None:
        try:
            data, _ = await self.supervisors.call(handle, "read_logs", 0, LOGS_KEPT_MAX_BYTES)
            await self.store.save_logs(sid, bytes(data))
        except Exception as exc:
            log.warning("could not keep the logs of job %s: %s", sid, exc)

    async def _finish(self, sid: str, status: JobStatus, message: str, error_type: Optional[str],
                      exit_code: Optional[int] = None) -> None:
        rec = self.table.jobs[sid]
        if self.table.move(sid, status, time.time(), status.value.lower(), message=message, exit_code=exit_code,
                           error_type=error_type):
            await self.store.save_job(rec)
        handle = self.handles.pop(sid, None)
        if handle is not None:
            self.supervisors.kill(handle)

    # --- stop / delete -------------------------------------------------------------------------------
    async def stop(self, sid: str) -> bool:
        rec = self.get(sid)
        if rec.status.is_terminal():
            return False
        self.stop_requested.add(sid)
        handle = self.handles.get(sid)
        if rec.status == JobStatus.RUNNING and handle is not None:
            try:
                await self.supervisors.call(handle, "stop", STOP_GRACE_S)
            except Exception as exc:
                log.warning("stopping job %s: %s", sid, exc)
                self.supervisors.kill(handle)
        elif handle is not None:
            self.supervisors.kill(handle)  # still PENDING: the start call fails and _run records STOPPED
        return True

    async def delete(self, sid: str) -> bool:
        self.get(sid)
        self.table.remove(sid)
        await self.store.delete_job(sid)
        return True

    # --- logs ---------------------------------------------------------------------------------------------
    async def logs(self, sid: str) -> str:
        rec = self.get(sid)
        handle = self.handles.get(sid)
        if handle is not None and not rec.status.is_terminal():
            try:
                data, _ = await self.supervisors.call(handle, "read_logs", 0, LOGS_KEPT_MAX_BYTES)
                return bytes(data).decode(errors="replace")
            except Exception:
                pass
        return (await self.store.load_logs(sid) or b"").decode(errors="replace")

    async def tail(self, sid: str) -> AsyncIterator[str]:
        """The log as it grows, in chunks, until the job has ended and everything was sent."""
        offset = 0
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            rec = self.get(sid)
            if rec.status.is_terminal():  # its logs were kept before it moved
                rest = decoder.decode((await self.store.load_logs(sid) or b"")[offset:], final=True)
                if rest:
                    yield rest
                return
            handle = self.handles.get(sid)
            data = b""
            if handle is not None:
                try:
                    data, next_offset = await self.supervisors.call(handle, "read_logs", offset, _TAIL_CHUNK_BYTES)
                except Exception:
                    data = b""
            if data:
                offset = next_offset
                text = decoder.decode(bytes(data))
                if text:
                    yield text
            else:
                await asyncio.sleep(_TAIL_POLL_S)


def _cause(exc: BaseException) -> BaseException:
    """The user-facing error inside a task/actor error (a RuntimeEnvSetupError raised in start())."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    if isinstance(exc, RuntimeEnvSetupError):
        return exc
    return exc
