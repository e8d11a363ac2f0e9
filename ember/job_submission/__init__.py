"""Submitting jobs to a cluster's job server over HTTP (Ray's ``ray.job_submission``).

``JobSubmissionClient(address)`` talks to the job server (``http://127.0.0.1:8265`` by default,
or the local head's, or ``EMBER_JOB_SERVER_ADDRESS`` / ``RAY_API_SERVER_ADDRESS``) with the
cluster token as a bearer token (``EMBER_CLUSTER_TOKEN``, or the local head's token file).
A local ``working_dir`` / ``py_modules`` in ``runtime_env`` is zipped and uploaded once by
content hash before the job is submitted.
"""
from __future__ import annotations

import dataclasses
import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any, AsyncIterator, Optional, Union

from ember.logic import runtime_env as rt
from ember.logic.control.jobs import JobStatus
from ember.shells.control.jobs import tls
from ember.shells.shared.runtime_env import packaging
from ember.shells.wire import session

__all__ = ["JobSubmissionClient", "JobStatus", "JobDetails", "JobType"]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
_TIMEOUT_S = 60.0


class JobType:
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


@dataclasses.dataclass
class JobDetails:
    """A job as the server describes it (Ray's field names)."""

    type: str = JobType.SUBMISSION
    job_id: Optional[str] = None
    submission_id: Optional[str] = None
    driver_info: Optional[dict] = None
    status: JobStatus = JobStatus.PENDING
    entrypoint: str = ""
    message: Optional[str] = None
    error_type: Optional[str] = None
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    metadata: Optional[dict] = None
    runtime_env: Optional[dict] = None
    driver_agent_http_address: Optional[str] = None
    driver_node_id: Optional[str] = None
    driver_exit_code: Optional[int] = None
    entrypoint_num_cpus: Optional[float] = None
    entrypoint_num_gpus: Optional[float] = None
    entrypoint_memory: Optional[int] = None
    entrypoint_resources: Optional[dict] = None

    @classmethod
    def from_json(cls, data: dict) -> "JobDetails":
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in names}
        fields["status"] = JobStatus(fields.get("status", "PENDING"))
        return cls(**fields)


def resolve_address(address: Optional[str]) -> str:
    address = (address or os.environ.get("EMBER_JOB_SERVER_ADDRESS") or os.environ.get("RAY_API_SERVER_ADDRESS")
               or (os.environ.get("RAY_ADDRESS", "") if os.environ.get("RAY_ADDRESS", "").startswith("http") else ""))
    if not address:
        cur = session.read_current_cluster()
        address = (session.read_job_server_url(cur["session_dir"]) if cur else None) or DEFAULT_ADDRESS
    if "://" not in address:
        address = "http://" + address
    return address.rstrip("/")


def find_token() -> Optional[str]:
    try:
        return session.find_token("the job server").decode()
    except ConnectionError:
        return None


class JobSubmissionClient:
    """Ray's client for the jobs REST API."""

    def __init__(self, address: Optional[str] = None, create_cluster_if_needed: bool = False,
                 cookies: Optional[dict] = None, metadata: Optional[dict] = None,
                 headers: Optional[dict] = None, verify: Optional[Union[str, bool]] = True) -> None:
        self._address = resolve_address(address)
        self._headers = dict(headers or {})
        self._default_metadata = dict(metadata or {})
        if cookies:
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if not any(k.lower() == "authorization" for k in self._headers):
            token = find_token()
            if token is None:
                raise ConnectionError(f"no cluster token for the job server at {self._address}: set "
                                      "EMBER_CLUSTER_TOKEN (the head's session directory holds it, file 'token')")
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl: Optional[ssl.SSLContext] = None
        if self._address.startswith("https://"):
            self._ssl = tls.client_context()
            if verify is False:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
            elif isinstance(verify, str):
                self._ssl.load_verify_locations(verify)
        self._request("GET", "/api/version")  # fail now, clearly, when the server is not there

    # --- HTTP ---------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
                 allow_404: bool = False) -> Any:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self._address + path, data=data, method=method, headers=self._headers)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT_S, context=self._ssl) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if allow_404 and exc.code == 404:
                return None
            raise RuntimeError(f"Request failed with status code {exc.code}: {_error_text(exc)}") from None
        except urllib.error.URLError as exc:
            raise ConnectionError(f"Failed to connect to the job server at {self._address}: {exc.reason}. "
                                  "Is the head running with its job server (ember start --head)?") from None
        except (ssl.SSLError, OSError) as exc:  # TLS refused after the handshake, connection reset
            raise ConnectionError(f"Failed to talk to the job server at {self._address}: {exc}") from None

    def get_version(self) -> str:
        return str(self._request("GET", "/api/version")["version"])

    # --- runtime env upload ----------------------------------------------------------------------------
    def _upload(self, path: str, excludes: Optional[list[str]]) -> str:
        if packaging.is_package_uri(path):
            return path
        uri, data = packaging.pack_local(path, excludes)
        name = uri[len("gcs://"):]
        if self._request("GET", f"/api/packages/gcs/{name}", allow_404=True) is None:
            self._request("PUT", f"/api/packages/gcs/{name}", raw=data)
        return uri

    def _upload_runtime_env(self, runtime_env: Optional[dict]) -> dict:
        env = rt.validate(dict(runtime_env) if runtime_env else None)
        excludes = env.pop("excludes", None)
        if env.get("working_dir"):
            env["working_dir"] = self._upload(env["working_dir"], excludes)
        if env.get("py_modules"):
            env["py_modules"] = [self._upload(p, excludes) for p in env["py_modules"]]
        return env

    # --- Ray's methods ----------------------------------------------------------------------------------
    def submit_job(self, *, entrypoint: str, job_id: Optional[str] = None, runtime_env: Optional[dict] = None,
                   metadata: Optional[dict] = None, submission_id: Optional[str] = None,
                   entrypoint_num_cpus: Optional[Union[int, float]] = None,
                   entrypoint_num_gpus: Optional[Union[int, float]] = None,
                   entrypoint_memory: Optional[int] = None,
                   entrypoint_resources: Optional[dict] = None) -> str:
        body: dict[str, Any] = {"entrypoint": entrypoint, "runtime_env": self._upload_runtime_env(runtime_env),
                                "metadata": {**self._default_metadata, **(metadata or {})}}
        if submission_id or job_id:
            body["submission_id"] = submission_id or job_id
        for name, value in (("entrypoint_num_cpus", entrypoint_num_cpus), ("entrypoint_num_gpus", entrypoint_num_gpus),
                            ("entrypoint_memory", entrypoint_memory), ("entrypoint_resources", entrypoint_resources)):
            if value is not None:
                body[name] = value
        return str(self._request("POST", "/api/jobs/", body)["submission_id"])

    def stop_job(self, job_id: str) -> bool:
        return bool(self._request("POST", f"/api/jobs/{job_id}/stop")["stopped"])

    def delete_job(self, job_id: str) -> bool:
        return bool(self._request("DELETE", f"/api/jobs/{job_id}")["deleted"])

    def get_job_info(self, job_id: str) -> JobDetails:
        return JobDetails.from_json(self._request("GET", f"/api/jobs/{job_id}"))

    def list_jobs(self) -> list[JobDetails]:
        return [JobDetails.from_json(j) for j in self._request("GET", "/api/jobs/")]

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def get_job_logs(self, job_id: str) -> str:
        return str(self._request("GET", f"/api/jobs/{job_id}/logs")["logs"])

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's output as it is written, until the job has ended."""
        import aiohttp
        ws_url = "ws" + self._address[len("http"):] + f"/api/jobs/{job_id}/logs/tail"
        async with aiohttp.ClientSession(headers=self._headers) as http:
            async with http.ws_connect(ws_url, ssl=self._ssl if self._ssl is not None else True) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        yield msg.data
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()
        return str(json.loads(raw).get("error", raw.decode(errors="replace")))
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)
