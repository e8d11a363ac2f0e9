"""Ray-shaped serialization helpers: ``ray.util.register_serializer`` and friends.

``register_serializer``/``deregister_serializer`` are process-local, as in Ray:
call them in every process that pickles or unpickles the class (for example at the
top of a task or in an actor's ``__init__``).

``inspect_serializability`` walks an object that fails to pickle and prints a tree
of the parts that fail, down to ``depth`` levels, then returns
``(is_serializable, set_of_FailureTuple)``.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any, Callable, NamedTuple, Optional, TextIO

from ember.shells.shared import serialization as _ser

__all__ = [
    "register_serializer",
    "deregister_serializer",
    "inspect_serializability",
    "FailureTuple",
]

_RULE = "=" * 72


def register_serializer(cls: type, *, serializer: Callable[[Any], Any],
                        deserializer: Callable[[Any], Any]) -> None:
    """Pickle instances of ``cls`` as ``deserializer(serializer(obj))``.

    Both callables must be picklable themselves (cloudpickle pickles lambdas and
    local functions by value).  The registration only affects this process.
    """
    _ser.register_serializer(cls, serializer=serializer, deserializer=deserializer)


def deregister_serializer(cls: type) -> None:
    """Undo ``register_serializer`` for ``cls`` in this process."""
    _ser.deregister_serializer(cls)


class FailureTuple(NamedTuple):
    """One part found not to be serializable: the object, its name, its parent."""

    obj: Any
    name: str
    parent: Any

    def __repr__(self) -> str:
        return f"FailTuple({self.name} [obj={self.obj!r}, parent={self.parent!r}])"

    def __hash__(self) -> int:
        return hash((id(self.obj), self.name, id(self.parent)))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FailureTuple) and self.obj is other.obj
                and self.name == other.name and self.parent is other.parent)


class _Printer:
    def __init__(self, file: Optional[TextIO]) -> None:
        self._file = file
        self.indent = 0

    def line(self, text: str = "") -> None:
        print("    " * self.indent + text, file=self._file if self._file is not None else sys.stdout)


def _plural(kind: str, count: int) -> str:
    return f"{count} {kind}{'' if count == 1 else 's'}"


def _inspect(obj: Any, name: str, depth: int, parent: Any,
             failures: set[FailureTuple], printer: _Printer) -> bool:
    error = _ser.pickle_error(obj)
    if error is None:
        return True
    printer.line(f"!!! FAIL serialization: {error}")
    found_child = False
    if depth > 0:
        groups: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for kind, child_name, child in _ser.children_of(obj):
            groups[kind].append((child_name, child))
        for kind, members in groups.items():
            printer.line(f"Detected {_plural(kind, len(members))}. Checking serializability...")
            printer.indent += 1
            for child_name, child in members:
                if _ser.pickle_error(child) is None:
                    continue
                printer.line(f"Serializing {child_name!r} {_ser.short_repr(child)}...")
                found_child = True
                _inspect(child, child_name, depth - 1, obj, failures, printer)
            printer.indent -= 1
    if not found_child:
        failures.add(FailureTuple(obj, name, parent))
    return False


def inspect_serializability(base_obj: Any, name: Optional[str] = None, depth: int = 3,
                            print_file: Optional[Any] = None) -> tuple[bool, set[FailureTuple]]:
    """Find what prevents ``base_obj`` from being serialized.

    Prints a readable tree to ``print_file`` (stdout by default) and returns
    ``(True, set())`` if the object serializes, else ``(False, failures)`` where
    each failure is a ``FailureTuple(obj, name, parent)`` for a deepest failing part.
    """
    printer = _Printer(print_file)
    if name is None:
        name = _ser.short_repr(base_obj)
    printer.line(_RULE)
    printer.line(f"Checking Serializability of {name}")
    printer.line(_RULE)
    failures: set[FailureTuple] = set()
    is_serializable = _inspect(base_obj, name, depth, None, failures, printer)
    if is_serializable:
        printer.line(f"{name} is serializable.")
        printer.line(_RULE)
        return True, failures
    printer.line(_RULE)
    printer.line("Variable:" if len(failures) == 1 else "Variables:")
    printer.line()
    for failure in sorted(failures, key=lambda f: f.name):
        printer.line(f"    {failure!r}")
    printer.line()
    printer.line("was found to be non-serializable. Other non-serializable parts may remain")
    printer.line("undetected below the inspection depth. Consider removing these objects, or")
    printer.line("creating them inside the function/class that uses them instead of capturing them.")
    printer.line(_RULE)
    return False, failures
