"""Shared pieces for the table-driven state machines in ``ember.logic``.

Rule 1: the legal moves of a machine live in one dict, ``TRANSITIONS[(FROM, TO)] = value``
(usually the method that performs the move).  ``lookup`` is the only way to read it, so
every illegal move raises ``InvalidTransition`` naming the object, both states and the
cause.

Rule 2: every logic class keeps a bounded ``TransitionLog`` and answers ``story(key)``
from it: the moves of one object, oldest first, each with the cause id of the event that
made it.  Events that were looked at and ignored (stale, duplicate) are logged too, as a
move from a state to itself with a note, so "why did nothing happen?" has an answer.

Pure: no clocks, threads or I/O.  Times come in as arguments.
"""
from __future__ import annotations

import enum
from collections import deque
from collections.abc import Hashable, Mapping
from typing import NamedTuple, Optional, TypeVar

__all__ = ["InvalidTransition", "LogEntry", "TransitionLog", "lookup"]

_State = TypeVar("_State", bound=enum.Enum)
_Value = TypeVar("_Value")


class InvalidTransition(Exception):
    """A state machine was asked for a move that its TRANSITIONS table does not hold."""

    def __init__(
        self,
        obj: str,
        from_state: Optional[enum.Enum],
        to_state: enum.Enum,
        cause_id: str,
    ) -> None:
        self.obj = obj
        self.from_state = from_state
        self.to_state = to_state
        self.cause_id = cause_id
        from_name = from_state.name if from_state is not None else "<new>"
        super().__init__(
            f"{obj}: no transition {from_name} -> {to_state.name} (cause {cause_id!r})"
        )


class LogEntry(NamedTuple):
    """One line of a story: ``key`` moved ``from_state -> to_state`` because of ``cause_id``."""

    key: Hashable
    from_state: Optional[enum.Enum]
    to_state: Optional[enum.Enum]
    cause_id: str
    at_s: Optional[float]
    note: str


class TransitionLog:
    """The last ``maxlen`` transitions of every object of one machine, oldest first."""

    def __init__(self, maxlen: int) -> None:
        if maxlen <= 0:
            raise ValueError(f"maxlen must be positive, got {maxlen}")
        self._entries: deque[LogEntry] = deque(maxlen=maxlen)

    def record(
        self,
        key: Hashable,
        from_state: Optional[enum.Enum],
        to_state: Optional[enum.Enum],
        cause_id: str,
        *,
        at_s: Optional[float] = None,
        note: str = "",
    ) -> None:
        self._entries.append(LogEntry(key, from_state, to_state, cause_id, at_s, note))

    def story(self, key: Hashable) -> list[LogEntry]:
        """Every entry still held for ``key``, oldest first."""
        return [entry for entry in self._entries if entry.key == key]

    def __len__(self) -> int:
        return len(self._entries)


def lookup(
    table: Mapping[tuple[_State, _State], _Value],
    obj: str,
    from_state: _State,
    to_state: _State,
    cause_id: str,
) -> _Value:
    """Return ``table[(from_state, to_state)]``, or raise ``InvalidTransition``."""
    try:
        return table[(from_state, to_state)]
    except KeyError:
        raise InvalidTransition(obj, from_state, to_state, cause_id) from None
