"""Message <-> bytes.  Every wire message is a dataclass registered with a stable tag.

A frame's payload is msgpack ``[kind, request_id, message]``; a message (at the top or
nested anywhere inside another message's fields) is a msgpack ext value whose type code
is the message's tag and whose data is the msgpack list of its fields in order.
Unknown tags, wrong field counts and wrong field types raise ``ProtocolError``: nothing
past this module ever sees a raw dict.
"""
from __future__ import annotations

import dataclasses
import struct
import types
import typing
from typing import Any, Callable, TypeVar

import msgpack

from ember.protocol.framing import ProtocolError

KIND_REQUEST = 0
KIND_REPLY = 1
KIND_ERROR = 2
KIND_ONEWAY = 3

_REGISTRY: dict[int, type] = {}
_FIELDS: dict[type, tuple[str, ...]] = {}
_CHECKS: dict[type, tuple[tuple[type, ...] | None, ...]] = {}

T = TypeVar("T")

_SIMPLE = {bytes: (bytes,), str: (str,), int: (int,), float: (float, int), bool: (bool,),
           list: (list, tuple), dict: (dict,), tuple: (list, tuple)}


def _allowed_types(annotation: Any) -> tuple[type, ...] | None:
    """The isinstance() check for one field, or None when any value is accepted."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        parts: list[type] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                parts.append(type(None))
                continue
            allowed = _allowed_types(arg)
            if allowed is None:
                return None
            parts.extend(allowed)
        return tuple(parts)
    if origin is not None:
        annotation = origin
    if annotation in _SIMPLE:
        return _SIMPLE[annotation]
    if isinstance(annotation, type) and annotation in _FIELDS:
        return (annotation,)
    return None


_EXTENDED = 127  # msgpack extension code that carries a two-byte tag
_TAG16 = struct.Struct("<H")


def message(tag: int) -> Callable[[type[T]], type[T]]:
    """Class decorator: a frozen, slotted dataclass registered under ``tag`` (1..126, 128..65535).

    Tags below 127 are msgpack extension codes of their own; larger tags travel under the
    extension code 127 with the tag in the first two bytes of the payload (little-endian).
    """

    def wrap(cls: type[T]) -> type[T]:
        if not (0 < tag < _EXTENDED or _EXTENDED < tag <= 0xFFFF):
            raise ValueError(f"tag {tag} out of range")
        if tag in _REGISTRY:
            raise ValueError(f"tag {tag} used by {_REGISTRY[tag].__name__} and {cls.__name__}")
        dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
        _REGISTRY[tag] = dc
        _FIELDS[dc] = tuple(f.name for f in dataclasses.fields(dc))
        dc._tag = tag  # type: ignore[attr-defined]
        return dc

    return wrap


def _field_checks(cls: type) -> tuple[tuple[type, ...] | None, ...]:
    """The per-field isinstance() checks of a message class, computed on first decode
    (evaluating annotations at import would slow every process's start)."""
    hints = typing.get_type_hints(cls)
    checks = tuple(_allowed_types(hints[n]) for n in _FIELDS[cls])
    _CHECKS[cls] = checks
    return checks


def _default(obj: Any) -> Any:
    tag = getattr(obj, "_tag", None)
    if tag is None:
        raise TypeError(f"cannot encode {type(obj).__name__} on the wire")
    fields = [getattr(obj, name) for name in _FIELDS[type(obj)]]
    if tag < _EXTENDED:
        return msgpack.ExtType(tag, _packer().pack(fields))
    return msgpack.ExtType(_EXTENDED, _TAG16.pack(tag) + _packer().pack(fields))


def _ext_hook(tag: int, data: bytes) -> Any:
    if tag == _EXTENDED:
        if len(data) < 2:
            raise ProtocolError("extended message without a tag")
        (tag,) = _TAG16.unpack_from(data)
        data = data[2:]
    cls = _REGISTRY.get(tag)
    if cls is None:
        raise ProtocolError(f"unknown message tag {tag}")
    fields = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    checks = _CHECKS.get(cls)
    if checks is None:
        checks = _field_checks(cls)
    if type(fields) is not list or len(fields) != len(checks):
        raise ProtocolError(f"{cls.__name__}: expected {len(checks)} fields")
    for value, allowed in zip(fields, checks):
        if allowed is not None and not isinstance(value, allowed):
            raise ProtocolError(f"{cls.__name__}: field of type {type(value).__name__} not allowed")
    return cls(*fields)


def _packer() -> msgpack.Packer:
    # msgpack.packb allocates a 256 KiB buffer per call (about 10 us); a small buffer grows
    # as needed.  A new Packer per call: packing nests (messages inside messages) and runs
    # on several threads, so one shared Packer would be re-entered.
    return msgpack.Packer(default=_default, use_bin_type=True, buf_size=1024)


def encode(kind: int, request_id: int, msg: Any) -> bytes:
    return _packer().pack([kind, request_id, msg])


def decode(payload: bytes) -> tuple[int, int, Any]:
    try:
        obj = msgpack.unpackb(payload, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of exception types
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if type(obj) is not list or len(obj) != 3 or type(obj[0]) is not int or type(obj[1]) is not int:
        raise ProtocolError("frame is not [kind, request_id, message]")
    if obj[0] not in (KIND_REQUEST, KIND_REPLY, KIND_ERROR, KIND_ONEWAY):
        raise ProtocolError(f"unknown frame kind {obj[0]}")
    if getattr(obj[2], "_tag", None) is None:
        raise ProtocolError("frame carries no message")
    return obj[0], obj[1], obj[2]
