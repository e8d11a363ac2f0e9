"""What every logic module's effects share: a partial matcher for tests.

Effects are frozen, slotted dataclasses named in the imperative (``SpillObject``,
``FreeObject``); each logic module defines its own closed list of them and subclasses
``Effect`` so that tests can write ``SpillObject.match(object_id=x) in effects``.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any


class EffectMatcher:
    """Compares equal to an effect of one type whose named fields have the given values."""

    __slots__ = ("_type", "_fields")

    def __init__(self, effect_type: type, expected: dict[str, Any]) -> None:
        self._type = effect_type
        self._fields = expected

    def __eq__(self, other: object) -> bool:
        return isinstance(other, self._type) and all(
            getattr(other, name) == value for name, value in self._fields.items())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"{self._type.__name__}.match({args})"


class Effect:
    __slots__ = ()

    @classmethod
    def match(cls, **expected: Any) -> Any:
        """A partial matcher: ``SpillObject.match(object_id=b"x") == effect``."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(expected) - names
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        return EffectMatcher(cls, expected)
