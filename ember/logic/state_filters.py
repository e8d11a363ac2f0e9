"""The one filter rule of the state API (``filters=[("state", "=", "ALIVE")]``), as Ray applies it.

Rule 1: the predicates are "=" and "!="; any other is a ValueError naming them.
Rule 2: an id held as bytes is compared as its hex string (ids travel as hex in rows and filters).
Rule 3: state-like columns ("state", "status") compare case-insensitively ("alive" finds ALIVE);
        everything else compares exactly.
"""
from __future__ import annotations

from typing import Any

PREDICATES = ("=", "!=")
_CASELESS_KEYS = frozenset({"state", "status"})


def check_predicate(op: str) -> None:
    if op not in PREDICATES:
        raise ValueError(f"unsupported filter predicate {op!r}: use '=' or '!='")


def matches(row: dict[str, Any], key: str, op: str, value: Any) -> bool:
    check_predicate(op)
    have = row.get(key)
    if isinstance(have, bytes) and isinstance(value, str):
        have = have.hex()
    same = have == value or (key in _CASELESS_KEYS and isinstance(have, str) and isinstance(value, str)
                             and have.upper() == value.upper())
    return same if op == "=" else not same
