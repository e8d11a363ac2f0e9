"""Message <-> bytes.  Every wire message is a dataclass registered with a stable tag.

A frame's payload is msgpack ``[kind, request_id, message]``; a message (at the top or
nested anywhere inside another message's fields) is a msgpack ext value whose type code
is the message's tag and whose data is the msgpack list of its fields in order.
Unknown tags, wrong field counts and wrong field types raise ``ProtocolError``: nothing
past this module ever sees a raw dict.

Decoding is bounded: messages nest at most ``MESSAGE_DEPTH_MAX`` deep (each nested message
is a nested ``unpackb`` call, so an unbounded depth overflows the C stack), a frame holds at
most ``MESSAGES_PER_FRAME_MAX`` messages, and containers are capped in length.  Before
authentication only ``decode_handshake`` runs: it accepts the three handshake messages with
short fields and no nesting, and nothing else.
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


MESSAGE_DEPTH_MAX = 24          # messages inside messages (ember's own nest 4 deep at most)
MESSAGES_PER_FRAME_MAX = 1 << 18  # bounds the Python work one frame can cause
ARRAY_LEN_MAX = 1 << 22
MAP_LEN_MAX = 1 << 20


class _Decoding:
    """The state of one frame's decode: nesting depth and messages seen so far."""

    __slots__ = ("depth", "count")

    def __init__(self) -> None:
        self.depth = 0
        self.count = 0

    def ext_hook(self, tag: int, data: bytes) -> Any:
        count = self.count = self.count + 1
        depth = self.depth
        if count > MESSAGES_PER_FRAME_MAX:
            raise ProtocolError(f"frame holds more than {MESSAGES_PER_FRAME_MAX} messages")
        if depth >= MESSAGE_DEPTH_MAX:
            raise ProtocolError(f"messages nested more than {MESSAGE_DEPTH_MAX} deep")
        self.depth = depth + 1
        fields = msgpack.unpackb(data if tag != _EXTENDED else data_of(tag, data), ext_hook=self.ext_hook,
                                 raw=False, strict_map_key=False, max_array_len=ARRAY_LEN_MAX,
                                 max_map_len=MAP_LEN_MAX)
        self.depth = depth  # (an exception abandons the whole decode: no need to restore on error)
        return _build(tag, data, fields)


def _unpack(data: Any, ext_hook: Callable[[int, bytes], Any]) -> Any:
    return msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False,
                           max_array_len=ARRAY_LEN_MAX, max_map_len=MAP_LEN_MAX)


def data_of(tag: int, data: bytes) -> bytes:
    """The msgpack list of fields inside an extension value."""
    if tag == _EXTENDED:
        if len(data) < 2:
            raise ProtocolError("extended message without a tag")
        return data[2:]
    return data


def _build(tag: int, data: bytes, fields: Any) -> Any:
    if tag == _EXTENDED:
        (tag,) = _TAG16.unpack_from(data)
    cls = _REGISTRY.get(tag)
    if cls is None:
        raise ProtocolError(f"unknown message tag {tag}")
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


def decode(payload: Any) -> tuple[int, int, Any]:
    try:
        obj = _unpack(payload, _Decoding().ext_hook)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises a zoo of exception types
        raise ProtocolError(f"undecodable frame: {exc}") from None
    return _check_frame(obj)


def _check_frame(obj: Any) -> tuple[int, int, Any]:
    if type(obj) is not list or len(obj) != 3 or type(obj[0]) is not int or type(obj[1]) is not int:
        raise ProtocolError("frame is not [kind, request_id, message]")
    if obj[0] not in (KIND_REQUEST, KIND_REPLY, KIND_ERROR, KIND_ONEWAY):
        raise ProtocolError(f"unknown frame kind {obj[0]}")
    if getattr(obj[2], "_tag", None) is None:
        raise ProtocolError("frame carries no message")
    return obj[0], obj[1], obj[2]


# --- the handshake: the only decoding a peer gets before it has proved the token ------------------
HANDSHAKE_FRAME_MAX_BYTES = 1024
_HANDSHAKE_TAGS = (1, 2, 3)  # Challenge, AuthResponse, AuthOk (messages.py)
_HANDSHAKE_LIMITS: dict[str, int] = dict(max_bin_len=64, max_str_len=32, max_array_len=3, max_map_len=0, max_ext_len=256)


def _refuse_ext(tag: int, data: bytes) -> Any:
    raise ProtocolError("nested message in a handshake frame")


def _handshake_ext(tag: int, data: bytes) -> Any:
    if tag not in _HANDSHAKE_TAGS:
        raise ProtocolError(f"message tag {tag} before authentication")
    return _build(tag, data, msgpack.unpackb(data_of(tag, data), ext_hook=_refuse_ext, raw=False,
                                             **_HANDSHAKE_LIMITS))


def decode_handshake(payload: Any) -> Any:
    """The message of a handshake frame: Challenge, AuthResponse or AuthOk, with short fields."""
    if len(payload) > HANDSHAKE_FRAME_MAX_BYTES:
        raise ProtocolError(f"handshake frame of {len(payload)} bytes")
    try:
        obj = msgpack.unpackb(payload, ext_hook=_handshake_ext, raw=False, **_HANDSHAKE_LIMITS)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(f"undecodable handshake frame: {exc}") from None
    kind, request_id, msg = _check_frame(obj)
    if kind != KIND_ONEWAY or request_id != 0:
        raise ProtocolError("handshake frame is not a one-way message")
    return msg
