"""Helpers for the jobs tests: a cluster with a job server, raw HTTP, waiting, a local wheel."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import zipfile
from typing import Any, Optional

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def http(url: str, method: str, path: str, *, body: Any = None, raw: Optional[bytes] = None,
         token: Optional[str] = None, headers: Optional[dict] = None, timeout_s: float = 30) -> tuple[int, str]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url + path, data=data, method=method, headers=headers or {})
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_status(client: Any, job_id: str, statuses: tuple = TERMINAL, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.get_job_info(job_id)
        if info.status.value in statuses:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {info.status} after {timeout_s} s: {info.message}")
        time.sleep(0.1)


def wait_for(predicate: Any, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def build_wheel(directory: str, name: str, version: str, module_source: str) -> str:
    """A pure-Python wheel holding ``<name>.py`` (no network, no build backend)."""
    dist = f"{name}-{version}"
    path = os.path.join(directory, f"{dist}-py3-none-any.whl")
    files = {
        f"{name}.py": module_source.encode(),
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: ember-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for fname, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{fname},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(path, "w") as zf:
        for fname, data in files.items():
            zf.writestr(fname, data)
    return path
