"""The control store's actor table: one record per actor and the actor lifecycle.

Rule 1: every state change goes through ``ActorTable._move``, which reads ``TRANSITIONS``;
any other move raises ``InvalidTransition``.  Events that do not fit the actor's current
state (late, duplicate, or from an old incarnation) are peer facts, not bugs: they are
ignored and the story says so.

Rule 2: a record is persisted (``Persist``) and published (``PublishActor``) after every
state change, in that order, so the durable store never lags what callers were told.

Rule 3: only non-DEAD actors hold names.  A DEAD actor frees its name at once.

Diagram (numbers are the edges of ``TRANSITIONS``; 0 is registration)::

   register --0--> DEPENDENCIES_UNREADY --1--> PENDING_CREATION --2--> ALIVE ----9----+
   register --0-------------------------------------^  |    |           |  ^          |
                            |                          |    |           3  4          |
                            |                          |    |           v  |          |
                            |                          |    +---5---> RESTARTING <-+  |
                            7                          8                |  |   6   |  |
                            |                          |               10  +-------+  |
                            v                          v                v             |
                            +------------------------> DEAD <-----------+-------------+

  0  registered; with unready dependencies it waits, else it is scheduled
  1  its creation arguments are ready: ScheduleActor
  2  ``__init__`` finished on the placed worker: the address is published
  3  worker/node died or ray.kill(no_restart=False), restart budget left: ScheduleActor
  4  ``__init__`` finished on the new worker
  5  the worker died during the first ``__init__``, budget left: ScheduleActor
  6  it died again before the restart finished, budget left: ScheduleActor
  7-10  killed, owner/job gone, out of scope, exited, ``__init__`` raised, or no budget

Theory of operation: the shell turns messages into the events below and carries out
the effects.  ``ActorPlaced`` records the worker leased for the actor; the state does not
change until that worker reports ``ActorCreated`` or ``ActorCreationFailed``.  A restart
counts against ``max_restarts`` (-1: no limit) and bumps the incarnation.  Worker-side
events carry the worker id they are about; one that is not the actor's current worker
belongs to an old incarnation and is ignored.  An ``__init__`` that raises kills the actor
without a restart, as in Ray; ``is_init_error_restartable=True`` makes it count as a
restart instead.  At most ``dead_actors_max`` DEAD records are kept, oldest evicted first.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Optional

from ember.logic import fsm
from ember.logic.control.actor_events import (
    ActorCreated, ActorCreationFailed, ActorDependenciesResolved, ActorEvent, ActorExited, ActorSetupFailed,
    ActorKilled, ActorOutOfScope, ActorPlaced, ActorRecord, ActorRegistered, ActorSpec, ActorUnschedulable,
    ActorState, ActorWorkerDied, DeathCause, DeathKind, Effect, JobFinished,
    KillActorWorker, NodeDied, OwnerDied, Persist, PublishActor, Reply, ReplyError,
    ScheduleActor, TableRestored,
)

__all__ = [
    "ActorState", "DeathKind", "DeathCause", "ActorSpec", "ActorRecord", "ActorTable",
    "TRANSITIONS", "ActorRegistered", "ActorDependenciesResolved", "ActorPlaced",
    "ActorCreated", "ActorCreationFailed", "ActorSetupFailed", "ActorWorkerDied", "NodeDied", "ActorKilled",
    "ActorUnschedulable",
    "OwnerDied", "JobFinished", "ActorOutOfScope", "ActorExited", "TableRestored",
    "ScheduleActor", "KillActorWorker", "PublishActor", "Reply", "ReplyError", "Persist",
    "ActorEvent", "Effect", "SNAPSHOT_FORMAT",
]

SNAPSHOT_FORMAT = 1

_S = ActorState
_AWAITING_INIT = (_S.PENDING_CREATION, _S.RESTARTING)  # may hold a worker running __init__


class ActorTable:
    """The control store's brain for actors.  Pure: no I/O, no clock, one thread."""

    def __init__(
        self,
        *,
        is_init_error_restartable: bool = False,
        dead_actors_max: int = 10_000,
        log_entries_max: int = 100_000,
    ) -> None:
        if dead_actors_max < 0:
            raise ValueError(f"dead_actors_max must be >= 0, got {dead_actors_max}")
        self._is_init_error_restartable = is_init_error_restartable
        self._dead_actors_max = dead_actors_max
        self._records: dict[bytes, ActorRecord] = {}
        self._names: dict[tuple[str, str], bytes] = {}  # (namespace, name) -> non-DEAD actor
        self._owned_by: dict[bytes, dict[bytes, None]] = {}  # owner -> non-DEAD, non-detached
        self._dead_ids: deque[bytes] = deque()  # DEAD actors, oldest death first
        self._kill_requested: dict[bytes, str] = {}  # killed with restart: waiting for the worker's death
        self._log = fsm.TransitionLog(log_entries_max)

    # --- entry point ------------------------------------------------------------------

    def handle(self, event: ActorEvent, now: float) -> list[Effect]:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"ActorTable cannot handle {type(event).__name__}")
        return handler(self, event, now)

    # --- queries ------------------------------------------------------------------------

    def get(self, actor_id: bytes) -> Optional[ActorRecord]:
        """A copy of the record (changing it changes nothing here), or None."""
        rec = self._records.get(actor_id)
        return dataclasses.replace(rec) if rec is not None else None

    def lookup_named(self, name: str, namespace: str) -> Optional[bytes]:
        return self._names.get((namespace, name))

    def list_named(self, namespace: Optional[str] = None) -> list[tuple[str, str]]:
        """(namespace, name) of every non-DEAD named actor, in registration order."""
        return [key for key in self._names if namespace is None or key[0] == namespace]

    def list_actors(
        self, filters: Optional[Mapping[str, object]] = None, limit: Optional[int] = None
    ) -> list[ActorRecord]:
        """Copies of the records whose fields equal every filter value, oldest first.

        Keys are ActorSpec or ActorRecord field names; ``state`` also takes a state's name.
        An unknown key or state raises ValueError (bad user input, for an error reply).
        """
        wanted = dict(filters or {})
        unknown = set(wanted) - _FILTER_FIELDS
        if unknown:
            known = sorted(_FILTER_FIELDS)
            raise ValueError(f"unknown actor filter {sorted(unknown)}; known: {known}")
        if isinstance(wanted.get("state"), str):
            try:
                wanted["state"] = ActorState[str(wanted["state"])]
            except KeyError:
                raise ValueError(f"unknown actor state {wanted['state']!r}") from None
        found: list[ActorRecord] = []
        for rec in self._records.values():
            if limit is not None and len(found) >= limit:
                break
            if all(_field_of(rec, key) == value for key, value in wanted.items()):
                found.append(dataclasses.replace(rec))
        return found

    def story(self, actor_id: bytes) -> list[fsm.LogEntry]:
        return self._log.story(actor_id)

    # --- persistence --------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Every record as plain, msgpack-able data."""
        return {
            "format": SNAPSHOT_FORMAT,
            "actors": [_record_to_plain(rec) for rec in self._records.values()],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replace the whole table with a snapshot() (or the Persist records) read back.

        Then feed ``TableRestored`` to reissue scheduling orders lost with the old head.
        """
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unknown actor table snapshot format {data.get('format')!r}")
        if not isinstance(data.get("actors"), list):
            raise ValueError("actor table snapshot has no 'actors' list")
        records: dict[bytes, ActorRecord] = {}
        for item in data["actors"]:
            rec = _record_from_plain(item)
            if rec.actor_id in records:
                raise ValueError(f"actor {rec.actor_id.hex()} appears twice in the snapshot")
            records[rec.actor_id] = rec
        dead = sorted((r for r in records.values() if r.state is _S.DEAD),
                      key=lambda r: r.state_changed_at_s)
        for rec in dead[: max(0, len(dead) - self._dead_actors_max)]:
            del records[rec.actor_id]  # the limit may have shrunk since the snapshot
        self._records, self._names, self._owned_by = records, {}, {}
        self._dead_ids = deque(r.actor_id for r in dead if r.actor_id in records)
        for rec in records.values():
            if rec.state is not _S.DEAD:
                self._index(rec)
        self.check_invariants()

    # --- invariants ---------------------------------------------------------------------

    def check_invariants(self) -> None:
        names: dict[tuple[str, str], bytes] = {}
        owned: dict[bytes, dict[bytes, None]] = {}
        workers: set[bytes] = set()
        for actor_id, rec in self._records.items():
            _check(actor_id == rec.actor_id, f"record keyed {actor_id.hex()} is {_who(rec)}")
            _check_record(rec)
            if rec.state is _S.DEAD:
                continue
            if rec.worker_id is not None:
                _check(rec.worker_id not in workers, f"worker {rec.worker_id.hex()} hosts two")
                workers.add(rec.worker_id)
            if rec.spec.name:
                key = (rec.spec.namespace, rec.spec.name)
                _check(key not in names, f"name {key} held by two live actors")
                names[key] = actor_id
            if not rec.spec.is_detached:
                owned.setdefault(rec.spec.owner_worker_id, {})[actor_id] = None
        _check(names == self._names, "name index out of date")
        _check(owned == self._owned_by, "owner index out of date")
        dead = [a for a, r in self._records.items() if r.state is _S.DEAD]
        _check(sorted(dead) == sorted(self._dead_ids), "dead queue out of date")
        _check(len(dead) <= self._dead_actors_max, "more DEAD records than dead_actors_max")
        _check(all(old is not _S.DEAD for old, _ in TRANSITIONS), "DEAD must be terminal")

    # --- event handlers -------------------------------------------------------------------

    def _on_registered(self, ev: ActorRegistered, now: float) -> list[Effect]:
        spec, cause = ev.spec, ev.cause_id
        problem = _spec_problem(spec)
        existing = self._records.get(spec.actor_id)
        holder = self._names.get((spec.namespace, spec.name)) if spec.name else None
        if problem is None and existing is not None and existing.spec != spec:
            problem = f"actor id {spec.actor_id.hex()} is already registered with another spec"
        if problem is None and existing is None and holder is not None and not ev.get_if_exists:
            problem = (
                f"The actor name {spec.name!r} is already taken in namespace "
                f"{spec.namespace!r}. Pick another name, or pass get_if_exists=True "
                "to get the existing actor."
            )
        if problem is not None:
            self._ignore(spec.actor_id, cause, now, f"registration refused: {problem}")
            return [ReplyError(request_id=ev.request_id, message=problem, cause_id=cause)]
        if existing is not None or holder is not None:
            reply_id = holder if existing is None and holder is not None else spec.actor_id
            note = "duplicate registration" if existing else f"get_if_exists: {reply_id.hex()}"
            self._ignore(spec.actor_id, cause, now, note)
            return [Reply(request_id=ev.request_id, actor_id=reply_id,
                          is_existing=existing is None, cause_id=cause)]
        state = _S.DEPENDENCIES_UNREADY if ev.has_unready_dependencies else _S.PENDING_CREATION
        rec = ActorRecord(spec=spec, state=state, registered_at_s=now, state_changed_at_s=now)
        self._records[spec.actor_id] = rec
        self._index(rec)
        self._log.record(spec.actor_id, None, state, cause, at_s=now, note="registered")
        effects: list[Effect] = [self._persist(rec, cause)]
        if state is _S.PENDING_CREATION:
            effects.append(self._schedule(rec, cause))
        effects.append(self._publish(rec, cause))
        effects.append(Reply(request_id=ev.request_id, actor_id=spec.actor_id,
                             is_existing=False, cause_id=cause))
        return effects

    def _on_dependencies_resolved(self, ev: ActorDependenciesResolved, now: float) -> list[Effect]:
        rec = self._find(ev.actor_id, ev.cause_id, now, "dependencies resolved")
        if rec is None:
            return []
        if rec.state is not _S.DEPENDENCIES_UNREADY:
            self._ignore(rec.actor_id, ev.cause_id, now, "dependencies resolved: duplicate")
            return []
        return self._move(rec, _S.PENDING_CREATION, ev.cause_id, now)

    def _on_placed(self, ev: ActorPlaced, now: float) -> list[Effect]:
        rec = self._records.get(ev.actor_id)
        host = next((r for r in self._records.values()
                     if r.worker_id == ev.worker_id and r.state is not _S.DEAD and r.actor_id != ev.actor_id), None)
        if host is not None:  # a worker hosts one actor: a report that says otherwise is wrong
            self._ignore(ev.actor_id, ev.cause_id, now, f"placed: worker {ev.worker_id.hex()} hosts {_who(host)}")
            return []
        if rec is not None and rec.state in _AWAITING_INIT and rec.worker_id is None:
            rec.node_id, rec.worker_id = ev.node_id, ev.worker_id
            rec.worker_address = ev.worker_address
            note = f"placed on node {ev.node_id.hex()} worker {ev.worker_id.hex()}"
            self._log.record(rec.actor_id, rec.state, rec.state, ev.cause_id, at_s=now, note=note)
            return [self._persist(rec, ev.cause_id)]
        if rec is not None and rec.worker_id == ev.worker_id:
            self._ignore(ev.actor_id, ev.cause_id, now, "placed: duplicate")
            return []
        # Not wanted (unknown, DEAD, ALIVE or already placed): the worker would idle forever.
        self._ignore(ev.actor_id, ev.cause_id, now, f"placed: extra worker {ev.worker_id.hex()}")
        return [KillActorWorker(actor_id=ev.actor_id, node_id=ev.node_id,
                                worker_id=ev.worker_id, cause_id=ev.cause_id)]

    def _on_created(self, ev: ActorCreated, now: float) -> list[Effect]:
        rec = self._find_incarnation(ev.actor_id, ev.worker_id, ev.cause_id, now, "created")
        if rec is None:
            return []
        if rec.state is _S.ALIVE:
            self._ignore(rec.actor_id, ev.cause_id, now, "created: duplicate")
            return []
        return self._move(rec, _S.ALIVE, ev.cause_id, now)

    def _on_creation_failed(self, ev: ActorCreationFailed, now: float) -> list[Effect]:
        rec = self._find_incarnation(ev.actor_id, ev.worker_id, ev.cause_id, now, "init failed")
        if rec is None:
            return []
        if rec.state is _S.ALIVE:
            self._ignore(rec.actor_id, ev.cause_id, now, "init failed: already ALIVE")
            return []
        death = DeathCause(DeathKind.INIT_FAILED, ev.message, ev.error_bytes)
        return self._fail(rec, death, ev.cause_id, now, kill_worker=True,
                          may_restart=self._is_init_error_restartable)

    def _on_setup_failed(self, ev: ActorSetupFailed, now: float) -> list[Effect]:
        """The runtime env failed before any worker was placed: DEAD, no restart (as an __init__ error)."""
        rec = self._records.get(ev.actor_id)
        if rec is None or rec.state not in _AWAITING_INIT or rec.worker_id is not None:
            self._ignore(ev.actor_id, ev.cause_id, now, "setup failed: not waiting for a worker")
            return []
        death = DeathCause(DeathKind.INIT_FAILED, ev.message, ev.error_bytes)
        return self._fail(rec, death, ev.cause_id, now, kill_worker=False, may_restart=False)

    def _on_worker_died(self, ev: ActorWorkerDied, now: float) -> list[Effect]:
        rec = self._find_incarnation(ev.actor_id, ev.worker_id, ev.cause_id, now, "worker died")
        if rec is None:
            return []
        killed = self._kill_requested.get(rec.actor_id)
        if killed is not None:
            death = DeathCause(DeathKind.KILLED, killed)
        else:
            death = DeathCause(DeathKind.WORKER_DIED,
                               f"The actor's worker process died ({ev.exit_detail}).")
        return self._fail(rec, death, ev.cause_id, now, kill_worker=False, may_restart=True)

    def _on_node_died(self, ev: NodeDied, now: float) -> list[Effect]:
        death = DeathCause(DeathKind.NODE_DIED, f"The actor's node {ev.node_id.hex()} died.")
        hit = [r for r in self._records.values()
               if r.state is not _S.DEAD and r.node_id == ev.node_id]
        effects: list[Effect] = []
        for rec in hit:
            effects += self._fail(rec, death, ev.cause_id, now,
                                  kill_worker=False, may_restart=True)
        return effects

    def _on_killed(self, ev: ActorKilled, now: float) -> list[Effect]:
        rec = self._find(ev.actor_id, ev.cause_id, now, "killed")
        if rec is None:
            return []
        death = DeathCause(DeathKind.KILLED, ev.message)
        if ev.no_restart:
            return self._move(rec, _S.DEAD, ev.cause_id, now, death=death, kill_worker=True)
        if rec.worker_id is None or rec.node_id is None:
            self._ignore(rec.actor_id, ev.cause_id, now, "kill with restart: no worker yet")
            return []
        limit = rec.spec.max_restarts
        if limit == -1 or rec.restarts < limit:
            # Restart once the worker's death is reported, never before: a new incarnation placed
            # while the kill is on its way (or held by a partition) would run beside the old one
            # (found by the simulator: actors on 12 nodes, seed 11, a partition).
            self._kill_requested[rec.actor_id] = ev.message
            self._ignore(rec.actor_id, ev.cause_id, now, "kill with restart: restarts when the worker is gone")
            return [KillActorWorker(actor_id=rec.actor_id, node_id=rec.node_id, worker_id=rec.worker_id,
                                    cause_id=ev.cause_id)]
        return self._fail(rec, death, ev.cause_id, now, kill_worker=True, may_restart=True)

    def _on_unschedulable(self, ev: ActorUnschedulable, now: float) -> list[Effect]:
        rec = self._find(ev.actor_id, ev.cause_id, now, "unschedulable")
        if rec is None:
            return []
        if rec.state not in _AWAITING_INIT or rec.worker_id is not None or rec.incarnation != ev.incarnation:
            self._ignore(rec.actor_id, ev.cause_id, now, "unschedulable: not waiting for a worker")
            return []
        death = DeathCause(DeathKind.UNSCHEDULABLE, ev.message)
        return self._move(rec, _S.DEAD, ev.cause_id, now, death=death)

    def _on_owner_died(self, ev: OwnerDied, now: float) -> list[Effect]:
        death = DeathCause(DeathKind.OWNER_DIED, (
            f"The actor's owner (worker {ev.owner_worker_id.hex()}) died. Create the actor "
            "with lifetime='detached' to keep it alive after its owner exits."))
        hit = [self._records[a] for a in self._owned_by.get(ev.owner_worker_id, {})]
        return self._kill_all(hit, death, ev.cause_id, now)

    def _on_job_finished(self, ev: JobFinished, now: float) -> list[Effect]:
        death = DeathCause(DeathKind.OWNER_DIED, (
            f"The actor's job {ev.job_id.hex()} finished; only detached actors outlive "
            "their job."))
        hit = [r for r in self._records.values() if r.state is not _S.DEAD
               and not r.spec.is_detached and r.spec.job_id == ev.job_id]
        return self._kill_all(hit, death, ev.cause_id, now)

    def _on_out_of_scope(self, ev: ActorOutOfScope, now: float) -> list[Effect]:
        rec = self._find(ev.actor_id, ev.cause_id, now, "out of scope")
        if rec is None:
            return []
        if rec.spec.is_detached:
            self._ignore(rec.actor_id, ev.cause_id, now, "out of scope: detached, kept")
            return []
        death = DeathCause(DeathKind.OUT_OF_SCOPE,
                           "All references to the actor went out of scope.")
        return self._move(rec, _S.DEAD, ev.cause_id, now, death=death, kill_worker=True)

    def _on_exited(self, ev: ActorExited, now: float) -> list[Effect]:
        rec = self._find_incarnation(ev.actor_id, ev.worker_id, ev.cause_id, now, "exited")
        if rec is None:
            return []
        death = DeathCause(DeathKind.EXITED, "The actor exited by calling exit_actor().")
        return self._move(rec, _S.DEAD, ev.cause_id, now, death=death)

    def _on_restored(self, ev: TableRestored, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for rec in self._records.values():
            if rec.state in _AWAITING_INIT and rec.worker_id is None:
                self._ignore(rec.actor_id, ev.cause_id, now, "restored: scheduled again")
                effects.append(self._schedule(rec, ev.cause_id))
        return effects

    # --- moves ----------------------------------------------------------------------------

    def _fail(self, rec: ActorRecord, death: DeathCause, cause: str, now: float, *,
              kill_worker: bool, may_restart: bool) -> list[Effect]:
        """Restart ``rec`` if allowed and budget is left, else make it DEAD."""
        limit = rec.spec.max_restarts
        if may_restart and (limit == -1 or rec.restarts < limit):
            return self._move(rec, _S.RESTARTING, cause, now,
                              kill_worker=kill_worker, note=_note(death))
        if may_restart and limit != 0:
            message = f"{death.message} No restarts left (max_restarts={limit})."
            death = dataclasses.replace(death, message=message)
        return self._move(rec, _S.DEAD, cause, now, death=death, kill_worker=kill_worker)

    def _kill_all(self, records: list[ActorRecord], death: DeathCause, cause: str,
                  now: float) -> list[Effect]:
        effects: list[Effect] = []
        for rec in records:
            effects += self._move(rec, _S.DEAD, cause, now, death=death, kill_worker=True)
        return effects

    def _move(self, rec: ActorRecord, to: ActorState, cause: str, now: float, *,
              death: Optional[DeathCause] = None, kill_worker: bool = False,
              note: str = "") -> list[Effect]:
        """The one place where an actor changes state."""
        enter = fsm.lookup(TRANSITIONS, _who(rec), rec.state, to, cause)
        from_state = rec.state
        kill: list[Effect] = []
        if kill_worker and rec.node_id is not None and rec.worker_id is not None:
            kill.append(KillActorWorker(actor_id=rec.actor_id, node_id=rec.node_id,
                                        worker_id=rec.worker_id, cause_id=cause))
        rec.state, rec.state_changed_at_s = to, now
        self._kill_requested.pop(rec.actor_id, None)
        orders = enter(self, rec, cause, death)
        self._log.record(rec.actor_id, from_state, to, cause, at_s=now,
                         note=note or _note(death))
        effects = [self._persist(rec, cause), *kill, *orders, self._publish(rec, cause)]
        if to is _S.DEAD:
            effects += self._evict_dead(cause, now)
        return effects

    def _enter_pending(self, rec: ActorRecord, cause: str,
                       death: Optional[DeathCause]) -> list[Effect]:
        return [self._schedule(rec, cause)]

    def _enter_alive(self, rec: ActorRecord, cause: str,
                     death: Optional[DeathCause]) -> list[Effect]:
        return []

    def _enter_restarting(self, rec: ActorRecord, cause: str,
                          death: Optional[DeathCause]) -> list[Effect]:
        rec.restarts += 1
        rec.node_id = rec.worker_id = rec.worker_address = None
        return [self._schedule(rec, cause)]

    def _enter_dead(self, rec: ActorRecord, cause: str,
                    death: Optional[DeathCause]) -> list[Effect]:
        _check(death is not None, f"{_who(rec)} moved to DEAD without a cause")
        rec.death = death
        rec.node_id = rec.worker_id = rec.worker_address = None
        self._unindex(rec)
        self._dead_ids.append(rec.actor_id)
        return []

    # --- helpers --------------------------------------------------------------------------

    def _find(self, actor_id: bytes, cause: str, now: float, what: str) -> Optional[ActorRecord]:
        """The non-DEAD record, or None (and the ignored event is logged)."""
        rec = self._records.get(actor_id)
        if rec is None or rec.state is _S.DEAD:
            self._ignore(actor_id, cause, now, f"{what}: {'DEAD' if rec else 'unknown'} actor")
            return None
        return rec

    def _find_incarnation(self, actor_id: bytes, worker_id: bytes, cause: str, now: float,
                          what: str) -> Optional[ActorRecord]:
        """The non-DEAD record if ``worker_id`` hosts its current incarnation, else None."""
        rec = self._find(actor_id, cause, now, what)
        if rec is not None and rec.worker_id != worker_id:
            self._ignore(actor_id, cause, now, f"{what}: stale worker {worker_id.hex()}")
            return None
        return rec

    def _ignore(self, actor_id: bytes, cause: str, now: float, note: str) -> None:
        rec = self._records.get(actor_id)
        state = rec.state if rec is not None else None
        self._log.record(actor_id, state, state, cause, at_s=now, note=f"ignored: {note}")

    def _index(self, rec: ActorRecord) -> None:
        if rec.spec.name:
            self._names[(rec.spec.namespace, rec.spec.name)] = rec.actor_id
        if not rec.spec.is_detached:
            self._owned_by.setdefault(rec.spec.owner_worker_id, {})[rec.actor_id] = None

    def _unindex(self, rec: ActorRecord) -> None:
        if rec.spec.name:
            del self._names[(rec.spec.namespace, rec.spec.name)]
        if not rec.spec.is_detached:
            owned = self._owned_by[rec.spec.owner_worker_id]
            del owned[rec.actor_id]
            if not owned:
                del self._owned_by[rec.spec.owner_worker_id]

    def _evict_dead(self, cause: str, now: float) -> list[Effect]:
        effects: list[Effect] = []
        while len(self._dead_ids) > self._dead_actors_max:
            actor_id = self._dead_ids.popleft()
            self._ignore(actor_id, cause, now, "evicted: too many DEAD records")
            del self._records[actor_id]
            effects.append(Persist(actor_id=actor_id, record=None, cause_id=cause))
        return effects

    def _schedule(self, rec: ActorRecord, cause: str) -> ScheduleActor:
        return ScheduleActor(actor_id=rec.actor_id, resources=rec.spec.resources,
                             placement_resources=(rec.spec.placement_resources
                                                  or rec.spec.resources),
                             creation_spec=rec.spec.creation_spec,
                             scheduling_strategy=rec.spec.scheduling_strategy,
                             incarnation=rec.incarnation, cause_id=cause)

    def _publish(self, rec: ActorRecord, cause: str) -> PublishActor:
        address = rec.worker_address if rec.state is _S.ALIVE else None
        return PublishActor(actor_id=rec.actor_id, state=rec.state, address=address,
                            node_id=rec.node_id, incarnation=rec.incarnation,
                            death=rec.death, cause_id=cause)

    def _persist(self, rec: ActorRecord, cause: str) -> Persist:
        return Persist(actor_id=rec.actor_id, record=_record_to_plain(rec), cause_id=cause)


_Enter = Callable[[ActorTable, ActorRecord, str, Optional[DeathCause]], list[Effect]]

# The legal moves; the numbers are the edges of the module docstring's diagram.
TRANSITIONS: dict[tuple[ActorState, ActorState], _Enter] = {
    (_S.DEPENDENCIES_UNREADY, _S.PENDING_CREATION): ActorTable._enter_pending,  # 1
    (_S.PENDING_CREATION, _S.ALIVE): ActorTable._enter_alive,  # 2
    (_S.ALIVE, _S.RESTARTING): ActorTable._enter_restarting,  # 3
    (_S.RESTARTING, _S.ALIVE): ActorTable._enter_alive,  # 4
    (_S.PENDING_CREATION, _S.RESTARTING): ActorTable._enter_restarting,  # 5
    (_S.RESTARTING, _S.RESTARTING): ActorTable._enter_restarting,  # 6
    (_S.DEPENDENCIES_UNREADY, _S.DEAD): ActorTable._enter_dead,  # 7
    (_S.PENDING_CREATION, _S.DEAD): ActorTable._enter_dead,  # 8
    (_S.ALIVE, _S.DEAD): ActorTable._enter_dead,  # 9
    (_S.RESTARTING, _S.DEAD): ActorTable._enter_dead,  # 10
}

_HANDLERS: dict[type, Callable[[ActorTable, Any, float], list[Effect]]] = {
    ActorRegistered: ActorTable._on_registered,
    ActorDependenciesResolved: ActorTable._on_dependencies_resolved,
    ActorPlaced: ActorTable._on_placed,
    ActorCreated: ActorTable._on_created,
    ActorCreationFailed: ActorTable._on_creation_failed,
    ActorWorkerDied: ActorTable._on_worker_died,
    NodeDied: ActorTable._on_node_died,
    ActorKilled: ActorTable._on_killed,
    ActorUnschedulable: ActorTable._on_unschedulable,
    OwnerDied: ActorTable._on_owner_died,
    JobFinished: ActorTable._on_job_finished,
    ActorOutOfScope: ActorTable._on_out_of_scope,
    ActorExited: ActorTable._on_exited,
    TableRestored: ActorTable._on_restored,
    ActorSetupFailed: ActorTable._on_setup_failed,
}

_SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(ActorSpec))
_OPTIONAL_SPEC_FIELDS = frozenset({"placement_resources"})  # added later: older records lack it
_RECORD_FIELDS = ("state", "restarts", "node_id", "worker_id", "worker_address",
                  "registered_at_s", "state_changed_at_s")
_FILTER_FIELDS = frozenset(_SPEC_FIELDS + _RECORD_FIELDS)


def _field_of(rec: ActorRecord, key: str) -> object:
    return getattr(rec.spec, key) if key in _SPEC_FIELDS else getattr(rec, key)


def _spec_problem(spec: ActorSpec) -> Optional[str]:
    if not spec.actor_id:
        return "actor_id must not be empty"
    if spec.max_restarts < -1:
        return f"max_restarts must be -1 (no limit) or >= 0, got {spec.max_restarts}"
    negative = sorted(k for shape in (spec.resources, spec.placement_resources)
                      for k, v in shape.items() if v < 0)
    if negative:
        return f"resource amounts must not be negative: {negative}"
    return None


def _record_to_plain(rec: ActorRecord) -> dict[str, object]:
    plain: dict[str, object] = {name: getattr(rec.spec, name) for name in _SPEC_FIELDS}
    plain["resources"] = dict(rec.spec.resources)
    plain["placement_resources"] = dict(rec.spec.placement_resources)
    plain.update({name: getattr(rec, name) for name in _RECORD_FIELDS})
    plain["state"] = rec.state.name
    death = rec.death
    plain["death"] = None if death is None else {
        "kind": death.kind.name, "message": death.message, "error_bytes": death.error_bytes}
    return plain


def _record_from_plain(plain: Mapping[str, Any]) -> ActorRecord:
    try:
        spec = ActorSpec(**{name: plain[name] for name in _SPEC_FIELDS
                            if name in plain or name not in _OPTIONAL_SPEC_FIELDS})
        raw_death = plain["death"]
        death = None if raw_death is None else DeathCause(
            DeathKind[raw_death["kind"]], raw_death["message"], raw_death["error_bytes"])
        runtime = {name: plain[name] for name in _RECORD_FIELDS}
        runtime["state"] = ActorState[runtime["state"]]
        return ActorRecord(spec=spec, death=death, **runtime)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"malformed actor record in snapshot: {error!r}") from None


def _check_record(rec: ActorRecord) -> None:
    limit = rec.spec.max_restarts
    _check(limit == -1 or rec.restarts <= limit, f"{_who(rec)} restarted {rec.restarts} times")
    placed = {rec.node_id is None, rec.worker_id is None, rec.worker_address is None}
    _check(len(placed) == 1, f"{_who(rec)} has a partial placement")
    _check((rec.death is None) == (rec.state is not _S.DEAD), f"{_who(rec)} death != DEAD")
    if rec.state is _S.ALIVE:
        _check(rec.worker_id is not None, f"ALIVE {_who(rec)} has no worker")
    if rec.state in (_S.DEAD, _S.DEPENDENCIES_UNREADY):
        _check(rec.worker_id is None, f"{rec.state.name} {_who(rec)} holds a worker")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"ActorTable invariant broken: {message}")


def _who(rec: ActorRecord) -> str:
    return f"actor {rec.actor_id.hex()}"


def _note(death: Optional[DeathCause]) -> str:
    return "" if death is None else f"{death.kind.name}: {death.message}"
