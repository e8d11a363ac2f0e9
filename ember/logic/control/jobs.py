"""The submitted-job table: request validation, job records and the job status machine.

Theory of operation: the job server parses every HTTP body with ``parse_submit`` (bad input
becomes ``JobRequestError``, which the shell answers with 400), keeps one ``JobRecord`` per
submission id in a ``JobTable``, and moves it only through ``JobTable.move``.  Records are
plain JSON (``to_json``/``from_json``) so the shell can keep them in the control store's
KV table, where they outlive the job server process.

The status machine (Ray's ``JobStatus``)::

      (1)           (2)
    PENDING ----> RUNNING ----> SUCCEEDED (3)
      |  \\           |  \\
      |   \\(5)       |   `---> FAILED (4)
      |    `-------> FAILED
      | (6)          | (7)
      `----------> STOPPED <---'

    1 the supervisor started the entrypoint     2 (unused: PENDING never skips RUNNING to succeed)
    3 the entrypoint exited 0                   4 it exited non-zero or the supervisor died
    5 the supervisor or runtime env failed       6, 7 stop requested

Pure: no clocks or I/O; times come in as ``now`` (seconds since the epoch, from the shell).
"""
from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, Optional

from ember.logic.fsm import TransitionLog, lookup


class JobStatus(str, enum.Enum):
    """Ray's job states; a ``str`` so ``status == "RUNNING"`` reads as in Ray."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    def is_terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


S = JobStatus
TRANSITIONS: dict[tuple[JobStatus, JobStatus], str] = {
    (S.PENDING, S.RUNNING): "started",            # 1
    (S.RUNNING, S.SUCCEEDED): "exited 0",         # 3
    (S.RUNNING, S.FAILED): "exited non-zero",     # 4
    (S.PENDING, S.FAILED): "could not start",     # 5
    (S.PENDING, S.STOPPED): "stopped",            # 6
    (S.RUNNING, S.STOPPED): "stopped",            # 7
}

_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_RESOURCE_FIELDS = ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory")
_KNOWN_FIELDS = {"entrypoint", "submission_id", "job_id", "runtime_env", "metadata", "entrypoint_resources",
                 *_RESOURCE_FIELDS}
ENTRYPOINT_MAX_CHARS = 64 * 1024


class JobRequestError(ValueError):
    """A submitted job request that cannot be accepted (answered with HTTP 400)."""


@dataclasses.dataclass
class JobRecord:
    """One submitted job; field names are Ray's ``JobDetails``."""

    submission_id: str
    entrypoint: str
    status: JobStatus = S.PENDING
    message: str = "Job has not started yet."
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    runtime_env: dict[str, Any] = dataclasses.field(default_factory=dict)
    entrypoint_num_cpus: float = 0.0
    entrypoint_num_gpus: float = 0.0
    entrypoint_memory: int = 0
    entrypoint_resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    start_time: Optional[int] = None        # ms since the epoch, as Ray
    end_time: Optional[int] = None
    driver_exit_code: Optional[int] = None
    driver_node_id: Optional[str] = None
    driver_info: Optional[dict[str, Any]] = None   # {"node_ip_address", "pid"} of the entrypoint
    error_type: Optional[str] = None
    type: str = "SUBMISSION"

    @property
    def job_id(self) -> str:
        return self.submission_id

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        out["job_id"] = self.submission_id
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in names}
        fields["status"] = JobStatus(fields.get("status", "PENDING"))
        return cls(**fields)


def _number(body: dict[str, Any], name: str) -> float:
    value = body.get(name)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise JobRequestError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _check_dict(body: dict[str, Any], name: str, *, values_are: tuple[type, ...]) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise JobRequestError(f"{name} must be a JSON object with string keys, got {type(value).__name__}")
    bad = [k for k, v in value.items() if not isinstance(v, values_are) or isinstance(v, bool)]
    if bad:
        raise JobRequestError(f"{name}[{bad[0]!r}] must be a {' or '.join(t.__name__ for t in values_are)}")
    return dict(value)


def parse_submit(body: Any, new_id: str) -> JobRecord:
    """A ``POST /api/jobs/`` body (already JSON-decoded) -> a PENDING record, or JobRequestError."""
    if not isinstance(body, dict):
        raise JobRequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    # Fields of newer Ray clients that they send as null are ignored; set ones are refused.
    unknown = sorted(k for k in set(body) - _KNOWN_FIELDS if body[k] is not None)
    if unknown:
        raise JobRequestError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN_FIELDS))}")
    entrypoint = body.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise JobRequestError("entrypoint must be a non-empty string (the shell command to run)")
    if len(entrypoint) > ENTRYPOINT_MAX_CHARS:
        raise JobRequestError(f"entrypoint is longer than {ENTRYPOINT_MAX_CHARS} characters")
    submission_id = body.get("submission_id") or body.get("job_id") or new_id
    if not isinstance(submission_id, str) or not _ID_RE.match(submission_id):
        raise JobRequestError("submission_id must be 1-128 characters of letters, digits, '_', '-' or '.'")
    runtime_env = body.get("runtime_env")
    runtime_env = {} if runtime_env is None else runtime_env
    if not isinstance(runtime_env, dict):
        raise JobRequestError("runtime_env must be a JSON object")
    metadata = _check_dict(body, "metadata", values_are=(str,))
    resources = _check_dict(body, "entrypoint_resources", values_are=(int, float))
    if any(k in ("CPU", "GPU", "memory") for k in resources):
        raise JobRequestError("use entrypoint_num_cpus / entrypoint_num_gpus / entrypoint_memory, "
                              "not CPU/GPU/memory in entrypoint_resources")
    if any(v < 0 for v in resources.values()):
        raise JobRequestError("entrypoint_resources values must be non-negative")
    return JobRecord(submission_id=submission_id, entrypoint=entrypoint, metadata=metadata,
                     runtime_env=dict(runtime_env),
                     entrypoint_num_cpus=_number(body, "entrypoint_num_cpus"),
                     entrypoint_num_gpus=_number(body, "entrypoint_num_gpus"),
                     entrypoint_memory=int(_number(body, "entrypoint_memory")),
                     entrypoint_resources={k: float(v) for k, v in resources.items()})


class JobTable:
    """Every job this server knows, by submission id; moves go through ``TRANSITIONS``."""

    def __init__(self, log_max: int = 10_000) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.log = TransitionLog(log_max)

    def add(self, record: JobRecord, now_s: float, cause_id: str) -> None:
        if record.submission_id in self.jobs:
            raise JobRequestError(f"Job with submission_id {record.submission_id} already exists. "
                                  "Please use a different submission_id.")
        record.start_time = int(now_s * 1000)
        self.jobs[record.submission_id] = record
        self.log.record(record.submission_id, None, record.status, cause_id, at_s=now_s)

    def load(self, record: JobRecord) -> None:
        """Adopt a record read back from storage (a restarted job server)."""
        self.jobs[record.submission_id] = record

    def move(self, submission_id: str, to: JobStatus, now_s: float, cause_id: str, *, message: str = "",
             exit_code: Optional[int] = None, error_type: Optional[str] = None) -> bool:
        """Move a job; a job already terminal ignores the event (logged) and returns False."""
        rec = self.jobs[submission_id]
        if rec.status.is_terminal():
            self.log.record(submission_id, rec.status, rec.status, cause_id, at_s=now_s,
                            note=f"ignored {to.value}: already terminal")
            return False
        lookup(TRANSITIONS, f"job {submission_id}", rec.status, to, cause_id)
        self.log.record(submission_id, rec.status, to, cause_id, at_s=now_s)
        rec.status = to
        if message:
            rec.message = message
        if exit_code is not None:
            rec.driver_exit_code = exit_code
        if error_type is not None:
            rec.error_type = error_type
        if to.is_terminal():
            rec.end_time = int(now_s * 1000)
        return True

    def remove(self, submission_id: str) -> JobRecord:
        rec = self.jobs[submission_id]
        if not rec.status.is_terminal():
            raise JobRequestError(f"Job {submission_id} is {rec.status.value}; stop it before deleting it "
                                  "(only jobs in a terminal state can be deleted)")
        return self.jobs.pop(submission_id)

    def story(self, submission_id: str) -> list[Any]:
        return self.log.story(submission_id)

    def check_invariants(self) -> None:
        for sid, rec in self.jobs.items():
            assert sid == rec.submission_id, (sid, rec.submission_id)
            assert rec.status.is_terminal() == (rec.end_time is not None), rec


def failure_message(exit_code: int, tail: str) -> str:
    """The FAILED message of a driver that exited non-zero: its code and the last lines it printed."""
    how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exit code {exit_code}"
    tail = tail.rstrip()
    if not tail:
        return f"Job entrypoint command failed with {how}. It printed nothing."
    return f"Job entrypoint command failed with {how}. Last available logs (truncated to 20,000 chars):\n{tail}"
