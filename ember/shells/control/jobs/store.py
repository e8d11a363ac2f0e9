"""Job records, uploaded packages and finished jobs' logs, kept in the control store's KV table.

Everything the job server knows lives here rather than in its memory, so a restarted job
server (or, once the head has durable storage, a restarted head) finds every job again.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from ember.logic.control.jobs import JobRecord
from ember.protocol import messages as m
from ember.shells.shared.runtime_env import packaging
from ember.shells.wire import rpc

NS_JOBS = "_ember_jobs"
NS_PACKAGES = packaging.KV_NAMESPACE
NS_LOGS = "_ember_job_logs"
_TIMEOUT_S = 30.0


class _NoCalls:
    def handle_message(self, conn: rpc.Connection, kind: int, request_id: int, msg: Any) -> None:
        return None

    def connection_lost(self, conn: rpc.Connection) -> None:
        return None


class JobStore:
    def __init__(self, gcs_address: str, token: bytes) -> None:
        self._address = gcs_address
        self._token = token
        self._conn: Optional[rpc.Connection] = None

    async def _request(self, msg: Any) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = await rpc.connect(self._address, self._token, _NoCalls(), "client", _TIMEOUT_S)
        return await self._conn.request(msg, timeout_s=_TIMEOUT_S)

    async def _put(self, ns: str, key: str, value: bytes, overwrite: bool = True) -> bool:
        reply = await self._request(m.KvPut(ns, key.encode(), value, overwrite))
        return bool(reply.value == b"1")

    async def _get(self, ns: str, key: str) -> Optional[bytes]:
        value = (await self._request(m.KvGet(ns, key.encode()))).value
        return bytes(value) if value is not None else None

    async def save_job(self, rec: JobRecord) -> None:
        await self._put(NS_JOBS, rec.submission_id, json.dumps(rec.to_json()).encode())

    async def load_jobs(self) -> list[JobRecord]:
        keys = (await self._request(m.KvKeys(NS_JOBS, b""))).keys
        out = []
        for key in keys:
            raw = await self._get(NS_JOBS, bytes(key).decode())
            if raw is not None:
                out.append(JobRecord.from_json(json.loads(raw)))
        return out

    async def delete_job(self, submission_id: str) -> None:
        await self._request(m.KvDel(NS_JOBS, submission_id.encode()))
        await self._request(m.KvDel(NS_LOGS, submission_id.encode()))

    async def put_package(self, uri: str, data: bytes) -> bool:
        return await self._put(NS_PACKAGES, uri, data, overwrite=False)

    async def get_package(self, uri: str) -> Optional[bytes]:
        return await self._get(NS_PACKAGES, uri)

    async def has_package(self, uri: str) -> bool:
        keys = (await self._request(m.KvKeys(NS_PACKAGES, uri.encode()))).keys
        return uri.encode() in [bytes(k) for k in keys]

    async def save_logs(self, submission_id: str, data: bytes) -> None:
        await self._put(NS_LOGS, submission_id, data)

    async def load_logs(self, submission_id: str) -> Optional[bytes]:
        return await self._get(NS_LOGS, submission_id)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
