"""The actor table's vocabulary: states, specs, records, events (facts), effects (orders).

Split out of ``actors.py`` (which re-exports every name here) to keep modules small; the
lifecycle rules and the transition diagram live in ``actors.py``.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, Union

__all__ = [
    "ActorState", "DeathKind", "DeathCause", "ActorSpec", "ActorRecord", "ActorRegistered",
    "ActorDependenciesResolved", "ActorPlaced", "ActorCreated", "ActorCreationFailed",
    "ActorWorkerDied", "NodeDied", "ActorKilled", "OwnerDied", "JobFinished",
    "ActorOutOfScope", "ActorExited", "TableRestored", "ScheduleActor", "KillActorWorker",
    "PublishActor", "Reply", "ReplyError", "Persist", "ActorEvent", "Effect",
]


class ActorState(enum.Enum):
    DEPENDENCIES_UNREADY = "DEPENDENCIES_UNREADY"
    PENDING_CREATION = "PENDING_CREATION"
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"


class DeathKind(enum.Enum):
    INIT_FAILED = "INIT_FAILED"
    WORKER_DIED = "WORKER_DIED"
    NODE_DIED = "NODE_DIED"
    KILLED = "KILLED"
    OWNER_DIED = "OWNER_DIED"
    OUT_OF_SCOPE = "OUT_OF_SCOPE"
    EXITED = "EXITED"
    UNSCHEDULABLE = "UNSCHEDULABLE"   # no node can ever host it (hard node affinity to a dead node)


@dataclass(frozen=True, slots=True)
class DeathCause:
    kind: DeathKind
    message: str
    error_bytes: Optional[bytes] = None  # the serialized exception, for INIT_FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorSpec:
    """What the owner registers; never changed by the table."""

    actor_id: bytes
    job_id: bytes
    owner_address: str
    owner_worker_id: bytes
    class_name: str
    creation_spec: bytes  # opaque to the control store, handed to the worker untouched
    name: str = ""  # "" = unnamed
    namespace: str = ""
    is_detached: bool = False
    resources: Mapping[str, float] = field(default_factory=dict)  # held while it lives
    scheduling_strategy: object = None  # plain (msgpack-able) data, passed through
    max_restarts: int = 0  # -1 = no limit
    # What must be free on a node to place it (Ray: 1 CPU by default while 0 are held);
    # empty means the same as ``resources``.
    placement_resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class ActorRecord:
    spec: ActorSpec
    state: ActorState
    restarts: int = 0
    node_id: Optional[bytes] = None  # where the current incarnation was placed
    worker_id: Optional[bytes] = None
    worker_address: Optional[str] = None
    death: Optional[DeathCause] = None  # set exactly when DEAD
    registered_at_s: float = 0.0
    state_changed_at_s: float = 0.0

    @property
    def actor_id(self) -> bytes:
        return self.spec.actor_id

    @property
    def incarnation(self) -> int:
        """0 for the first creation, +1 per restart (every restart is counted)."""
        return self.restarts


# --- events (facts) and effects (orders) ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorRegistered:
    spec: ActorSpec
    request_id: int  # the shell's id for the pending reply
    get_if_exists: bool = False
    has_unready_dependencies: bool = False
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorDependenciesResolved:
    actor_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorPlaced:
    actor_id: bytes
    node_id: bytes
    worker_address: str
    worker_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorCreated:
    actor_id: bytes
    worker_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorCreationFailed:
    actor_id: bytes
    worker_id: bytes
    message: str
    error_bytes: Optional[bytes] = None
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorSetupFailed:
    """No worker could be started for the actor: its runtime env could not be set up."""
    actor_id: bytes
    message: str
    error_bytes: Optional[bytes] = None
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorWorkerDied:
    actor_id: bytes
    worker_id: bytes
    exit_detail: str
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDied:
    node_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorUnschedulable:
    """Placing the actor's incarnation failed for good (a node daemon said it can never run)."""
    actor_id: bytes
    incarnation: int
    message: str
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorKilled:
    actor_id: bytes
    no_restart: bool
    cause_id: str
    message: str = "The actor was killed by ray.kill()."  # placement-group removal says so


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerDied:
    owner_worker_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFinished:
    job_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorOutOfScope:
    actor_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorExited:
    actor_id: bytes
    worker_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TableRestored:
    """The table was just restored from storage: reissue lost scheduling orders."""

    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleActor:
    actor_id: bytes
    resources: Mapping[str, float]
    placement_resources: Mapping[str, float]
    creation_spec: bytes
    scheduling_strategy: object
    incarnation: int
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KillActorWorker:
    actor_id: bytes
    node_id: bytes
    worker_id: bytes
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishActor:
    actor_id: bytes
    state: ActorState
    address: Optional[str]  # the worker's address while ALIVE, else None
    node_id: Optional[bytes]
    incarnation: int
    death: Optional[DeathCause]
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    request_id: int
    actor_id: bytes
    is_existing: bool  # True: get_if_exists found another live actor with the name
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyError:
    request_id: int
    message: str
    cause_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Persist:
    actor_id: bytes
    record: Optional[dict[str, object]]  # plain data (as in snapshot()); None = delete
    cause_id: str


ActorEvent = Union[
    ActorRegistered, ActorDependenciesResolved, ActorPlaced, ActorCreated,
    ActorCreationFailed, ActorWorkerDied, NodeDied, ActorKilled, OwnerDied, JobFinished,
    ActorOutOfScope, ActorExited, TableRestored, ActorSetupFailed, ActorUnschedulable,
]
Effect = Union[ScheduleActor, KillActorWorker, PublishActor, Reply, ReplyError, Persist]
